//! The report's judgement of every model and of the system on the test window, under one
//! convention (docs/metrics.md#convention): every window user with a listen is judged and a
//! user without a list scores 0. Per-user values give bootstrap intervals and paired
//! comparisons (the ranker against the best base model and popularity, the system against the
//! previous report on the same data); segments split users by history and hits by track
//! popularity; examples show a few sampled users' lists with names.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use musicrec_artifacts::layout::candidates::CANDIDATES_FILE;
use musicrec_artifacts::layout::preprocess::{Window, names_file, track_entities_file};
use musicrec_artifacts::layout::ranking::RECOMMENDATIONS_FILE;
use musicrec_artifacts::layout::report::PER_USER_FILE;
use musicrec_artifacts::{Artifacts, Manifest, Stage};
use musicrec_config::EvaluationConfig;
use musicrec_data::Location;
use musicrec_data::parquet_io::for_each_batch;
use musicrec_data::schema::EntityType;
use musicrec_eval::{
    Evaluation, Interval, PopularityClass, Recommendations, UserMetric, bootstrap_means, hits_by_class, interval,
};
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::PipelineError;
use crate::evaluation::{EvalWindow, Evaluator};
use crate::markdown::text;

/// The window the report judges on: the ranker learns from the target window.
const WINDOW: EvalWindow = EvalWindow::Test;
/// The row of what the service serves offline.
pub const SYSTEM: &str = "system";
/// The per-user metric the report's claims compare.
const CLAIMED: UserMetric = UserMetric::Ndcg;
/// Tracks shown per example user.
const EXAMPLE_LISTENS: usize = 10;
const EXAMPLE_TOP: usize = 10;
/// Points per model on the NDCG distribution plot.
const CDF_POINTS: usize = 200;

/// What the report stage judges on the test window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scorecard {
    pub window: String,
    pub convention: String,
    pub evaluated_users: usize,
    pub old_users: usize,
    pub new_users: usize,
    pub ks: Vec<usize>,
    pub headline_k: usize,
    pub resamples: usize,
    /// Fingerprint of the input data: a later report pairs its users with this one's only on
    /// the same data.
    pub data_fingerprint: String,
    /// The system first, then every model with lists.
    pub rows: Vec<ScoreRow>,
    pub comparisons: Vec<Comparison>,
    /// Why a comparison the report would make is missing.
    pub notes: Vec<String>,
    pub user_segments: Vec<UserSegment>,
    pub item_mix: Vec<ItemMix>,
    pub examples: Vec<Example>,
    /// Time to evaluate every row at every K, bootstrap and compare (reading lists excluded).
    pub evaluate_seconds: f64,
    /// Time to read every list and build the system's.
    pub read_seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScoreRow {
    pub name: String,
    pub description: String,
    pub run_id: Option<String>,
    /// Every metric at every K (`ndcg@10`, ...), `evaluated_users`, `users_with_recs`.
    pub metrics: serde_json::Value,
    /// Bootstrap intervals of the per-user metrics at the headline K, by metric name.
    pub intervals: BTreeMap<String, Interval>,
}

impl ScoreRow {
    pub fn value(&self, metric: &str, k: usize) -> Option<f64> {
        self.metrics.get(format!("{metric}@{k}"))?.as_f64()
    }
}

/// A difference the report states, with its paired bootstrap interval.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Comparison {
    pub claim: String,
    pub metric: String,
    pub a: String,
    pub b: String,
    /// `a − b`.
    pub difference: Interval,
    /// `a / b`; absent when `b` is 0.
    pub ratio: Option<Interval>,
    /// The same ratio under the original per-model convention (each mean over the users the
    /// model gave a list to), for comparison with earlier reports.
    pub original_convention_ratio: Option<f64>,
    /// The run `b` comes from when it is another run's.
    pub against_run: Option<String>,
}

/// One group of window users and each row's mean NDCG and hit rate over it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserSegment {
    pub segment: String,
    pub users: usize,
    /// `(row, ndcg, hit rate)` at the headline K.
    pub values: Vec<(String, f64, f64)>,
}

/// Where a row's hits and recommendations fall by track popularity (head, torso, tail).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ItemMix {
    pub row: String,
    pub hits: usize,
    pub hit_share: [f64; 3],
    pub recommended_share: [f64; 3],
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NamedTrack {
    pub track_id: i64,
    pub track: String,
    pub artist: String,
    pub genre: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Example {
    pub user_id: i64,
    pub old: bool,
    /// Distinct tracks the user played in the test window.
    pub relevant: usize,
    /// The latest train listens, latest first.
    pub last_listens: Vec<NamedTrack>,
    /// The system's top list and whether each track was played in the test window.
    pub top: Vec<(NamedTrack, bool)>,
}

/// A row's lists, per-user values and where they came from.
struct Judged {
    name: String,
    description: String,
    run_id: Option<String>,
    recs: Recommendations,
    evaluation: Evaluation,
}

/// Judges every model with lists and the system; `previous` is the report published before
/// this one (its per-user file is read when its data fingerprint matches).
pub fn build(
    artifacts: &Artifacts,
    settings: &EvaluationConfig,
    seed: u64,
    data_fingerprint: &str,
    previous: Option<&Scorecard>,
    previous_run: Option<&str>,
) -> Result<Option<(Scorecard, PerUserTable)>, PipelineError> {
    let ks = &settings.k;
    let k = settings.headline_k;
    let started = Instant::now();
    let evaluator = Evaluator::load(artifacts, "report")?;
    let lists = read_lists(artifacts, &evaluator)?;
    if lists.is_empty() {
        return Ok(None);
    }
    let lists = with_system(lists);
    let read_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut rows = Vec::new();
    for (name, description, run_id, recs) in lists {
        let evaluation = evaluator.evaluate(&recs, WINDOW, ks)?;
        rows.push(Judged { name, description, run_id, recs, evaluation });
    }
    let users = rows[0].evaluation.users.clone();
    let user_ids: Vec<i64> = {
        let ids = evaluator.user_ids();
        users.iter().map(|&u| ids[u as usize]).collect()
    };

    // One bootstrap for every series, so any two are paired: rows × metrics, then the
    // previous report's system values when they pair with these users.
    let mut notes = Vec::new();
    let previous_values =
        previous_system(artifacts, previous, previous_run, data_fingerprint, &user_ids, k, &mut notes);
    let mut series: Vec<&[f64]> =
        rows.iter().flat_map(|row| UserMetric::ALL.map(|metric| headline(row, k).per_user.get(metric))).collect();
    if let Some((_, values)) = &previous_values {
        series.push(values);
    }
    let resampled = bootstrap_means(&series, settings.resamples, seed)?;
    let index = |row: usize, metric: UserMetric| row * UserMetric::ALL.len() + metric as usize;

    let score_rows: Vec<ScoreRow> = rows
        .iter()
        .enumerate()
        .map(|(r, row)| ScoreRow {
            name: row.name.clone(),
            description: row.description.clone(),
            run_id: row.run_id.clone(),
            metrics: row.evaluation.to_json(),
            intervals: UserMetric::ALL
                .iter()
                .map(|&m| {
                    (m.as_str().to_string(), interval(headline(row, k).metrics.user_metric(m), &resampled[index(r, m)]))
                })
                .collect(),
        })
        .collect();

    let estimate = |r: usize| headline(&rows[r], k).metrics.user_metric(CLAIMED);
    let coverage = |r: usize| headline(&rows[r], k).metrics.coverage_user;
    let compare = |claim: String, a: usize, b_samples: &[f64], b_estimate: f64| {
        let a_samples = &resampled[index(a, CLAIMED)];
        let differences: Vec<f64> = a_samples.iter().zip(b_samples).map(|(x, y)| x - y).collect();
        let ratios: Vec<f64> = a_samples.iter().zip(b_samples).map(|(x, y)| x / y).filter(|r| r.is_finite()).collect();
        Comparison {
            claim,
            metric: format!("{}@{k}", CLAIMED.as_str()),
            a: rows[a].name.clone(),
            b: String::new(),
            difference: interval(estimate(a) - b_estimate, &differences),
            ratio: (b_estimate > 0.0).then(|| interval(estimate(a) / b_estimate, &ratios)),
            original_convention_ratio: None,
            against_run: None,
        }
    };
    let find = |name: &str| rows.iter().position(|row| row.name == name);
    let mut comparisons = Vec::new();
    if let Some(ranker) = find(Stage::Ranking.as_str()) {
        let base = rows
            .iter()
            .enumerate()
            .filter(|(_, row)| row.name != SYSTEM && row.name != Stage::Ranking.as_str())
            .max_by(|a, b| estimate(a.0).total_cmp(&estimate(b.0)))
            .map(|(r, _)| r);
        let popular = find(Stage::TopItems.as_str());
        let mut against: Vec<(String, usize)> = Vec::new();
        if let Some(best) = base {
            against.push((format!("ranker vs the best base model ({})", rows[best].name), best));
        }
        if let Some(popular) = popular.filter(|&p| Some(p) != base) {
            against.push(("ranker vs popularity (top_items)".into(), popular));
        }
        for (claim, b) in against {
            let mut c = compare(claim, ranker, &resampled[index(b, CLAIMED)], estimate(b));
            c.b = rows[b].name.clone();
            c.original_convention_ratio = (coverage(ranker) > 0.0 && estimate(b) > 0.0 && coverage(b) > 0.0)
                .then(|| (estimate(ranker) / coverage(ranker)) / (estimate(b) / coverage(b)));
            comparisons.push(c);
        }
    } else {
        notes.push("The ranker did not run: no ranker comparisons.".into());
    }
    if let Some((run, values)) = &previous_values {
        let previous_estimate = values.iter().sum::<f64>() / values.len().max(1) as f64;
        let mut c = compare(
            "this run vs the previous report on the same data".into(),
            0,
            resampled.last().expect("the previous series"),
            previous_estimate,
        );
        c.b = SYSTEM.into();
        c.against_run = Some(run.clone());
        comparisons.push(c);
    }

    let user_segments = user_segments(&evaluator, &rows, &users, k);
    let classes = PopularityClass::of_items(evaluator.history().listeners());
    let item_mix = rows
        .iter()
        .map(|row| {
            let counts = hits_by_class(&row.recs, evaluator.relevance(WINDOW), &classes, k);
            let shares = |counts: [usize; 3]| {
                let total = counts.iter().sum::<usize>().max(1) as f64;
                counts.map(|c| c as f64 / total)
            };
            ItemMix {
                row: row.name.clone(),
                hits: counts.hits.iter().sum(),
                hit_share: shares(counts.hits),
                recommended_share: shares(counts.recommended),
            }
        })
        .collect();
    let evaluate_seconds = started.elapsed().as_secs_f64();

    let examples = examples(artifacts, &evaluator, &rows[0].recs, &users, settings.examples, seed)?;
    let old_users = users.iter().filter(|&&u| evaluator.is_old(u)).count();
    let table = PerUserTable::new(&rows, &user_ids, ks);
    let scorecard = Scorecard {
        window: WINDOW.window().as_str().into(),
        convention: format!(
            "every row is judged on the same {} users: all users of the {} window with at least one listen; a user without a list scores 0",
            users.len(),
            WINDOW.window().as_str()
        ),
        evaluated_users: users.len(),
        old_users,
        new_users: users.len() - old_users,
        ks: ks.clone(),
        headline_k: k,
        resamples: settings.resamples,
        data_fingerprint: data_fingerprint.to_string(),
        rows: score_rows,
        comparisons,
        notes,
        user_segments,
        item_mix,
        examples,
        evaluate_seconds,
        read_seconds,
    };
    Ok(Some((scorecard, table)))
}

/// A row's evaluation at the headline K.
fn headline(row: &Judged, k: usize) -> &musicrec_eval::AtK {
    row.evaluation.at_k(k).expect("the headline K is one of the evaluated Ks")
}

type Lists = Vec<(String, String, Option<String>, Recommendations)>;

/// The lists of every model stage that published them: the ranker's recommendations, then the
/// candidate models' candidates.
fn read_lists(artifacts: &Artifacts, evaluator: &Evaluator) -> Result<Lists, PipelineError> {
    let mut lists = Vec::new();
    let sources = [(Stage::Ranking, RECOMMENDATIONS_FILE, "the ranker's top list")]
        .into_iter()
        .chain(Stage::CANDIDATE_MODELS.iter().map(|&s| (s, CANDIDATES_FILE, "its candidates")))
        .chain([(Stage::TopItems, CANDIDATES_FILE, "popular tracks not yet played")]);
    for (stage, file, description) in sources {
        let Ok(manifest) = artifacts.manifest(stage) else { continue };
        if !listed(&manifest, file) {
            continue;
        }
        let path = artifacts.dir(stage).join(file);
        let ranked = musicrec_data::layout::read_recommendations(&Location::local(&path))?;
        let recs = evaluator.encode_lists(&path.display().to_string(), &ranked)?;
        lists.push((stage.as_str().to_string(), description.to_string(), Some(manifest.run_id), recs));
    }
    Ok(lists)
}

fn listed(manifest: &Manifest, file: &str) -> bool {
    manifest.outputs.iter().any(|o| o.file == file)
}

/// Puts the system first: the ranker's list where it has one, else the popular list (what the
/// service serves offline). Without a ranker the system is the popular list; without either,
/// there is no system row.
fn with_system(lists: Lists) -> Lists {
    let of = |name: &str| lists.iter().find(|l| l.0 == name);
    let ranker = of(Stage::Ranking.as_str());
    let popular = of(Stage::TopItems.as_str());
    let (description, system) = match (ranker, popular) {
        (Some(ranker), Some(popular)) => {
            let mut served: Vec<(u32, Vec<u32>)> =
                ranker.3.lists().filter(|l| !l.1.is_empty()).map(|(u, l)| (u, l.to_vec())).collect();
            let mut has_list = vec![false; served.iter().map(|l| l.0 as usize + 1).max().unwrap_or(0)];
            served.iter().for_each(|l| has_list[l.0 as usize] = true);
            served.extend(
                popular
                    .3
                    .lists()
                    .filter(|(u, _)| !has_list.get(*u as usize).copied().unwrap_or(false))
                    .map(|(u, l)| (u, l.to_vec())),
            );
            let recs =
                Recommendations::from_lists(served).expect("one list per user: ranker's first, popular's for the rest");
            ("the ranker's list for old users, popular tracks for the rest (as served)", Some((recs, None)))
        }
        (Some(ranker), None) => (
            "the ranker's list (top_items did not run: nothing for new users)",
            Some((ranker.3.clone(), ranker.2.clone())),
        ),
        (None, Some(popular)) => {
            ("popular tracks (the ranker did not run)", Some((popular.3.clone(), popular.2.clone())))
        }
        (None, None) => ("", None),
    };
    let mut out = Vec::with_capacity(lists.len() + 1);
    if let Some((recs, run_id)) = system {
        out.push((SYSTEM.to_string(), description.to_string(), run_id, recs));
    }
    out.extend(lists);
    out
}

/// The previous report's per-user system values at K, in the order of `user_ids`, if that
/// report was on the same data and judged the same users; otherwise why not, in `notes`.
fn previous_system(
    artifacts: &Artifacts,
    previous: Option<&Scorecard>,
    previous_run: Option<&str>,
    data_fingerprint: &str,
    user_ids: &[i64],
    k: usize,
    notes: &mut Vec<String>,
) -> Option<(String, Vec<f64>)> {
    let (Some(previous), Some(run)) = (previous, previous_run) else {
        notes.push(
            "No previous report with per-user values in these artifacts: no comparison with a previous run.".into(),
        );
        return None;
    };
    if previous.data_fingerprint != data_fingerprint {
        notes.push(format!("The previous report (run `{run}`) was on other data: no comparison with it."));
        return None;
    }
    let column = format!("{}@{k}", CLAIMED.as_str());
    let path = artifacts.dir(Stage::Report).join(PER_USER_FILE);
    let mut values: HashMap<i64, f64> = HashMap::with_capacity(user_ids.len());
    let read = for_each_batch(&path, &["user_id", "model", &column], |batch| {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let models = batch.column(1).as_string::<i32>();
        let metric = batch.column(2).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            if models.value(i) == SYSTEM {
                values.insert(ids.value(i), metric.value(i));
            }
        }
        Ok(())
    });
    if let Err(e) = read {
        notes.push(format!("The previous report's {PER_USER_FILE} (run `{run}`) cannot be paired: {e}."));
        return None;
    }
    let paired: Option<Vec<f64>> = user_ids.iter().map(|id| values.get(id).copied()).collect();
    match paired {
        Some(paired) if values.len() == user_ids.len() => Some((run.to_string(), paired)),
        _ => {
            notes.push(format!("The previous report (run `{run}`) judged other users: no comparison with it."));
            None
        }
    }
}

/// Old and new users, and old users by quartile of train listens.
fn user_segments(evaluator: &Evaluator, rows: &[Judged], users: &[u32], k: usize) -> Vec<UserSegment> {
    let matrix = &evaluator.user_item;
    let listens = |u: u32| -> f64 {
        let row = matrix.indptr[u as usize] as usize..matrix.indptr[u as usize + 1] as usize;
        matrix.values[row].iter().map(|&v| f64::from(v)).sum()
    };
    let positions: Vec<usize> = (0..users.len()).collect();
    let (old, new): (Vec<usize>, Vec<usize>) = positions.iter().partition(|&&p| evaluator.is_old(users[p]));
    let mut segments = vec![("old users".to_string(), old.clone()), ("new users".to_string(), new)];
    let mut by_activity: Vec<(f64, usize)> = old.iter().map(|&p| (listens(users[p]), p)).collect();
    by_activity.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let n = by_activity.len();
    for q in 0..4 {
        let part = &by_activity[n * q / 4..n * (q + 1) / 4];
        if let (Some(first), Some(last)) = (part.first(), part.last()) {
            let label = format!("old, train listens Q{} ({:.0}–{:.0})", q + 1, first.0, last.0);
            segments.push((label, part.iter().map(|p| p.1).collect()));
        }
    }
    segments
        .into_iter()
        .map(|(segment, members)| {
            let mean = |values: &[f64]| {
                if members.is_empty() {
                    0.0
                } else {
                    members.iter().map(|&p| values[p]).sum::<f64>() / members.len() as f64
                }
            };
            let values = rows
                .iter()
                .map(|row| {
                    let at = headline(row, k);
                    (
                        row.name.clone(),
                        mean(at.per_user.get(UserMetric::Ndcg)),
                        mean(at.per_user.get(UserMetric::HitRate)),
                    )
                })
                .collect();
            UserSegment { segment, users: members.len(), values }
        })
        .collect()
}

/// Names of catalogue entities, read where the evaluation can reach them: the preprocess
/// stage's name tables and track → artist / genre tables. The one place that knows where names
/// live.
struct CatalogueNames {
    tracks: HashMap<i64, String>,
    artists: HashMap<i64, String>,
    genres: HashMap<i64, String>,
    track_artist: HashMap<i64, i64>,
    track_genre: HashMap<i64, i64>,
}

impl CatalogueNames {
    fn load(pre: &Path) -> Result<Self, PipelineError> {
        let names = |kind: EntityType| -> Result<HashMap<i64, String>, PipelineError> {
            let mut out = HashMap::new();
            for_each_batch(&pre.join(names_file(kind)), &["id", "name"], |batch| {
                let ids = batch.column(0).as_primitive::<Int64Type>();
                let text = batch.column(1).as_string::<i32>();
                out.extend((0..batch.num_rows()).map(|i| (ids.value(i), text.value(i).to_string())));
                Ok(())
            })?;
            Ok(out)
        };
        // A track's first listed artist and genre name it in the examples.
        let first_of = |kind: EntityType| -> Result<HashMap<i64, i64>, PipelineError> {
            let mut out = HashMap::new();
            let column = format!("{}_id", kind.as_str());
            for_each_batch(&pre.join(track_entities_file(kind)), &["track_id", &column], |batch| {
                let tracks = batch.column(0).as_primitive::<Int64Type>();
                let ids = batch.column(1).as_primitive::<Int64Type>();
                for i in 0..batch.num_rows() {
                    out.entry(tracks.value(i)).or_insert(ids.value(i));
                }
                Ok(())
            })?;
            Ok(out)
        };
        Ok(Self {
            tracks: names(EntityType::Track)?,
            artists: names(EntityType::Artist)?,
            genres: names(EntityType::Genre)?,
            track_artist: first_of(EntityType::Artist)?,
            track_genre: first_of(EntityType::Genre)?,
        })
    }

    fn named(&self, track_id: i64) -> NamedTrack {
        let name = |names: &HashMap<i64, String>, id: Option<&i64>| {
            id.and_then(|id| names.get(id)).cloned().unwrap_or_else(|| "-".into())
        };
        NamedTrack {
            track_id,
            track: name(&self.tracks, Some(&track_id)),
            artist: name(&self.artists, self.track_artist.get(&track_id)),
            genre: name(&self.genres, self.track_genre.get(&track_id)),
        }
    }
}

/// `count` users drawn with `seed` (one of them new when there are new users): their latest
/// train listens and the system's top list, hits marked.
fn examples(
    artifacts: &Artifacts,
    evaluator: &Evaluator,
    system: &Recommendations,
    users: &[u32],
    count: usize,
    seed: u64,
) -> Result<Vec<Example>, PipelineError> {
    if count == 0 || users.is_empty() {
        return Ok(Vec::new());
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut draw = |from: &[u32]| from[((u128::from(rng.next_u64()) * from.len() as u128) >> 64) as usize];
    let (old, new): (Vec<u32>, Vec<u32>) = users.iter().partition(|&&u| evaluator.is_old(u));
    let mut chosen = Vec::new();
    if !new.is_empty() && count > 1 {
        chosen.push(draw(&new));
    }
    let pool = if old.is_empty() { &new } else { &old };
    while chosen.len() < count.min(users.len()) {
        let user = draw(pool);
        if !chosen.contains(&user) {
            chosen.push(user);
        } else if pool.len() <= chosen.len() {
            break;
        }
    }
    chosen.sort_unstable();

    let ids = evaluator.user_ids();
    let chosen_ids: Vec<i64> = chosen.iter().map(|&u| ids[u as usize]).collect();
    let pre = artifacts.dir(Stage::Preprocess);
    let mut listens: HashMap<i64, Vec<(i32, i64)>> = HashMap::new();
    for_each_batch(&pre.join(Window::Train.file()), &["user_id", "track_id", "track_seq"], |batch| {
        let users = batch.column(0).as_primitive::<Int64Type>();
        let tracks = batch.column(1).as_primitive::<Int64Type>();
        let seq = batch.column(2).as_primitive::<Int32Type>();
        for i in 0..batch.num_rows() {
            if chosen_ids.contains(&users.value(i)) {
                listens.entry(users.value(i)).or_default().push((seq.value(i), tracks.value(i)));
            }
        }
        Ok(())
    })?;
    let names = CatalogueNames::load(&pre)?;
    let item_ids = evaluator.encoders.items.ids();
    let lists: HashMap<u32, &[u32]> = system.lists().collect();
    let relevance = evaluator.relevance(WINDOW);
    Ok(chosen
        .iter()
        .zip(&chosen_ids)
        .map(|(&user, &user_id)| {
            let mut played = listens.remove(&user_id).unwrap_or_default();
            played.sort_unstable_by(|a, b| b.cmp(a));
            let relevant = relevance.relevant(user);
            let top = lists.get(&user).copied().unwrap_or(&[]);
            Example {
                user_id,
                old: evaluator.is_old(user),
                relevant: relevant.len(),
                last_listens: played.iter().take(EXAMPLE_LISTENS).map(|&(_, track)| names.named(track)).collect(),
                top: top
                    .iter()
                    .take(EXAMPLE_TOP)
                    .map(|&item| (names.named(item_ids[item as usize]), relevant.binary_search(&item).is_ok()))
                    .collect(),
            }
        })
        .collect())
}

/// Every row's per-user values at every K (`report/per_user.parquet`): what a later report on
/// the same data pairs with.
pub struct PerUserTable {
    batch: RecordBatch,
}

impl PerUserTable {
    fn new(rows: &[Judged], user_ids: &[i64], ks: &[usize]) -> Self {
        let n = user_ids.len();
        let mut columns: Vec<(String, ArrayRef)> = vec![
            (
                "user_id".into(),
                Arc::new(Int64Array::from_iter_values(rows.iter().flat_map(|_| user_ids.iter().copied()))) as ArrayRef,
            ),
            (
                "model".into(),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().flat_map(|row| std::iter::repeat_n(row.name.as_str(), n)),
                )) as ArrayRef,
            ),
        ];
        for &k in ks {
            for metric in UserMetric::ALL {
                let values = rows.iter().flat_map(|row| {
                    row.evaluation.at_k(k).expect("every K is evaluated").per_user.get(metric).iter().copied()
                });
                columns.push((
                    format!("{}@{k}", metric.as_str()),
                    Arc::new(Float64Array::from_iter_values(values)) as ArrayRef,
                ));
            }
        }
        Self { batch: RecordBatch::try_from_iter(columns).expect("equal lengths") }
    }

    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }
}

/// The empirical distribution of each row's per-user NDCG at the headline K, as lines: the
/// share of users (y) whose NDCG is at most x.
pub fn ndcg_distribution(table: &PerUserTable, rows: &[ScoreRow], k: usize) -> Vec<musicrec_plot::Line> {
    let batch = table.batch();
    let models = batch.column(1).as_string::<i32>();
    let Some(column) = batch.column_by_name(&format!("{}@{k}", CLAIMED.as_str())) else { return Vec::new() };
    let values = column.as_primitive::<Float64Type>();
    rows.iter()
        .map(|row| {
            let mut own: Vec<f64> =
                (0..batch.num_rows()).filter(|&i| models.value(i) == row.name).map(|i| values.value(i)).collect();
            own.sort_by(f64::total_cmp);
            let n = own.len();
            let points = (0..=CDF_POINTS)
                .filter_map(|step| {
                    let x = step as f64 / CDF_POINTS as f64;
                    (n > 0).then(|| (x, own.partition_point(|&v| v <= x + 1e-12) as f64 / n as f64))
                })
                .collect();
            musicrec_plot::Line { name: row.name.clone(), points }
        })
        .collect()
}

/// How a metric is labelled in the report; the original system's definitions say so.
fn label(metric: &str) -> &str {
    match metric {
        "hit_rate" => "hit rate",
        "coverage_user" => "CoverageUser (original)",
        "coverage_item" => "CoverageItem (original)",
        "original_novelty" => "Novelty (original)",
        "catalog_coverage" => "catalog coverage",
        "novelty" => "novelty (bits)",
        "artists" => "distinct artists",
        "genres" => "distinct genres",
        "popularity_percentile" => "popularity percentile",
        other => other,
    }
}

/// Every metric of the per-K tables, in column order.
const ALL_METRICS: [&str; 14] = [
    "precision",
    "recall",
    "ndcg",
    "map",
    "mrr",
    "hit_rate",
    "coverage_user",
    "coverage_item",
    "catalog_coverage",
    "novelty",
    "original_novelty",
    "artists",
    "genres",
    "popularity_percentile",
];

fn with_interval(interval: &Interval) -> String {
    format!("{:.4} [{:.4}, {:.4}]", interval.estimate, interval.low, interval.high)
}

fn number(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.4}"))
}

/// The report's first table: the system and every model at the headline K with intervals.
pub fn headline_section(card: &Scorecard) -> String {
    let k = card.headline_k;
    let mut md = format!("## Headline: {} window, K = {k}\n\n", card.window);
    let _ = writeln!(
        md,
        "Convention: {} ({} old, {} new users). Values are means over those users with a 95% bootstrap interval over users ({} resamples). The old-user view is under [Segments](#segments).\n",
        card.convention, card.old_users, card.new_users, card.resamples
    );
    md.push_str(
        "| row | precision | recall | NDCG | MAP | MRR | hit rate | CoverageUser (original) | users with a list |\n",
    );
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in &card.rows {
        let _ = write!(md, "| **{}** |", row.name);
        for metric in UserMetric::ALL {
            let _ = write!(md, " {} |", row.intervals.get(metric.as_str()).map_or("-".into(), with_interval));
        }
        let _ = writeln!(
            md,
            " {} | {} |",
            number(row.value("coverage_user", k)),
            row.metrics.get("users_with_recs").and_then(|v| v.as_u64()).unwrap_or(0)
        );
    }
    md.push('\n');
    for row in &card.rows {
        let _ = writeln!(
            md,
            "- **{}**: {}{}",
            row.name,
            row.description,
            row.run_id.as_ref().map_or(String::new(), |r| format!(" (run `{r}`)"))
        );
    }
    md
}

fn claim_line(c: &Comparison) -> String {
    let mut line = format!(
        "{}: {} {} − {} = {:+.4} [{:+.4}, {:+.4}]",
        c.claim, c.metric, c.a, c.b, c.difference.estimate, c.difference.low, c.difference.high
    );
    if let Some(ratio) = &c.ratio {
        let _ = write!(line, ", {:.2}× [{:.2}, {:.2}]", ratio.estimate, ratio.low, ratio.high);
    }
    line.push_str(if c.difference.excludes_zero() {
        " (the interval excludes 0)"
    } else {
        " (the interval includes 0: not shown to differ)"
    });
    if let Some(ratio) = c.original_convention_ratio {
        let _ = write!(line, "; under the original per-model convention the ratio reads {ratio:.2}×");
    }
    if let Some(run) = &c.against_run {
        let _ = write!(line, "; previous report: run `{run}`");
    }
    line
}

/// The differences the report claims, each with its paired bootstrap interval.
pub fn claims_section(card: &Scorecard) -> String {
    let mut md = String::from("\n### Claims (paired bootstrap over the same users, 95%)\n\n");
    for c in &card.comparisons {
        let _ = writeln!(md, "- {}.", claim_line(c));
    }
    for note in &card.notes {
        let _ = writeln!(md, "- {note}");
    }
    md
}

/// One table per K with every metric of docs/metrics.md.
pub fn all_metrics_section(card: &Scorecard) -> String {
    let mut md = String::from(
        "\n## Every metric at every K\n\nPer-user metrics are means over all judged users; novelty, distinct artists and genres and the popularity percentile are means over the lists given; coverages are shares (docs/metrics.md).\n",
    );
    for &k in &card.ks {
        let _ = write!(md, "\n### K = {k}\n\n| row |");
        for metric in ALL_METRICS {
            let _ = write!(md, " {} |", label(metric));
        }
        md.push_str("\n|---|");
        md.push_str(&"---:|".repeat(ALL_METRICS.len()));
        md.push('\n');
        for row in &card.rows {
            let _ = write!(md, "| {} |", row.name);
            for metric in ALL_METRICS {
                let _ = write!(md, " {} |", number(row.value(metric, k)));
            }
            md.push('\n');
        }
    }
    md
}

/// Users by history and activity; hits by track popularity.
pub fn segments_section(card: &Scorecard) -> String {
    let k = card.headline_k;
    let mut md = format!(
        "\n## Segments\n\nNDCG@{k} (hit rate@{k}) of each row over each group of judged users:\n\n| users | count |"
    );
    let names: Vec<&str> = card.rows.iter().map(|r| r.name.as_str()).collect();
    for name in &names {
        let _ = write!(md, " {name} |");
    }
    md.push_str("\n|---|---:|");
    md.push_str(&"---:|".repeat(names.len()));
    md.push('\n');
    for segment in &card.user_segments {
        let _ = write!(md, "| {} | {} |", segment.segment, segment.users);
        for (_, ndcg, hit_rate) in &segment.values {
            let _ = write!(md, " {ndcg:.4} ({hit_rate:.3}) |");
        }
        md.push('\n');
    }
    let _ = write!(
        md,
        "\nTracks by popularity: the most played tracks holding the first half of all train (user, track) pairs are the head, the next 30% the torso, the rest the tail. Share of each row's hits@{k} and recommendations@{k} in each:\n\n| row | hits | head | torso | tail | recommended: head | torso | tail |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for mix in &card.item_mix {
        let _ = write!(md, "| {} | {} |", mix.row, mix.hits);
        for share in mix.hit_share.iter().chain(&mix.recommended_share) {
            let _ = write!(md, " {:.1}% |", 100.0 * share);
        }
        md.push('\n');
    }
    md
}

/// A few sampled users: what they last played and what the system gives them.
pub fn examples_section(card: &Scorecard) -> String {
    let mut md = String::from(
        "\n## Examples\n\nUsers drawn with the configuration's seed; ✔ marks a track the user played in the test window.\n",
    );
    for example in &card.examples {
        let _ = writeln!(
            md,
            "\n### User {} ({}, {} tracks played in the test window)\n",
            example.user_id,
            if example.old { "old" } else { "new: no train history" },
            example.relevant
        );
        if !example.last_listens.is_empty() {
            md.push_str("Last listens (latest first): ");
            let listens: Vec<String> = example
                .last_listens
                .iter()
                .map(|t| format!("{} — {} ({})", text(&t.track), text(&t.artist), text(&t.genre)))
                .collect();
            md.push_str(&listens.join("; "));
            md.push_str("\n\n");
        }
        md.push_str("| # | track | artist | genre | played |\n|---:|---|---|---|:---:|\n");
        for (i, (track, hit)) in example.top.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                i + 1,
                text(&track.track),
                text(&track.artist),
                text(&track.genre),
                if *hit { "✔ hit" } else { "miss" }
            );
        }
    }
    md
}

/// The headline as plain text, for `musicrec run`.
pub fn headline_text(card: &Scorecard) -> String {
    let k = card.headline_k;
    let mut text = format!("test window, K = {k}: {}\n", card.convention);
    let _ = write!(text, "{:<12}", "row");
    let columns = [UserMetric::Precision, UserMetric::Recall, UserMetric::Ndcg, UserMetric::HitRate];
    for metric in columns {
        let _ = write!(text, " {:>26}", format!("{}@{k}", metric.as_str()));
    }
    let _ = writeln!(text, " {:>16}", format!("coverage_user@{k}"));
    for row in &card.rows {
        let _ = write!(text, "{:<12}", row.name);
        for metric in columns {
            let _ = write!(text, " {:>26}", row.intervals.get(metric.as_str()).map_or("-".into(), with_interval));
        }
        let _ = writeln!(text, " {:>16}", number(row.value("coverage_user", k)));
    }
    for c in &card.comparisons {
        let _ = writeln!(text, "{}", claim_line(c));
    }
    text
}
