//! Listeners and their listening: each user gets a taste (genres, a spot on the style axis,
//! favourite artists that come and go), habits (how often they replay, play albums through,
//! explore) and a life on the service (when they joined, whether they left, how active they
//! are), and from that a time-ordered history of listens.
//!
//! Users are generated in fixed-size chunks, each from its own random stream, so any chunk can
//! be made on any thread and the output never depends on scheduling.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use arrow_array::{ArrayRef, Date32Array, Int16Array, Int32Array, RecordBatch};
use arrow_schema::ArrowError;
use musicrec_data::schema::interactions_schema;

use crate::calendar::{LAST_DAY, TARGET_END_DAY, TRAIN_END_DAY, daily_activity, epoch_day};
use crate::catalog::Catalog;
use crate::random::{CumulativeWeights, Random, Stream};
use crate::scale::ScaleParams;

/// track_seq is an int16: a longer history is cut here.
const MAX_EVENTS_PER_USER: u32 = i16::MAX as u32;
/// σ of the log-normal number of events: a few heavy listeners, many light ones.
const EVENTS_SIGMA: f64 = 1.1;
/// Share of users already listening when the year starts; the rest join during it.
const EXISTING_USER_SHARE: f64 = 0.4;
/// Joining grows through the year: the density on the last day is 1 + this times the first's.
const JOIN_GROWTH: f64 = 1.0;
const CHURN_CHANCE: f64 = 0.2;
const MEAN_DAYS_BEFORE_CHURN: f64 = 90.0;
/// Sizes of the style neighbourhoods (per genre) a listener explores and picks favourites from.
const EXPLORED_TRACKS: usize = 300;
const FAVOURITE_CANDIDATES: usize = 16;
/// How long a favourite that is not one of the listener's core artists stays in rotation.
const MEAN_FAVOURITE_DAYS: f64 = 150.0;
/// Draws before a listener settles for a track they know (or, when everything drawn was still
/// unreleased, the catalogue's fallback hit).
const MAX_DRAWS: usize = 32;

/// Listens and distinct listeners per track, shared by the chunks being generated in parallel.
/// Sums commute, so the totals do not depend on the order the chunks run in.
pub(crate) struct TrackCounters {
    pub listens: Vec<AtomicU32>,
    pub listeners: Vec<AtomicU32>,
}

impl TrackCounters {
    pub(crate) fn new(tracks: usize) -> Self {
        Self {
            listens: (0..tracks).map(|_| AtomicU32::new(0)).collect(),
            listeners: (0..tracks).map(|_| AtomicU32::new(0)).collect(),
        }
    }
}

/// What the statistics need to know of a chunk besides the per-track counters.
#[derive(Debug, Default)]
pub(crate) struct ChunkTally {
    pub events: u64,
    pub repeats: u64,
    pub target_events: u64,
    pub test_events: u64,
    pub new_users: u64,
    pub target_users: u64,
    pub target_users_in_train: u64,
    pub test_users: u64,
    pub test_users_in_train: u64,
    pub events_per_user: Vec<u32>,
}

pub(crate) struct Chunk {
    pub interactions: RecordBatch,
    pub tally: ChunkTally,
}

pub(crate) struct ListeningModel<'a> {
    catalog: &'a Catalog,
    params: ScaleParams,
    seed: u64,
    activity: CumulativeWeights,
    counters: &'a TrackCounters,
}

/// The share of a listener's picks (when not continuing an album or replaying) that go to each
/// source; whatever is left after favourites and exploration goes to the global charts.
struct Habits {
    album_continuation: f64,
    replay: f64,
    /// Chance of passing over a track already heard when looking for something to play
    /// (replaying is its own habit).
    novelty_seeking: f64,
    favourites: f64,
    exploration: f64,
}

struct GenreTaste {
    genre: u16,
    /// Weight at the start and at the end of the year: tastes drift linearly in between.
    early: f64,
    late: f64,
    /// The listener's style neighbourhood of the genre in `Catalog::genre_tracks`.
    tracks: Range<usize>,
}

struct Favourite {
    artist: u32,
    affection: f64,
    /// Days (inclusive) the artist is in rotation.
    from: u16,
    until: u16,
}

struct Listener {
    events: u32,
    join: u16,
    leave: u16,
    joined_during_year: bool,
    genres: Vec<GenreTaste>,
    /// Genres related to the main one that the listener turns to when their own are
    /// exhausted (never empty).
    wider_genres: Vec<u16>,
    favourites: Vec<Favourite>,
    habits: Habits,
}

/// Per-chunk working memory, reused across the chunk's users.
struct Scratch {
    /// Per track, the stamp of the last user of the chunk who heard it: a set of heard
    /// tracks per user that never needs clearing.
    heard_by: Vec<u16>,
    /// The current user's stamp: their 1-based position in the chunk.
    stamp: u16,
    history: Vec<u32>,
    sessions: Vec<(u16, u32)>,
    active_favourites: Vec<(u32, f64)>,
    genre_weights: Vec<f64>,
}

/// A chunk being generated: its interactions columns and its tally.
#[derive(Default)]
struct ChunkBuilder {
    user_id: Vec<i32>,
    track_id: Vec<i32>,
    track_seq: Vec<i16>,
    started_at: Vec<i32>,
    tally: ChunkTally,
}

impl<'a> ListeningModel<'a> {
    pub(crate) fn new(catalog: &'a Catalog, params: ScaleParams, seed: u64, counters: &'a TrackCounters) -> Self {
        Self { catalog, params, seed, activity: daily_activity(), counters }
    }

    pub(crate) fn chunk_count(&self) -> u32 {
        self.params.users.div_ceil(self.params.chunk_users)
    }

    pub(crate) fn generate_chunk(&self, chunk: u32) -> Result<Chunk, ArrowError> {
        let mut rng = Random::new(self.seed, Stream::Users { chunk });
        let first_user = chunk * self.params.chunk_users;
        let users = first_user..(first_user + self.params.chunk_users).min(self.params.users);
        let mut scratch = Scratch {
            heard_by: vec![0; self.catalog.track_count()],
            stamp: 0,
            history: Vec::new(),
            sessions: Vec::new(),
            active_favourites: Vec::new(),
            genre_weights: Vec::new(),
        };
        let mut chunk = ChunkBuilder::default();
        for (position, user) in users.enumerate() {
            let listener = self.new_listener(&mut rng);
            scratch.stamp = u16::try_from(position + 1).expect("chunk_users fits u16 (checked by the scale table)");
            self.listen(&listener, user as i32, &mut rng, &mut scratch, &mut chunk);
        }
        let interactions = RecordBatch::try_new(
            interactions_schema(),
            vec![
                Arc::new(Int32Array::from(chunk.user_id)) as ArrayRef,
                Arc::new(Int32Array::from(chunk.track_id)),
                Arc::new(Int16Array::from(chunk.track_seq)),
                Arc::new(Date32Array::from(chunk.started_at)),
            ],
        )?;
        Ok(Chunk { interactions, tally: chunk.tally })
    }

    fn new_listener(&self, rng: &mut Random) -> Listener {
        let joined_during_year = !rng.chance(EXISTING_USER_SHARE);
        let join = if joined_during_year { growing_join_day(rng) } else { 0 };
        let leave = if rng.chance(CHURN_CHANCE) {
            (f64::from(join) + 1.0 + rng.exponential(MEAN_DAYS_BEFORE_CHURN)).min(f64::from(LAST_DAY)) as u16
        } else {
            LAST_DAY
        };
        let span = self.activity.sum_of(usize::from(join), usize::from(leave) + 1);
        let share_of_year = span / self.activity.sum_of(0, self.activity.len());
        // Users here for part of the year listen less, but not proportionally less: people who
        // just joined are keen.
        let expected = rng.log_normal(self.params.median_events, EVENTS_SIGMA) * share_of_year.powf(0.7);
        let events = (expected.round() as u32).clamp(1, MAX_EVENTS_PER_USER);
        // Heavy listeners have broader tastes: more genres and more favourite artists.
        let breadth = (f64::from(events) / 100.0).max(1.0).sqrt();
        let style = rng.unit() as f32;
        let genres = self.pick_genres(style, breadth, rng);
        let favourites = self.pick_favourites(&genres, style, breadth, join, leave, rng);
        let album_continuation = rng.uniform(0.05, 0.2);
        let replay = rng.uniform(0.02, 0.2);
        let novelty_seeking = rng.uniform(0.65, 0.98);
        let favourites_share = rng.uniform(0.3, 0.6);
        let charts_share = rng.uniform(0.0, 0.05);
        let wider_genres = (0..5).map(|_| self.catalog.related_genre(genres[0].genre, rng)).collect();
        Listener {
            events,
            join,
            leave,
            joined_during_year,
            genres,
            wider_genres,
            favourites,
            habits: Habits {
                album_continuation,
                replay,
                novelty_seeking,
                favourites: favourites_share,
                exploration: 1.0 - favourites_share - charts_share,
            },
        }
    }

    /// A main genre and a few related ones (more for heavy listeners); a related one may be a
    /// taste acquired during the year (weight 0 in January) and the main one may fade a little.
    fn pick_genres(&self, style: f32, breadth: f64, rng: &mut Random) -> Vec<GenreTaste> {
        let catalog = self.catalog;
        let main = catalog.genre_popularity.sample(rng) as u16;
        let taste = |genre: u16, early: f64, late: f64| GenreTaste {
            genre,
            early,
            late,
            tracks: catalog.genre_tracks.style_neighbourhood(genre, style, EXPLORED_TRACKS),
        };
        let mut genres = vec![taste(main, 1.0, rng.uniform(0.6, 1.0))];
        let extra = match rng.below(20) {
            0..=6 => 0,
            7..=14 => 1,
            _ => 2,
        } + (breadth - 1.0).round().min(3.0) as usize;
        for _ in 0..extra {
            let genre = catalog.related_genre(main, rng);
            if genres.iter().any(|g| g.genre == genre) {
                continue;
            }
            let (early, late) = if rng.chance(0.3) {
                (0.0, rng.uniform(0.3, 0.8))
            } else {
                (rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.8))
            };
            genres.push(taste(genre, early, late));
        }
        genres
    }

    /// A handful of artists near the listener's style in their genres. The first few are core
    /// favourites, in rotation all year; the others are discovered during the listener's time
    /// on the service and fade after a while.
    fn pick_favourites(
        &self,
        genres: &[GenreTaste],
        style: f32,
        breadth: f64,
        join: u16,
        leave: u16,
        rng: &mut Random,
    ) -> Vec<Favourite> {
        let catalog = self.catalog;
        let wanted = ((2.0 + rng.exponential(5.0)) * breadth).min(60.0) as usize;
        let core = 1 + rng.below_usize(3);
        let genre_weights = CumulativeWeights::new(genres.iter().map(|g| g.early + g.late));
        let mut favourites: Vec<Favourite> = Vec::with_capacity(wanted);
        for _ in 0..wanted * 2 {
            if favourites.len() == wanted {
                break;
            }
            let genre = genres[genre_weights.sample(rng)].genre;
            let window = catalog.genre_artists.style_neighbourhood(genre, style, FAVOURITE_CANDIDATES);
            let artist = catalog.genre_artists.sample(window, rng);
            if favourites.iter().any(|f| f.artist == artist) {
                continue;
            }
            let (discovered, until) = if favourites.len() < core {
                (join, LAST_DAY)
            } else {
                let day = join + rng.below(u64::from(leave - join) + 1) as u16;
                let until = (f64::from(day) + rng.exponential(MEAN_FAVOURITE_DAYS)).min(f64::from(LAST_DAY)) as u16;
                (day, until)
            };
            let debut = catalog.artists[artist as usize].debut.max(0) as u16;
            favourites.push(Favourite {
                artist,
                affection: 0.1 + rng.exponential(1.0),
                from: discovered.max(debut),
                until: until.max(debut),
            });
        }
        favourites
    }

    /// Generates the listener's history, appends it to the chunk and counts it.
    fn listen(
        &self,
        listener: &Listener,
        user_id: i32,
        rng: &mut Random,
        scratch: &mut Scratch,
        chunk: &mut ChunkBuilder,
    ) {
        self.plan_sessions(listener, rng, &mut scratch.sessions);
        scratch.history.clear();
        let (mut in_target, mut in_test) = (false, false);
        let mut repeats = 0;
        for session in 0..scratch.sessions.len() {
            let (day, length) = scratch.sessions[session];
            self.prepare_day(listener, day, scratch);
            let mut previous = None;
            for _ in 0..length {
                let track = self.pick_track(listener, day, previous, scratch, rng);
                let counter = track as usize;
                self.counters.listens[counter].fetch_add(1, Ordering::Relaxed);
                if scratch.heard_by[counter] == scratch.stamp {
                    repeats += 1;
                } else {
                    scratch.heard_by[counter] = scratch.stamp;
                    self.counters.listeners[counter].fetch_add(1, Ordering::Relaxed);
                }
                scratch.history.push(track);
                previous = Some(track);
                chunk.user_id.push(user_id);
                chunk.track_id.push(self.catalog.tracks.id[counter]);
                chunk.track_seq.push(scratch.history.len() as i16);
                chunk.started_at.push(epoch_day(day));
            }
            let in_target_window = (TRAIN_END_DAY..TARGET_END_DAY).contains(&day);
            let in_test_window = day >= TARGET_END_DAY;
            in_target |= in_target_window;
            in_test |= in_test_window;
            if in_target_window {
                chunk.tally.target_events += u64::from(length);
            } else if in_test_window {
                chunk.tally.test_events += u64::from(length);
            }
        }

        let first_day = scratch.sessions[0].0;
        let in_train = first_day < TRAIN_END_DAY;
        let tally = &mut chunk.tally;
        tally.events += u64::from(listener.events);
        tally.repeats += repeats;
        tally.new_users += u64::from(!in_train);
        tally.target_users += u64::from(in_target);
        tally.target_users_in_train += u64::from(in_target && in_train);
        tally.test_users += u64::from(in_test);
        tally.test_users_in_train += u64::from(in_test && in_train);
        tally.events_per_user.push(listener.events);
    }

    /// Splits the listener's events into sessions (a day and a number of tracks), in time
    /// order. Someone who joined during the year starts on the day they joined.
    fn plan_sessions(&self, listener: &Listener, rng: &mut Random, sessions: &mut Vec<(u16, u32)>) {
        sessions.clear();
        let mean_length = 3.0 + rng.exponential(7.0);
        let mut remaining = listener.events;
        while remaining > 0 {
            let length = (1 + rng.exponential(mean_length - 1.0) as u32).min(remaining);
            let day = if sessions.is_empty() && listener.joined_during_year {
                listener.join
            } else {
                self.activity.sample_range(usize::from(listener.join), usize::from(listener.leave) + 1, rng) as u16
            };
            sessions.push((day, length));
            remaining -= length;
        }
        sessions.sort_by_key(|&(day, _)| day);
    }

    /// The favourites in rotation and the genre weights of the day, as running sums.
    fn prepare_day(&self, listener: &Listener, day: u16, scratch: &mut Scratch) {
        let mut total = 0.0;
        scratch.active_favourites.clear();
        for favourite in listener.favourites.iter().filter(|f| (f.from..=f.until).contains(&day)) {
            total += favourite.affection;
            scratch.active_favourites.push((favourite.artist, total));
        }
        let progress = f64::from(day) / f64::from(LAST_DAY);
        let mut total = 0.0;
        scratch.genre_weights.clear();
        for genre in &listener.genres {
            total += genre.early + (genre.late - genre.early) * progress;
            scratch.genre_weights.push(total);
        }
    }

    fn pick_track(
        &self,
        listener: &Listener,
        day: u16,
        previous: Option<u32>,
        scratch: &Scratch,
        rng: &mut Random,
    ) -> u32 {
        let catalog = self.catalog;
        let habits = &listener.habits;
        if let Some(previous) = previous
            && rng.chance(habits.album_continuation)
            && let Some(next) = catalog.next_on_album(previous)
        {
            return next;
        }
        if !scratch.history.is_empty() && rng.chance(habits.replay) {
            // Uniform over past events, so tracks already played often are replayed more.
            return scratch.history[rng.below_usize(scratch.history.len())];
        }
        let released = |track: u32| i32::from(catalog.tracks.release[track as usize]) <= i32::from(day);
        let choice = rng.unit();
        let mut scope = if choice < habits.favourites && !scratch.active_favourites.is_empty() {
            Scope::Favourites
        } else if choice < habits.favourites + habits.exploration {
            Scope::StyleNeighbourhood
        } else {
            Scope::Charts
        };
        let mut heard_candidate = None;
        for _ in 0..MAX_DRAWS {
            let candidate = match scope {
                Scope::Favourites => {
                    let artist = pick_running(&scratch.active_favourites, rng);
                    let tracks = &catalog.artists[artist as usize].tracks;
                    catalog.popularity.sample_range(tracks.start as usize, tracks.end as usize, rng) as u32
                }
                Scope::StyleNeighbourhood => {
                    let genre = pick_index(&scratch.genre_weights, rng);
                    catalog.genre_tracks.sample(listener.genres[genre].tracks.clone(), rng)
                }
                Scope::Genre => {
                    let genre = listener.genres[pick_index(&scratch.genre_weights, rng)].genre;
                    catalog.genre_tracks.sample(catalog.genre_tracks.members_of(genre), rng)
                }
                Scope::WiderGenres => {
                    let genre = listener.wider_genres[rng.below_usize(listener.wider_genres.len())];
                    catalog.genre_tracks.sample(catalog.genre_tracks.members_of(genre), rng)
                }
                Scope::Charts => catalog.popularity.sample(rng) as u32,
            };
            if !released(candidate) {
                continue;
            }
            let heard = scratch.heard_by[candidate as usize] == scratch.stamp;
            if heard && rng.chance(habits.novelty_seeking) {
                heard_candidate = Some(candidate);
                scope = scope.broader();
                continue;
            }
            return candidate;
        }
        // Everything drawn was unreleased or passed over: settle for something familiar.
        heard_candidate.unwrap_or(catalog.fallback_track)
    }
}

/// Where a listener looks for the next track. Someone who keeps landing on tracks they know
/// looks further afield: heavy listeners spread over the popular part of the catalogue rather
/// than wearing out their favourites' deep cuts.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Favourites,
    StyleNeighbourhood,
    Genre,
    WiderGenres,
    Charts,
}

impl Scope {
    fn broader(self) -> Self {
        match self {
            Self::Favourites => Self::StyleNeighbourhood,
            Self::StyleNeighbourhood => Self::Genre,
            Self::Genre | Self::WiderGenres => Self::WiderGenres,
            Self::Charts => Self::Charts,
        }
    }
}

/// A join day during the year, more likely late (the service grows), by rejection sampling.
fn growing_join_day(rng: &mut Random) -> u16 {
    loop {
        let day = rng.below(u64::from(LAST_DAY) + 1) as u16;
        let density = (1.0 + JOIN_GROWTH * f64::from(day) / f64::from(LAST_DAY)) / (1.0 + JOIN_GROWTH);
        if rng.chance(density) {
            return day;
        }
    }
}

/// An item of a short list given as (item, running weight), drawn by weight.
fn pick_running(items: &[(u32, f64)], rng: &mut Random) -> u32 {
    let total = items.last().map_or(0.0, |&(_, sum)| sum);
    let target = total * rng.unit();
    items.iter().find(|&&(_, sum)| sum > target).unwrap_or(&items[items.len() - 1]).0
}

/// An index into a short list of running weights, drawn by weight.
fn pick_index(running: &[f64], rng: &mut Random) -> usize {
    let target = running.last().copied().unwrap_or(0.0) * rng.unit();
    running.iter().position(|&sum| sum > target).unwrap_or(running.len() - 1)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, Int32Type};

    use super::*;
    use crate::calendar::YEAR_START_EPOCH_DAY;
    use crate::scale::Scale;

    #[test]
    fn nobody_hears_a_track_before_its_release_and_new_releases_are_heard() {
        let params = ScaleParams { users: 3_000, ..Scale::Small.params() };
        let catalog = Catalog::build(&params, 3);
        let counters = TrackCounters::new(catalog.track_count());
        let model = ListeningModel::new(&catalog, params, 3, &counters);
        let index_of: HashMap<i32, usize> =
            catalog.tracks.id.iter().enumerate().map(|(index, &id)| (id, index)).collect();
        let (mut events, mut new_release_events) = (0, 0);
        for chunk in 0..model.chunk_count() {
            let batch = model.generate_chunk(chunk).unwrap().interactions;
            let tracks = batch.column(1).as_primitive::<Int32Type>();
            let dates = batch.column(3).as_primitive::<Date32Type>();
            for (track, date) in tracks.values().iter().zip(dates.values()) {
                let release = catalog.tracks.release[index_of[track]];
                let day = date - YEAR_START_EPOCH_DAY;
                assert!(i32::from(release) <= day, "track {track} released on day {release} heard on day {day}");
                events += 1;
                new_release_events += u64::from(release >= 0);
            }
        }
        let share = new_release_events as f64 / events as f64;
        assert!((0.05..0.5).contains(&share), "share of listens to 2022 releases: {share}");
    }

    #[test]
    fn every_user_listens_and_histories_are_capped() {
        let params = Scale::Tiny.params();
        let catalog = Catalog::build(&params, 9);
        let counters = TrackCounters::new(catalog.track_count());
        let model = ListeningModel::new(&catalog, params, 9, &counters);
        let mut users = 0;
        for chunk in 0..model.chunk_count() {
            let tally = model.generate_chunk(chunk).unwrap().tally;
            assert!(tally.events_per_user.iter().all(|&n| (1..=MAX_EVENTS_PER_USER).contains(&n)));
            users += tally.events_per_user.len();
        }
        assert_eq!(users, params.users as usize);
    }
}
