//! Last.fm 1K: `userid-timestamp-artid-artname-traid-traname.tsv`, one scrobble per line:
//! `user_000001 \t 2009-05-04T23:08:57Z \t artist MBID \t artist name \t track MBID \t track
//! name`. Users keep their number; artists and tracks get stable ids from their MusicBrainz
//! id, or from their names where the id is empty (`ids`).

use std::path::{Path, PathBuf};

use musicrec_data::schema::EntityType;

use crate::error::ImportError;
use crate::ids::StableIds;
use crate::text::{Delimited, Dialect};
use crate::time::TimeUnit;
use crate::writer::LayoutWriter;
use crate::{Layout, detect};

pub const LOG_FILE: &str = "userid-timestamp-artid-artname-traid-traname.tsv";
const LAYOUT: Layout = Layout { name: "Last.fm 1K", files: &[LOG_FILE] };

/// The log file: `source` itself, or the log inside the directory `source`.
fn log_file(source: &Path) -> Result<PathBuf, ImportError> {
    if source.is_file() {
        return Ok(source.to_path_buf());
    }
    detect(source, "Last.fm 1K", &[LAYOUT])?;
    Ok(source.join(LOG_FILE))
}

pub fn import(source: &Path, out: &mut LayoutWriter) -> Result<u64, ImportError> {
    let path = log_file(source)?;
    // Names hold bare quotes: no quoting.
    let mut file = Delimited::open(&path, Dialect { delimiter: b'\t', header: false, quoting: false })?;
    let (mut artists, mut tracks) = (StableIds::new("artist"), StableIds::new("track"));
    let mut rows = 0;
    while let Some(record) = file.next()? {
        rows += 1;
        record.expect_fields(6, "userid, timestamp, artist id, artist name, track id, track name")?;
        let user_text = record.text(0);
        let user: i64 = user_text
            .strip_prefix("user_")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| record.bad("userid", &user_text, "a user id of the form user_000123"))?;
        let time = record.text(1);
        let day = TimeUnit::Rfc3339
            .day_of_text(&time)
            .ok_or_else(|| record.bad("timestamp", &time, TimeUnit::Rfc3339.expected()))?;
        let (artist_mbid, artist_name) = (record.text(2), record.text(3));
        let (track_mbid, track_name) = (record.text(4), record.text(5));
        if artist_name.is_empty() && artist_mbid.is_empty() {
            return Err(record.bad("artist name", "", "an artist name or id"));
        }
        if track_name.is_empty() && track_mbid.is_empty() {
            return Err(record.bad("track name", "", "a track name or id"));
        }
        let artist = if artist_mbid.is_empty() {
            artists.id(&["name", &artist_name])?
        } else {
            artists.id(&["mbid", &artist_mbid])?
        };
        let track = if track_mbid.is_empty() {
            tracks.id(&["name", &artist_name, &track_name])?
        } else {
            tracks.id(&["mbid", &track_mbid])?
        };
        if !out.has_events_of(track) {
            out.link(track, EntityType::Artist, artist);
            out.name(EntityType::Track, track, &track_name);
            out.name(EntityType::Artist, artist, &artist_name);
        }
        out.event(user, track, day)?;
    }
    Ok(rows)
}
