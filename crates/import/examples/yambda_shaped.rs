//! Writes a synthetic data set in Yambda's flat layout and column types, of any size, for
//! measuring `musicrec import yambda` (docs/perf/import.md):
//!
//! `cargo run --release -p musicrec-import --example yambda_shaped -- OUT_DIR [ROWS] [USERS] [ITEMS]`
//!
//! `OUT_DIR/flat/listens.parquet` holds ROWS listens (default 50M) of USERS users (default
//! 1M), each user's rows in time order over 300 days, items drawn with a heavy head from the
//! first ITEMS (default all) of a 9.39M-item catalogue; `OUT_DIR/album_item_mapping.parquet`
//! and `OUT_DIR/artist_item_mapping.parquet` cover the whole catalogue, as the real files do.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, UInt8Array, UInt16Array, UInt32Array};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

const CATALOG: u32 = 9_390_000;
const SPAN_SECONDS: u64 = 300 * 86_400;
const BATCH: usize = 1 << 20;

#[path = "shared/rng.rs"]
mod rng;
use rng::Rng;

fn writer(path: &Path, batch: &RecordBatch) -> ArrowWriter<std::fs::File> {
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), Some(props)).unwrap()
}

fn u32s(v: Vec<u32>) -> ArrayRef {
    Arc::new(UInt32Array::from(v))
}

/// Listens gathered a batch at a time and written out.
#[derive(Default)]
struct Listens {
    writer: Option<ArrowWriter<std::fs::File>>,
    uid: Vec<u32>,
    ts: Vec<u32>,
    item: Vec<u32>,
    organic: Vec<u8>,
    ratio: Vec<u16>,
    length: Vec<u32>,
}

impl Listens {
    fn flush(&mut self, path: &Path) {
        if self.uid.is_empty() {
            return;
        }
        let batch = RecordBatch::try_from_iter([
            ("uid", u32s(std::mem::take(&mut self.uid))),
            ("timestamp", u32s(std::mem::take(&mut self.ts))),
            ("item_id", u32s(std::mem::take(&mut self.item))),
            ("is_organic", Arc::new(UInt8Array::from(std::mem::take(&mut self.organic))) as ArrayRef),
            ("played_ratio_pct", Arc::new(UInt16Array::from(std::mem::take(&mut self.ratio))) as ArrayRef),
            ("track_length_seconds", u32s(std::mem::take(&mut self.length))),
        ])
        .unwrap();
        self.writer.get_or_insert_with(|| writer(path, &batch)).write(&batch).unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = Path::new(args.first().expect("usage: yambda_shaped OUT_DIR [ROWS] [USERS] [ITEMS]"));
    let rows: u64 = args.get(1).map_or(50_000_000, |a| a.parse().expect("ROWS is a number"));
    let users: u64 = args.get(2).map_or(1_000_000, |a| a.parse().expect("USERS is a number"));
    let items: u32 = args.get(3).map_or(CATALOG, |a| a.parse().expect("ITEMS is a number")).min(CATALOG);
    std::fs::create_dir_all(out.join("flat")).unwrap();
    let path = out.join("flat/listens.parquet");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut listens = Listens::default();
    let per_user = rows / users;
    let mut written = 0u64;
    for user in 0..users {
        let n = if user + 1 == users { rows - written } else { per_user };
        let mut t = rng.next() % (SPAN_SECONDS / 2);
        let step = (SPAN_SECONDS - t) / n.max(1);
        for _ in 0..n {
            t += rng.next() % (2 * step + 1);
            listens.uid.push(user as u32 * 10);
            listens.ts.push((t.min(SPAN_SECONDS) / 5 * 5) as u32);
            // A heavy head: u^3 puts most listens on the first items.
            listens.item.push((rng.unit().powi(3) * f64::from(items)) as u32);
            listens.organic.push((rng.next() % 2) as u8);
            listens.ratio.push((rng.next() % 150) as u16);
            listens.length.push(120 + (rng.next() % 240) as u32);
            if listens.uid.len() == BATCH {
                listens.flush(&path);
            }
        }
        written += n;
    }
    listens.flush(&path);
    listens.writer.expect("rows were written").close().unwrap();
    for (file, column, per) in
        [("album_item_mapping.parquet", "album_id", 12), ("artist_item_mapping.parquet", "artist_id", 40)]
    {
        let items: Vec<u32> = (0..CATALOG).collect();
        let entities: Vec<u32> = items.iter().map(|i| i / per).collect();
        let batch = RecordBatch::try_from_iter([(column, u32s(entities)), ("item_id", u32s(items))]).unwrap();
        let mut w = writer(&out.join(file), &batch);
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    println!("wrote {rows} listens of {users} users to {}", out.display());
}
