//! The music catalogue: genres → artists → albums → tracks, each track's popularity, release
//! day and public id, and the indexes listeners sample from.
//!
//! Internally everything is a dense index; an artist's albums and an album's tracks are
//! contiguous, so "a track of this artist" is a range of the track table. Public ids are
//! assigned at the end, scattered and in release order like a real service's ids.

use std::ops::Range;

use crate::calendar::{BACK_CATALOGUE, DAYS_IN_YEAR, LAST_DAY, ReleaseDay};
use crate::random::{CumulativeWeights, Random, Stream};
use crate::scale::ScaleParams;

pub(crate) const NO_GENRE: u16 = u16::MAX;
pub(crate) const NO_ENTRY: u32 = u32::MAX;

/// Genre popularity falls off as rank^-this: a few big genres and a long tail.
const GENRE_ZIPF_EXPONENT: f64 = 0.9;
/// Tail index of artist popularity (Pareto): the crowd of barely-heard artists real listening
/// logs have...
const ARTIST_POPULARITY_TAIL: f64 = 0.7;
/// ...and a cap on it, so that a larger catalogue brings more stars rather than ever bigger
/// ones: popularity concentrates the same way at every scale.
const ARTIST_POPULARITY_CAP: f64 = 100.0;
/// A track's appeal falls with its position on the album as (position + 1)^-this: openers and
/// singles are heard, deep cuts mostly are not.
const ALBUM_POSITION_DECAY: f64 = 1.5;
/// σ of a track's own (log-normal) appeal, on top of its artist's, album's and position's.
const TRACK_APPEAL_SIGMA: f64 = 1.8;
const SECOND_GENRE_CHANCE: f64 = 0.3;
const FEATURE_CHANCE: f64 = 0.07;
/// Collaborators come from the artist's closest neighbours in style: this many.
const FEATURE_NEIGHBOURHOOD: usize = 8;
const COMPILATION_CHANCE: f64 = 0.25;
const BACK_CATALOGUE_ARTIST_CHANCE: f64 = 0.75;
/// Track ids start somewhere below this and grow by 1..=MAX_TRACK_ID_GAP: at most
/// tracks × MAX_TRACK_ID_GAP + TRACK_ID_START_SPREAD, far below 2^31 at every scale.
pub(crate) const TRACK_ID_START_SPREAD: u64 = 5_000;
pub(crate) const MAX_TRACK_ID_GAP: u64 = 24;

pub(crate) struct Artist {
    pub id: i64,
    /// Main genre first; the second is `NO_GENRE` for single-genre artists.
    pub genres: [u16; 2],
    /// Where the artist sits on a one-dimensional style axis in [0, 1) shared by all genres:
    /// listeners prefer a neighbourhood of it, which gives collaborative filtering structure
    /// finer than genres to learn.
    pub style: f32,
    /// The artist's own tracks (features on others' tracks excluded).
    pub tracks: Range<u32>,
    /// The first day any of the artist's albums is out.
    pub debut: ReleaseDay,
}

pub(crate) struct Album {
    pub id: i64,
    pub artist: u32,
    /// Like `Artist::genres`: the second is `NO_GENRE` when absent.
    pub genres: [u16; 2],
    /// Empty for compilations, whose tracks belong to earlier albums.
    pub tracks: Range<u32>,
    pub is_compilation: bool,
}

/// Per-track columns, indexed by internal track index.
pub(crate) struct Tracks {
    pub id: Vec<i32>,
    pub album: Vec<u32>,
    /// The compilation the track also appears on, or `NO_ENTRY`.
    pub compilation: Vec<u32>,
    pub artist: Vec<u32>,
    /// A second credited artist, or `NO_ENTRY`.
    pub featured_artist: Vec<u32>,
    pub release: Vec<ReleaseDay>,
    /// Internal indices in increasing id order: the row order of tracks.parquet.
    pub by_id: Vec<u32>,
}

/// Members of each genre (tracks or artists), ordered by style within the genre, with sampling
/// weights: one flat table where genre g owns a contiguous slice.
pub(crate) struct GenreIndex {
    offsets: Vec<usize>,
    members: Vec<u32>,
    styles: Vec<f32>,
    weights: CumulativeWeights,
}

impl GenreIndex {
    /// `entries` are (genre, style, member, weight).
    fn build(genre_count: usize, mut entries: Vec<(u16, f32, u32, f64)>) -> Self {
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut offsets = vec![0; genre_count + 1];
        for &(genre, ..) in &entries {
            offsets[usize::from(genre) + 1] += 1;
        }
        for genre in 0..genre_count {
            offsets[genre + 1] += offsets[genre];
        }
        Self {
            offsets,
            members: entries.iter().map(|e| e.2).collect(),
            styles: entries.iter().map(|e| e.1).collect(),
            weights: CumulativeWeights::new(entries.iter().map(|e| e.3)),
        }
    }

    pub(crate) fn members_of(&self, genre: u16) -> Range<usize> {
        self.offsets[usize::from(genre)]..self.offsets[usize::from(genre) + 1]
    }

    /// `count` members of `genre` around `centre` in style order, half on each side where the
    /// genre allows (all of them in a small genre). A fixed count rather than a fixed width
    /// keeps a listener's neighbourhood the same size at every scale, so popularity
    /// concentrates the same way in small and big data.
    pub(crate) fn style_neighbourhood(&self, genre: u16, centre: f32, count: usize) -> Range<usize> {
        let genre_range = self.members_of(genre);
        if genre_range.len() <= count {
            return genre_range;
        }
        let styles = &self.styles[genre_range.clone()];
        let middle = styles.partition_point(|&s| s < centre);
        let start = middle.saturating_sub(count / 2).min(styles.len() - count);
        genre_range.start + start..genre_range.start + start + count
    }

    pub(crate) fn sample(&self, range: Range<usize>, rng: &mut Random) -> u32 {
        self.members[self.weights.sample_range(range.start, range.end, rng)]
    }
}

pub(crate) struct Catalog {
    pub genre_count: u16,
    /// Each genre's popularity rank, 0 for the most popular: names follow it, so the biggest
    /// genre is called "pop".
    pub genre_rank: Vec<usize>,
    /// How likely each genre is to be an artist's or a listener's main genre.
    pub genre_popularity: CumulativeWeights,
    pub artists: Vec<Artist>,
    pub albums: Vec<Album>,
    pub tracks: Tracks,
    /// Global popularity over track indices; also "a track of this artist" via its range.
    pub popularity: CumulativeWeights,
    pub genre_tracks: GenreIndex,
    pub genre_artists: GenreIndex,
    /// A back-catalogue hit, for the rare draw that keeps landing on unreleased tracks.
    pub fallback_track: u32,
}

impl Catalog {
    pub(crate) fn track_count(&self) -> usize {
        self.tracks.id.len()
    }

    pub(crate) fn album_genres(&self, album: u32) -> impl Iterator<Item = u16> {
        self.albums[album as usize].genres.into_iter().filter(|&g| g != NO_GENRE)
    }

    /// The track after `track` on its album, if any.
    pub(crate) fn next_on_album(&self, track: u32) -> Option<u32> {
        let album = &self.albums[self.tracks.album[track as usize] as usize];
        (track + 1 < album.tracks.end).then_some(track + 1)
    }

    /// A related genre: usually a neighbour (genre indices near each other are musically
    /// close, which listeners' combined tastes reflect), sometimes any genre.
    pub(crate) fn related_genre(&self, genre: u16, rng: &mut Random) -> u16 {
        related_genre(genre, self.genre_count, &self.genre_popularity, rng)
    }

    pub(crate) fn build(params: &ScaleParams, seed: u64) -> Self {
        let mut rng = Random::new(seed, Stream::Catalog);
        let genre_count = params.genres;
        // Popularity rank is shuffled against the index so that neighbouring (related) genres
        // are not all hits or all niche.
        let genre_rank = rng.permutation(usize::from(genre_count));
        let genre_popularity =
            CumulativeWeights::new(genre_rank.iter().map(|&rank| (rank as f64 + 1.0).powf(-GENRE_ZIPF_EXPONENT)));

        let mut draft = Draft::default();
        while draft.track_album.len() < params.tracks as usize {
            draft.add_artist(params.tracks as usize, genre_count, &genre_popularity, &mut rng);
        }

        // Fans (and collaborators) find artists in proportion to their popularity.
        let genre_artists = GenreIndex::build(
            usize::from(genre_count),
            draft
                .artists
                .iter()
                .zip(&draft.artist_popularity)
                .enumerate()
                .flat_map(|(index, (artist, &popularity))| {
                    artist
                        .genres
                        .into_iter()
                        .filter(|&g| g != NO_GENRE)
                        .map(move |g| (g, artist.style, index as u32, popularity))
                })
                .collect(),
        );
        let featured_artist = draft.pick_features(&genre_artists, &mut rng);
        let compilation = draft.add_compilations(&mut rng);

        let genre_tracks = GenreIndex::build(
            usize::from(genre_count),
            (0..draft.track_album.len())
                .flat_map(|track| {
                    let album = &draft.albums[draft.track_album[track] as usize];
                    let style = draft.artists[album.artist as usize].style;
                    let weight = draft.track_weight[track];
                    album.genres.into_iter().filter(|&g| g != NO_GENRE).map(move |g| (g, style, track as u32, weight))
                })
                .collect(),
        );

        let track_release: Vec<ReleaseDay> =
            draft.track_album.iter().map(|&album| draft.album_release[album as usize]).collect();
        let fallback_track = (0..track_release.len())
            .filter(|&t| track_release[t] == BACK_CATALOGUE)
            .max_by(|&a, &b| draft.track_weight[a].total_cmp(&draft.track_weight[b]))
            .expect("the first artist's first album is back catalogue") as u32;

        // Ids grow with release, like ids handed out as content arrives, with gaps left by
        // content that was removed or never published.
        let track_by_id = order_by_release(&track_release);
        let track_id_values =
            scattered_ids(track_by_id.len(), 1 + rng.below(TRACK_ID_START_SPREAD) as i64, MAX_TRACK_ID_GAP, &mut rng);
        let mut track_id = vec![0i32; track_release.len()];
        for (&track, &id) in track_by_id.iter().zip(&track_id_values) {
            track_id[track as usize] = i32::try_from(id).expect("track ids stay far below 2^31");
        }
        let album_ids = ids_in_order(&order_by_release(&draft.album_release), 7, &mut rng);
        let debuts: Vec<ReleaseDay> = draft.artists.iter().map(|a| a.debut).collect();
        let artist_ids = ids_in_order(&order_by_release(&debuts), 7, &mut rng);

        let Draft { mut artists, mut albums, track_album, track_weight, .. } = draft;
        for (artist, id) in artists.iter_mut().zip(artist_ids) {
            artist.id = id;
        }
        for (album, id) in albums.iter_mut().zip(album_ids) {
            album.id = id;
        }
        let artist = track_album.iter().map(|&album| albums[album as usize].artist).collect();
        Self {
            genre_count,
            genre_rank,
            genre_popularity,
            artists,
            albums,
            tracks: Tracks {
                id: track_id,
                album: track_album,
                compilation,
                artist,
                featured_artist,
                release: track_release,
                by_id: track_by_id,
            },
            popularity: CumulativeWeights::new(track_weight),
            genre_tracks,
            genre_artists,
            fallback_track,
        }
    }
}

fn related_genre(genre: u16, genre_count: u16, popularity: &CumulativeWeights, rng: &mut Random) -> u16 {
    if genre_count < 2 {
        return genre;
    }
    if rng.chance(0.7) {
        let step = 1 + rng.below(3.min(u64::from(genre_count) - 1)) as u16;
        let count = u32::from(genre_count);
        let shifted = if rng.chance(0.5) {
            u32::from(genre) + u32::from(step)
        } else {
            u32::from(genre) + count - u32::from(step)
        };
        (shifted % count) as u16
    } else {
        popularity.sample(rng) as u16
    }
}

/// The catalogue while it is being built: artists, albums and per-track columns in index order.
#[derive(Default)]
struct Draft {
    artists: Vec<Artist>,
    artist_popularity: Vec<f64>,
    albums: Vec<Album>,
    album_release: Vec<ReleaseDay>,
    track_album: Vec<u32>,
    track_weight: Vec<f64>,
}

impl Draft {
    /// Adds an artist with a discography, stopping at `track_target` tracks in all.
    fn add_artist(&mut self, track_target: usize, genre_count: u16, genres: &CumulativeWeights, rng: &mut Random) {
        let artist = self.artists.len() as u32;
        // The first artists found one genre each, so that no genre is empty.
        let main_genre = if artist < u32::from(genre_count) { artist as u16 } else { genres.sample(rng) as u16 };
        let second_genre = if rng.chance(SECOND_GENRE_CHANCE) {
            Some(related_genre(main_genre, genre_count, genres, rng)).filter(|&g| g != main_genre)
        } else {
            None
        };
        // The very first artist is back catalogue so that some track is out on every day.
        let back_catalogue = artist == 0 || rng.chance(BACK_CATALOGUE_ARTIST_CHANCE);
        let debut = if back_catalogue { BACK_CATALOGUE } else { rng.below(u64::from(DAYS_IN_YEAR)) as ReleaseDay };
        let popularity = rng.pareto(ARTIST_POPULARITY_TAIL).min(ARTIST_POPULARITY_CAP);
        let album_count = 1 + rng.exponential(if back_catalogue { 1.6 } else { 0.6 }) as usize;
        let mut releases: Vec<ReleaseDay> = (0..album_count)
            .map(|album| match (album, back_catalogue) {
                (0, _) => debut,
                (_, true) if rng.chance(0.8) => BACK_CATALOGUE,
                _ => {
                    let earliest = debut.max(0) as u64;
                    (earliest + rng.below(u64::from(LAST_DAY) + 1 - earliest)) as ReleaseDay
                }
            })
            .collect();
        releases.sort_unstable();

        let first_track = self.track_album.len() as u32;
        for release in releases {
            let remaining = track_target - self.track_album.len();
            if remaining == 0 {
                break;
            }
            let length = match rng.below(100) {
                0..=34 => 1 + rng.below(2),  // single
                35..=59 => 3 + rng.below(4), // EP
                _ => 7 + rng.below(10),      // LP
            } as usize;
            let genres = match second_genre {
                Some(second) if rng.chance(0.7) => [main_genre, second],
                _ => [main_genre, NO_GENRE],
            };
            let album = self.albums.len() as u32;
            let album_appeal = rng.log_normal(1.0, 0.7);
            let start = self.track_album.len() as u32;
            for position in 0..length.min(remaining) {
                let weight = popularity
                    * album_appeal
                    * (position as f64 + 1.0).powf(-ALBUM_POSITION_DECAY)
                    * rng.log_normal(1.0, TRACK_APPEAL_SIGMA);
                self.track_album.push(album);
                self.track_weight.push(weight);
            }
            self.albums.push(Album {
                id: 0,
                artist,
                genres,
                tracks: start..self.track_album.len() as u32,
                is_compilation: false,
            });
            self.album_release.push(release);
        }
        self.artists.push(Artist {
            id: 0,
            genres: [main_genre, second_genre.unwrap_or(NO_GENRE)],
            style: rng.unit() as f32,
            tracks: first_track..self.track_album.len() as u32,
            debut,
        });
        self.artist_popularity.push(popularity);
    }

    /// Featured artists: a collaborator from the same genre and a nearby style.
    fn pick_features(&self, genre_artists: &GenreIndex, rng: &mut Random) -> Vec<u32> {
        (0..self.track_album.len())
            .map(|track| {
                if !rng.chance(FEATURE_CHANCE) {
                    return NO_ENTRY;
                }
                let own = self.albums[self.track_album[track] as usize].artist;
                let artist = &self.artists[own as usize];
                let window = genre_artists.style_neighbourhood(artist.genres[0], artist.style, FEATURE_NEIGHBOURHOOD);
                (0..4)
                    .map(|_| genre_artists.sample(window.clone(), rng))
                    .find(|&other| other != own)
                    .unwrap_or(NO_ENTRY)
            })
            .collect()
    }

    /// "Greatest hits" albums for some artists with a real discography: their best tracks
    /// appear a second time, on the compilation. Returns each track's compilation.
    fn add_compilations(&mut self, rng: &mut Random) -> Vec<u32> {
        let mut compilation = vec![NO_ENTRY; self.track_album.len()];
        for artist in 0..self.artists.len() {
            let tracks = self.artists[artist].tracks.clone();
            // An artist's albums are contiguous: several albums iff the first and last tracks differ.
            let several_albums = self.track_album[tracks.start as usize] != self.track_album[tracks.end as usize - 1];
            if !several_albums || tracks.len() < 8 || !rng.chance(COMPILATION_CHANCE) {
                continue;
            }
            let latest = self.album_release[self.track_album[tracks.end as usize - 1] as usize];
            let release = if latest == BACK_CATALOGUE && rng.chance(0.5) {
                BACK_CATALOGUE
            } else {
                let earliest = latest.max(0) as u64;
                (earliest + rng.below(u64::from(LAST_DAY) + 1 - earliest)) as ReleaseDay
            };
            let mut best: Vec<u32> = tracks.clone().collect();
            best.sort_by(|&a, &b| {
                self.track_weight[b as usize].total_cmp(&self.track_weight[a as usize]).then(a.cmp(&b))
            });
            let album = self.albums.len() as u32;
            for &track in best.iter().take((tracks.len() / 3).min(10)) {
                compilation[track as usize] = album;
            }
            self.albums.push(Album {
                id: 0,
                artist: artist as u32,
                genres: self.albums[self.track_album[tracks.start as usize] as usize].genres,
                tracks: tracks.end..tracks.end,
                is_compilation: true,
            });
            self.album_release.push(release);
        }
        compilation
    }
}

/// Indices ordered by release (back catalogue first), ties by index.
fn order_by_release(release: &[ReleaseDay]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..release.len() as u32).collect();
    order.sort_by_key(|&i| (release[i as usize], i));
    order
}

/// `count` increasing ids from `start` with random gaps of 1..=max_gap.
fn scattered_ids(count: usize, start: i64, max_gap: u64, rng: &mut Random) -> Vec<i64> {
    let mut next = start;
    (0..count)
        .map(|_| {
            let id = next;
            next += 1 + rng.below(max_gap) as i64;
            id
        })
        .collect()
}

/// Ids for entities given in id order, returned by entity index.
fn ids_in_order(order: &[u32], max_gap: u64, rng: &mut Random) -> Vec<i64> {
    let values = scattered_ids(order.len(), 1 + rng.below(1_000) as i64, max_gap, rng);
    let mut ids = vec![0; order.len()];
    for (&entity, id) in order.iter().zip(values) {
        ids[entity as usize] = id;
    }
    ids
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::scale::Scale;

    #[test]
    fn hierarchy_is_consistent_and_ids_unique_and_sparse() {
        let params = Scale::Small.params();
        let catalog = Catalog::build(&params, 42);
        assert_eq!(catalog.track_count(), params.tracks as usize);
        let ids: HashSet<i32> = catalog.tracks.id.iter().copied().collect();
        assert_eq!(ids.len(), catalog.track_count());
        assert!(*ids.iter().min().unwrap() > 0);
        assert!(*ids.iter().max().unwrap() as usize > 2 * catalog.track_count(), "ids are not dense");
        for (index, artist) in catalog.artists.iter().enumerate() {
            for track in artist.tracks.clone() {
                assert_eq!(catalog.tracks.artist[track as usize] as usize, index);
                assert!(catalog.tracks.release[track as usize] >= artist.debut);
            }
        }
        let features = catalog.tracks.featured_artist.iter().filter(|&&a| a != NO_ENTRY).count();
        let compiled = catalog.tracks.compilation.iter().filter(|&&a| a != NO_ENTRY).count();
        let share = |n: usize| n as f64 / catalog.track_count() as f64;
        assert!((0.03..0.12).contains(&share(features)), "features {}", share(features));
        assert!((0.003..0.1).contains(&share(compiled)), "compilations {}", share(compiled));
        let back = catalog.tracks.release.iter().filter(|&&r| r == BACK_CATALOGUE).count();
        assert!((0.5..0.9).contains(&share(back)), "back catalogue {}", share(back));
        let released_order: Vec<ReleaseDay> =
            catalog.tracks.by_id.iter().map(|&t| catalog.tracks.release[t as usize]).collect();
        assert!(released_order.is_sorted(), "ids grow with release");
    }

    #[test]
    fn style_neighbourhoods_stay_inside_the_genre_and_surround_the_centre() {
        let catalog = Catalog::build(&Scale::Small.params(), 1);
        for genre in 0..catalog.genre_count {
            let all = catalog.genre_tracks.members_of(genre);
            for centre in [0.0, 0.3, 0.99] {
                let near = catalog.genre_tracks.style_neighbourhood(genre, centre, 10);
                assert!(near.start >= all.start && near.end <= all.end);
                assert_eq!(near.len(), all.len().min(10));
                let styles = &catalog.genre_tracks.styles;
                let at_low_end = near.start == all.start;
                let at_high_end = near.end == all.end;
                assert!(at_low_end || styles[near.start] <= centre, "genre {genre} centre {centre}");
                assert!(at_high_end || styles[near.end - 1] >= centre, "genre {genre} centre {centre}");
            }
        }
    }
}
