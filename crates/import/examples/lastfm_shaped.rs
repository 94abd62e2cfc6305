//! Writes a synthetic Last.fm 1K log of any size, for measuring `musicrec import lastfm-1k`
//! (docs/perf/import.md):
//!
//! `cargo run --release -p musicrec-import --example lastfm_shaped -- OUT_DIR [LINES] [USERS]`
//!
//! `OUT_DIR/userid-timestamp-artid-artname-traid-traname.tsv` holds LINES scrobbles (default
//! 5M) of USERS users (default 1000, as the real set's 992), each user's lines newest first
//! over 2005–2009 as the real file lists them, tracks drawn with a heavy head from a
//! 1M-track catalogue of 100k artists; one track in ten has no MusicBrainz id (its id comes
//! from its names), as in the real file.

use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::DateTime;

const TRACKS: u64 = 1_000_000;
const TRACKS_PER_ARTIST: u64 = 10;
/// 2005-02-14 to 2009-06-19, the real log's span.
const FIRST_SECOND: u64 = 1_108_339_200;
const SPAN_SECONDS: u64 = 1_588 * 86_400;

#[path = "shared/rng.rs"]
mod rng;
use rng::Rng;

/// A MusicBrainz-shaped id (8-4-4-4-12 hex digits) of `kind` and `n`.
fn mbid(kind: u64, n: u64) -> String {
    let h = (n.wrapping_add(kind << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let l = h.rotate_left(29) ^ n;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xffff,
        l >> 48,
        l & 0xffff_ffff_ffff
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = Path::new(args.first().expect("usage: lastfm_shaped OUT_DIR [LINES] [USERS]"));
    let lines: u64 = args.get(1).map_or(5_000_000, |a| a.parse().expect("LINES is a number"));
    let users: u64 = args.get(2).map_or(1000, |a| a.parse().expect("USERS is a number"));
    std::fs::create_dir_all(out).unwrap();
    let path = out.join("userid-timestamp-artid-artname-traid-traname.tsv");
    let mut file = BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let per_user = lines / users;
    let mut written = 0u64;
    for user in 1..=users {
        let n = if user == users { lines - written } else { per_user };
        // Newest first: a user's time runs backwards from a last scrobble.
        let mut t = SPAN_SECONDS - rng.next() % (SPAN_SECONDS / 4);
        let step = t / n.max(1);
        for _ in 0..n {
            t = t.saturating_sub(rng.next() % (2 * step + 1));
            let track = (rng.unit().powi(3) * TRACKS as f64) as u64;
            let artist = track / TRACKS_PER_ARTIST;
            let time = DateTime::from_timestamp((FIRST_SECOND + t) as i64, 0).unwrap();
            let track_mbid = if track.is_multiple_of(10) { String::new() } else { mbid(1, track) };
            writeln!(
                file,
                "user_{user:06}\t{}\t{}\tArtist {artist}\t{track_mbid}\tSong {track} of artist {artist}",
                time.format("%Y-%m-%dT%H:%M:%SZ"),
                mbid(0, artist),
            )
            .unwrap();
        }
        written += n;
    }
    file.flush().unwrap();
    println!("wrote {lines} scrobbles of {users} users to {}", path.display());
}
