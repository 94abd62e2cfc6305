//! Stage `eda` (docs/pipeline.md#eda): statistics of the preprocessed data (volumes per window, events per
//! user and per track, popularity concentration, genre shares, activity by day, old vs new
//! users) into `stats.json`, with PNG plots and a short `report.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int64Type};
use musicrec_artifacts::layout::eda::{
    ACTIVITY_PLOT, ACTIVITY_SPLIT_PLOT, EVENTS_PER_TRACK_PLOT, EVENTS_PER_USER_PLOT, GENRES_PLOT, POPULARITY_PLOT,
    REPORT_FILE, STATS_FILE, USERS_PLOT,
};
use musicrec_artifacts::layout::preprocess;
use musicrec_artifacts::layout::preprocess::Window;
use musicrec_artifacts::{Manifest, Stage, StageWriter};
use musicrec_data::IdEncoder;
use musicrec_data::parquet_io::{for_each_batch, read_i64_column};
use musicrec_data::schema::EntityType;
use musicrec_plot::{Line, LineChart, Scale};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::PipelineError;
use crate::markdown;
use crate::preprocess::{PerWindow, SplitDates, epoch_date, epoch_day};
use crate::stage::RunContext;

/// Genres and tracks listed by name in the report and plots.
const TOP_GENRES: usize = 15;
const TOP_TRACKS: usize = 10;
/// Train days shown before the split in the close-up activity plot.
const RECENT_DAYS: f64 = 28.0;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EdaStats {
    pub train_end: String,
    pub target_end: String,
    pub windows: PerWindow<WindowStats>,
    pub users: UserCounts,
    /// Events per user over all windows, over users with at least one event.
    pub events_per_user: Distribution,
    /// Events per track over all windows, over tracks played at least once.
    pub events_per_track: Distribution,
    pub popularity: Popularity,
    /// Listening shares of genres, most listened first: an event of a track with n genres adds
    /// 1/n to each, so the shares sum to 1; tracks without a genre count as `genre_id` null.
    pub genres: Vec<GenreShare>,
    pub top_tracks: Vec<TopTrack>,
    /// Events per calendar day, every day from the first to the last event.
    pub activity_by_day: Vec<DayActivity>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WindowStats {
    pub first_day: String,
    pub last_day: String,
    pub events: u64,
    pub users: u64,
    pub tracks: u64,
    /// Users of this window with train events, and without.
    pub old_users: u64,
    pub new_users: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserCounts {
    pub total: u64,
    /// Users with train events (the ones collaborative models can serve).
    pub old: u64,
    pub new: u64,
}

/// Nearest-rank quantiles (the value at position ⌈q·n⌉ of the sorted counts).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Distribution {
    pub count: u64,
    pub mean: f64,
    pub min: u64,
    pub p10: u64,
    pub p25: u64,
    pub p50: u64,
    pub p75: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Popularity {
    pub catalogue_tracks: u64,
    pub played_tracks: u64,
    /// Share of all events that go to the most played 1% / 10% of played tracks.
    pub top_1pct_event_share: f64,
    pub top_10pct_event_share: f64,
    /// How many of the most played tracks make half of all events.
    pub tracks_for_half_of_events: u64,
    /// Gini coefficient of plays over played tracks (0 = equal, → 1 = concentrated).
    pub gini: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GenreShare {
    pub genre_id: Option<i64>,
    pub name: String,
    pub events: f64,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopTrack {
    pub track_id: i64,
    pub name: String,
    pub events: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DayActivity {
    pub date: String,
    pub window: String,
    pub events: u64,
}

impl Distribution {
    /// The distribution of `counts` (any order); all zero when empty.
    pub fn of(mut counts: Vec<u64>) -> Self {
        if counts.is_empty() {
            return Self::default();
        }
        counts.sort_unstable();
        let n = counts.len();
        let at = |q: f64| counts[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        Self {
            count: n as u64,
            mean: counts.iter().sum::<u64>() as f64 / n as f64,
            min: counts[0],
            p10: at(0.10),
            p25: at(0.25),
            p50: at(0.50),
            p75: at(0.75),
            p90: at(0.90),
            p99: at(0.99),
            max: counts[n - 1],
        }
    }
}

impl Popularity {
    /// Concentration of play counts over the catalogue (zero counts are unplayed tracks).
    pub fn of(track_events: &[u64]) -> Self {
        let mut played: Vec<u64> = track_events.iter().copied().filter(|&c| c > 0).collect();
        played.sort_unstable_by(|a, b| b.cmp(a));
        let total: u64 = played.iter().sum();
        let n = played.len();
        let share_of_top = |fraction: f64| {
            let top = ((fraction * n as f64).ceil() as usize).min(n);
            if total == 0 { 0.0 } else { played[..top].iter().sum::<u64>() as f64 / total as f64 }
        };
        let mut running = 0u64;
        let half = played
            .iter()
            .position(|&c| {
                running += c;
                2 * running >= total
            })
            .map_or(0, |i| i + 1);
        // Gini over ascending counts: 2·Σ i·x_i / (n·Σx) − (n+1)/n, i from 1.
        let weighted: f64 = played.iter().rev().enumerate().map(|(i, &c)| (i + 1) as f64 * c as f64).sum();
        let gini =
            if total == 0 { 0.0 } else { 2.0 * weighted / (n as f64 * total as f64) - (n as f64 + 1.0) / n as f64 };
        Self {
            catalogue_tracks: track_events.len() as u64,
            played_tracks: n as u64,
            top_1pct_event_share: share_of_top(0.01),
            top_10pct_event_share: share_of_top(0.10),
            tracks_for_half_of_events: half as u64,
            gini,
        }
    }
}

/// Counts of one window's events over dense user and track indices.
struct WindowCounts {
    user_events: Vec<u64>,
    track_events: Vec<u64>,
    day_events: BTreeMap<i32, u64>,
}

fn count_window(path: &Path, users: &IdEncoder, tracks: &IdEncoder) -> Result<WindowCounts, PipelineError> {
    let mut counts = WindowCounts {
        user_events: vec![0; users.len()],
        track_events: vec![0; tracks.len()],
        day_events: BTreeMap::new(),
    };
    let mut unknown = 0u64;
    for_each_batch(path, &["user_id", "track_id", "started_at"], |batch| {
        let u = batch.column(0).as_primitive::<Int64Type>().values();
        let t = batch.column(1).as_primitive::<Int64Type>().values();
        let d = batch.column(2).as_primitive::<Date32Type>().values();
        for i in 0..batch.num_rows() {
            match (users.encode(u[i]), tracks.encode(t[i])) {
                (Some(user), Some(track)) => {
                    counts.user_events[user as usize] += 1;
                    counts.track_events[track as usize] += 1;
                    *counts.day_events.entry(d[i]).or_default() += 1;
                }
                _ => unknown += 1,
            }
        }
        Ok(())
    })?;
    if unknown > 0 {
        return Err(PipelineError::Artifact {
            path: path.display().to_string(),
            reason: format!("{unknown} events have a user or track that preprocess did not list"),
        });
    }
    Ok(counts)
}

/// Id → name of one entity type from the preprocess name tables.
fn read_names(pre: &Path, kind: EntityType) -> Result<BTreeMap<i64, String>, PipelineError> {
    let mut names = BTreeMap::new();
    for_each_batch(&pre.join(preprocess::names_file(kind)), &["id", "name"], |batch| {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let text = batch.column(1).as_string::<i32>();
        names.extend((0..batch.num_rows()).map(|i| (ids.value(i), text.value(i).to_string())));
        Ok(())
    })?;
    Ok(names)
}

/// Listening shares per genre (see `EdaStats::genres`), most listened first.
fn genre_shares(
    pre: &Path,
    tracks: &IdEncoder,
    track_events: &[u64],
    names: &BTreeMap<i64, String>,
) -> Result<Vec<GenreShare>, PipelineError> {
    let mut genres_of: Vec<Vec<i64>> = vec![Vec::new(); tracks.len()];
    let path = pre.join(preprocess::track_entities_file(EntityType::Genre));
    for_each_batch(&path, &["track_id", "genre_id"], |batch| {
        let t = batch.column(0).as_primitive::<Int64Type>().values();
        let g = batch.column(1).as_primitive::<Int64Type>().values();
        for (&track, &genre) in t.iter().zip(g) {
            if let Some(index) = tracks.encode(track) {
                genres_of[index as usize].push(genre);
            }
        }
        Ok(())
    })?;
    let mut weights: BTreeMap<Option<i64>, f64> = BTreeMap::new();
    for (genres, &events) in genres_of.iter().zip(track_events) {
        if events == 0 {
            continue;
        }
        if genres.is_empty() {
            *weights.entry(None).or_default() += events as f64;
        }
        for &g in genres {
            *weights.entry(Some(g)).or_default() += events as f64 / genres.len() as f64;
        }
    }
    let total: f64 = weights.values().sum();
    let mut shares: Vec<GenreShare> = weights
        .into_iter()
        .map(|(genre_id, events)| GenreShare {
            genre_id,
            name: match genre_id {
                Some(g) => names.get(&g).cloned().unwrap_or_else(|| format!("genre {g}")),
                None => "(no genre)".into(),
            },
            events,
            share: events / total,
        })
        .collect();
    shares.sort_by(|a, b| b.events.total_cmp(&a.events).then(a.genre_id.cmp(&b.genre_id)));
    Ok(shares)
}

/// The `started_at` day range of a window from its per-day counts.
fn day_range(days: &BTreeMap<i32, u64>) -> (String, String) {
    match (days.keys().next(), days.keys().next_back()) {
        (Some(&first), Some(&last)) => (epoch_date(first).to_string(), epoch_date(last).to_string()),
        _ => (String::new(), String::new()),
    }
}

/// Computes the statistics from the preprocess outputs in `pre` (`train_end` and `target_end`
/// are the split dates preprocess used), with the events per user and per track for the plots.
fn compute(pre: &Path, train_end: &str, target_end: &str) -> Result<(EdaStats, Vec<u64>, Vec<u64>), PipelineError> {
    let tracks = IdEncoder::from_sorted_unique(read_i64_column(&pre.join(preprocess::TRACKS_FILE), "track_id")?);
    let (users, old) = read_users(pre)?;
    let windows =
        PerWindow::from_fn(|w| w).par_map(|w| count_window(&pre.join(w.file()), &users, &tracks)).transpose()?;
    let user_events = total_over_windows(&windows, |w| &w.user_events, users.len());
    let track_events = total_over_windows(&windows, |w| &w.track_events, tracks.len());
    let total_old = old.iter().filter(|&&o| o).count() as u64;
    tracing::info!(events = user_events.iter().sum::<u64>(), users = users.len(), "eda statistics computed");
    let stats = EdaStats {
        train_end: train_end.to_string(),
        target_end: target_end.to_string(),
        windows: PerWindow::from_fn(|w| window_stats(&windows[w], &old)),
        users: UserCounts { total: users.len() as u64, old: total_old, new: users.len() as u64 - total_old },
        events_per_user: Distribution::of(user_events.iter().copied().filter(|&n| n > 0).collect()),
        events_per_track: Distribution::of(track_events.iter().copied().filter(|&n| n > 0).collect()),
        popularity: Popularity::of(&track_events),
        genres: genre_shares(pre, &tracks, &track_events, &read_names(pre, EntityType::Genre)?)?,
        top_tracks: top_tracks(&tracks, &track_events, &read_names(pre, EntityType::Track)?),
        activity_by_day: activity_by_day(&windows),
    };
    Ok((stats, user_events, track_events))
}

/// Every user id, in encoder order, and whether each has train events.
fn read_users(pre: &Path) -> Result<(IdEncoder, Vec<bool>), PipelineError> {
    let mut user_ids = Vec::new();
    let mut old = Vec::new();
    for_each_batch(&pre.join(preprocess::USERS_FILE), &["user_id", "old"], |batch| {
        user_ids.extend_from_slice(batch.column(0).as_primitive::<Int64Type>().values());
        old.extend(batch.column(1).as_boolean().iter().map(|o| o == Some(true)));
        Ok(())
    })?;
    Ok((IdEncoder::from_sorted_unique(user_ids), old))
}

/// One window's volumes; `old` says which users have train events.
fn window_stats(counts: &WindowCounts, old: &[bool]) -> WindowStats {
    let (first_day, last_day) = day_range(&counts.day_events);
    let active = || counts.user_events.iter().enumerate().filter(|&(_, &n)| n > 0).map(|(i, _)| i);
    let users = active().count() as u64;
    let old_users = active().filter(|&i| old[i]).count() as u64;
    WindowStats {
        first_day,
        last_day,
        events: counts.user_events.iter().sum(),
        users,
        tracks: counts.track_events.iter().filter(|&&n| n > 0).count() as u64,
        old_users,
        new_users: users - old_users,
    }
}

/// Per-entity event counts summed over the windows.
fn total_over_windows(windows: &PerWindow<WindowCounts>, pick: fn(&WindowCounts) -> &Vec<u64>, len: usize) -> Vec<u64> {
    let mut total = vec![0u64; len];
    for (_, counts) in windows.iter() {
        total.iter_mut().zip(pick(counts)).for_each(|(t, c)| *t += c);
    }
    total
}

/// The most played tracks, ties broken by catalogue order.
fn top_tracks(tracks: &IdEncoder, track_events: &[u64], names: &BTreeMap<i64, String>) -> Vec<TopTrack> {
    let mut top: Vec<usize> = (0..tracks.len()).filter(|&t| track_events[t] > 0).collect();
    top.sort_by(|&a, &b| track_events[b].cmp(&track_events[a]).then(a.cmp(&b)));
    top.iter()
        .take(TOP_TRACKS)
        .map(|&t| {
            let track_id = tracks.decode(t as u32);
            TopTrack { track_id, name: names.get(&track_id).cloned().unwrap_or_default(), events: track_events[t] }
        })
        .collect()
}

/// Every day from the first train event to the last test event, with its window and events.
fn activity_by_day(windows: &PerWindow<WindowCounts>) -> Vec<DayActivity> {
    let (Some(&first), Some(&last)) =
        (windows.train.day_events.keys().next(), windows.test.day_events.keys().next_back())
    else {
        return Vec::new();
    };
    (first..=last)
        .map(|day| {
            let (w, events) =
                windows.iter().find_map(|(w, c)| c.day_events.get(&day).map(|&n| (w.as_str(), n))).unwrap_or(("", 0));
            DayActivity { date: epoch_date(day).to_string(), window: w.to_string(), events }
        })
        .collect()
}

/// Counts in power-of-two bins ("1", "2–3", "4–7", ...), for heavy-tailed distributions.
fn log2_bins(counts: impl Iterator<Item = u64>) -> Vec<(String, f64)> {
    let mut bins: Vec<u64> = Vec::new();
    for c in counts.filter(|&c| c > 0) {
        let bin = (63 - c.leading_zeros()) as usize;
        if bins.len() <= bin {
            bins.resize(bin + 1, 0);
        }
        bins[bin] += 1;
    }
    bins.iter()
        .enumerate()
        .map(|(b, &n)| {
            let (lo, hi) = (1u64 << b, (1u64 << (b + 1)) - 1);
            (if lo == hi { lo.to_string() } else { format!("{lo}–{hi}") }, n as f64)
        })
        .collect()
}

/// A chart of the report.
struct Plot {
    file: &'static str,
    caption: &'static str,
    png: Vec<u8>,
}

/// Every chart, in the order the report shows them.
fn draw_plots(stats: &EdaStats, user_events: &[u64], track_events: &[u64]) -> Result<Vec<Plot>, PipelineError> {
    let mut plots = event_count_plots(user_events, track_events)?;
    plots.push(popularity_plot(track_events)?);
    plots.push(genre_plot(stats)?);
    plots.extend(activity_plots(stats)?);
    plots.push(users_plot(stats)?);
    Ok(plots)
}

/// Writes the charts; returns (file, caption) of each.
fn write_plots(out: &mut StageWriter, plots: Vec<Plot>) -> Result<Vec<(&'static str, &'static str)>, PipelineError> {
    plots
        .into_iter()
        .map(|plot| {
            out.write_file(plot.file, &plot.png)?;
            Ok((plot.file, plot.caption))
        })
        .collect()
}

fn event_count_plots(user_events: &[u64], track_events: &[u64]) -> Result<Vec<Plot>, PipelineError> {
    Ok(vec![
        Plot {
            file: EVENTS_PER_USER_PLOT,
            caption: "Events per user",
            png: musicrec_plot::bars("Users by number of events", "users", &log2_bins(user_events.iter().copied()))?,
        },
        Plot {
            file: EVENTS_PER_TRACK_PLOT,
            caption: "Events per track",
            png: musicrec_plot::bars("Tracks by number of events", "tracks", &log2_bins(track_events.iter().copied()))?,
        },
    ])
}

fn popularity_plot(track_events: &[u64]) -> Result<Plot, PipelineError> {
    let mut by_rank: Vec<u64> = track_events.iter().copied().filter(|&c| c > 0).collect();
    by_rank.sort_unstable_by(|a, b| b.cmp(a));
    let curve = Line {
        name: "plays".into(),
        points: by_rank.iter().enumerate().map(|(r, &c)| ((r + 1) as f64, c as f64)).collect(),
    };
    let png = musicrec_plot::lines(&LineChart {
        title: "Plays by popularity rank",
        x_label: "track rank",
        y_label: "events",
        x_scale: Scale::Log10,
        y_scale: Scale::Log10,
        lines: &[curve],
        markers: &[],
        x_format: None,
    })?;
    Ok(Plot { file: POPULARITY_PLOT, caption: "Popularity curve (log-log)", png })
}

fn genre_plot(stats: &EdaStats) -> Result<Plot, PipelineError> {
    let genre_bars: Vec<(String, f64)> =
        stats.genres.iter().take(TOP_GENRES).map(|g| (g.name.clone(), 100.0 * g.share)).collect();
    let png = musicrec_plot::bars("Listening share by genre", "% of events", &genre_bars)?;
    Ok(Plot { file: GENRES_PLOT, caption: "Genre shares", png })
}

/// Events per day and window: the whole history, then the weeks around the split, where the
/// windows are visible.
fn activity_plots(stats: &EdaStats) -> Result<Vec<Plot>, PipelineError> {
    let markers: Vec<(f64, String)> = [(&stats.train_end, "train_end"), (&stats.target_end, "target_end")]
        .iter()
        .filter_map(|(date, name)| Some((epoch_day(date.parse().ok()?) as f64, name.to_string())))
        .collect();
    let date_label = |x: f64| epoch_date(x.round() as i32).format("%m-%d").to_string();
    let recent_from = markers.first().map_or(f64::MIN, |m| m.0 - RECENT_DAYS);
    let mut plots = Vec::new();
    for (file, caption, title, from) in [
        (ACTIVITY_PLOT, "Activity by day", "Events per day", f64::MIN),
        (ACTIVITY_SPLIT_PLOT, "The split windows", "Events per day around the split", recent_from),
    ] {
        let day_lines: Vec<Line> = Window::ALL
            .iter()
            .map(|w| Line {
                name: w.as_str().into(),
                points: stats
                    .activity_by_day
                    .iter()
                    .filter(|d| d.window == w.as_str())
                    .filter_map(|d| Some((epoch_day(d.date.parse().ok()?) as f64, d.events as f64)))
                    .filter(|p| p.0 >= from)
                    .collect(),
            })
            .collect();
        let chart = LineChart {
            title,
            x_label: "day",
            y_label: "events",
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
            lines: &day_lines,
            markers: &markers,
            x_format: Some(&date_label),
        };
        plots.push(Plot { file, caption, png: musicrec_plot::lines(&chart)? });
    }
    Ok(plots)
}

fn users_plot(stats: &EdaStats) -> Result<Plot, PipelineError> {
    let windows = &stats.windows;
    let cats = Window::ALL.map(|w| w.as_str().to_string());
    let series = [
        ("old users".to_string(), windows.iter().map(|(_, w)| w.old_users as f64).collect()),
        ("new users".to_string(), windows.iter().map(|(_, w)| w.new_users as f64).collect()),
    ];
    let png = musicrec_plot::grouped_bars("Users per window", "users", &cats, &series)?;
    Ok(Plot { file: USERS_PLOT, caption: "Old and new users per window", png })
}

fn markdown(stats: &EdaStats, plots: &[(&str, &str)]) -> String {
    let mut md = String::from("# Data overview (EDA)\n\n");
    let _ = writeln!(
        md,
        "Split: train < {} <= target < {} <= test. Users: {} ({} old, {} new).\n",
        stats.train_end, stats.target_end, stats.users.total, stats.users.old, stats.users.new
    );
    md.push_str("| window | first day | last day | events | users | tracks | old users | new users |\n");
    md.push_str("|---|---|---|---:|---:|---:|---:|---:|\n");
    for (window, w) in stats.windows.iter() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            window.as_str(),
            w.first_day,
            w.last_day,
            w.events,
            w.users,
            w.tracks,
            w.old_users,
            w.new_users
        );
    }
    md.push_str("\n| events per | count | mean | p10 | p25 | median | p75 | p90 | p99 | max |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (name, d) in [("user", &stats.events_per_user), ("track", &stats.events_per_track)] {
        let _ = writeln!(
            md,
            "| {name} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            d.count, d.mean, d.p10, d.p25, d.p50, d.p75, d.p90, d.p99, d.max
        );
    }
    let p = &stats.popularity;
    let _ = writeln!(
        md,
        "\nPopularity: {} of {} catalogue tracks were played; the top 1% of played tracks take {:.1}% of events, \
         the top 10% take {:.1}%; {} tracks make half of all events; Gini {:.3}.\n",
        p.played_tracks,
        p.catalogue_tracks,
        100.0 * p.top_1pct_event_share,
        100.0 * p.top_10pct_event_share,
        p.tracks_for_half_of_events,
        p.gini
    );
    md.push_str("| genre | share of events |\n|---|---:|\n");
    for g in stats.genres.iter().take(TOP_GENRES) {
        let _ = writeln!(md, "| {} | {:.1}% |", markdown::text(&g.name), 100.0 * g.share);
    }
    md.push_str("\n| most played track | events |\n|---|---:|\n");
    for t in &stats.top_tracks {
        let _ = writeln!(md, "| {} ({}) | {} |", markdown::text(&t.name), t.track_id, t.events);
    }
    md.push('\n');
    for (file, caption) in plots {
        let _ = writeln!(md, "## {caption}\n\n![{caption}]({file})\n");
    }
    md
}

/// What `eda` reports in its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdaSummary {
    pub events: u64,
    pub users: u64,
    pub played_tracks: u64,
    pub gini: f64,
    pub plots: usize,
}

pub fn run(ctx: &RunContext) -> Result<Manifest, PipelineError> {
    let mut out = ctx.artifacts.begin(Stage::Eda, &ctx.run_id)?;
    let upstream = ctx.upstream(Stage::Eda, Stage::Preprocess)?;
    let pre = ctx.artifacts.dir(Stage::Preprocess);
    let split = SplitDates::of(&upstream, &pre)?;
    let (train_end, target_end) = (split.train_end.to_string(), split.target_end.to_string());
    ctx.record_inputs(Stage::Eda, &mut out)?;

    let (stats, user_events, track_events) = compute(&pre, &train_end, &target_end)?;
    let stats_json = serde_json::to_vec_pretty(&stats).expect("stats serialize");
    out.write_file(STATS_FILE, &stats_json)?;
    let plots = write_plots(&mut out, draw_plots(&stats, &user_events, &track_events)?)?;
    out.write_file(REPORT_FILE, markdown(&stats, &plots).as_bytes())?;

    let summary = EdaSummary {
        events: stats.windows.iter().map(|(_, w)| w.events).sum(),
        users: stats.users.total,
        played_tracks: stats.popularity.played_tracks,
        gini: stats.popularity.gini,
        plots: plots.len(),
    };
    let params = ctx.params(json!({"train_end": train_end, "target_end": target_end}));
    Ok(out.commit(musicrec_config::fingerprint_of(&params), params, &summary)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let d = Distribution::of(vec![5, 1, 3, 1, 1]);
        assert_eq!((d.count, d.min, d.p25, d.p50, d.p75, d.p90, d.p99, d.max), (5, 1, 1, 1, 3, 5, 5, 5));
        assert!((d.mean - 2.2).abs() < 1e-12);
        assert_eq!(Distribution::of(vec![]), Distribution::default());
    }

    #[test]
    fn popularity_concentration() {
        // Unplayed tracks count in the catalogue only.
        let p = Popularity::of(&[3, 0, 1, 1, 3, 1, 2]);
        assert_eq!((p.catalogue_tracks, p.played_tracks, p.tracks_for_half_of_events), (7, 6, 2));
        assert!((p.top_10pct_event_share - 3.0 / 11.0).abs() < 1e-12);
        assert!((p.gini - (94.0 / 66.0 - 7.0 / 6.0)).abs() < 1e-12);
        let even = Popularity::of(&[4, 4, 4, 4]);
        assert!(even.gini.abs() < 1e-12);
        assert_eq!(Popularity::of(&[0, 0]).gini, 0.0);
    }

    #[test]
    fn power_of_two_bins() {
        let bins = log2_bins([1, 2, 3, 4, 9, 0].into_iter());
        let expected = [("1", 1.0), ("2–3", 2.0), ("4–7", 1.0), ("8–15", 1.0)];
        assert_eq!(bins, expected.map(|(l, n)| (l.to_string(), n)));
    }
}
