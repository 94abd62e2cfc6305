"""The `preprocess` stage (docs/pipeline.md#preprocess) on Apache Spark, for data past one machine.

Same inputs (the Yandex Music layout), same outputs and the same manifest as
crates/pipeline/src/preprocess.rs, so `musicrec run --stages matrices,...` continues from it:
  train|target|test.parquet   events split by day (user_id, track_id int64, track_seq int32,
                              started_at date), rows of unknown tracks dropped or refused
  users.parquet               user_id, old, in_target, in_test (sorted by user_id)
  tracks.parquet              track_id (sorted)
  track_{album,artist,genre}s.parquet   one row per (track, entity), by track then list order
  names_{album,artist,genre,track}.parquet   id, name, in catalog_names order
  manifest.json               written last (format 1, like every musicrec stage)

Each output is one parquet file, as musicrec's readers expect: the work (validation, the split,
the joins, the explodes) runs on the executors; only the final write of each table goes
through one task. Paths are Hadoop paths: local, hdfs:// or s3a://.

    spark-submit --master spark://HOST:7077 engines/spark/preprocess.py \\
        --data s3a://bucket/yandex --artifacts s3a://bucket/run-1 \\
        [--train-end 2022-12-16] [--target-end 2022-12-23] [--unknown-tracks drop|fail]

Exit codes as musicrec's: 2 for a problem of the input (named: file, column, rows), 1 otherwise.
"""

import argparse
import datetime
import hashlib
import json
import os
import sys
import time
import uuid

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

STAGE = "preprocess"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
WINDOWS = ("train", "target", "test")
LIST_KINDS = ("album", "artist", "genre")
NAME_KINDS = ("album", "artist", "genre", "track")
INTEGERS = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)


class InputError(Exception):
    """A problem of the user's input: exit code 2."""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="directory with interactions/tracks/catalog_names.parquet")
    parser.add_argument("--artifacts", required=True, help="artifacts root; outputs go to <artifacts>/preprocess")
    parser.add_argument("--train-end", default="2022-12-16", help="first day of the target window")
    parser.add_argument("--target-end", default="2022-12-23", help="first day of the test window")
    parser.add_argument("--unknown-tracks", choices=("drop", "fail"), default="drop")
    args = parser.parse_args(argv)
    for flag in ("train_end", "target_end"):
        try:
            setattr(args, flag, datetime.date.fromisoformat(getattr(args, flag)))
        except ValueError:
            raise InputError(f"--{flag.replace('_', '-')} `{getattr(args, flag)}` is not a YYYY-MM-DD date")
    if args.train_end >= args.target_end:
        raise InputError(f"--train-end {args.train_end} must be before --target-end {args.target_end}")
    return args


class Store:
    """Files through Hadoop's FileSystem, so local paths, hdfs:// and s3a:// work alike."""

    def __init__(self, spark: SparkSession):
        self.jvm = spark._jvm
        self.conf = spark._jsc.hadoopConfiguration()

    def _path(self, path):
        return self.jvm.org.apache.hadoop.fs.Path(path)

    def _fs(self, path):
        return self._path(path).getFileSystem(self.conf)

    def exists(self, path):
        return self._fs(path).exists(self._path(path))

    def size(self, path):
        return self._fs(path).getFileStatus(self._path(path)).getLen()

    def files(self, directory):
        if not self.exists(directory):
            return []
        return [s.getPath().getName() for s in self._fs(directory).listStatus(self._path(directory)) if s.isFile()]

    def rename(self, src, dst):
        if not self._fs(src).rename(self._path(src), self._path(dst)):
            raise RuntimeError(f"could not rename {src} to {dst}")

    def delete(self, path, recursive=False):
        self._fs(path).delete(self._path(path), recursive)

    def mkdirs(self, path):
        self._fs(path).mkdirs(self._path(path))

    def write_atomic(self, path, data: bytes):
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        out = self._fs(tmp).create(self._path(tmp), True)
        out.write(bytearray(data))
        out.close()
        self.delete(path)
        self.rename(tmp, path)


def read_input(spark, store, data, file, columns):
    """Reads `data/file`, checking the columns exist with acceptable types (docs/data.md#layout)."""
    path = f"{data}/{file}"
    if not store.exists(path):
        raise InputError(f"{path}: file not found; expected a parquet file `{file}` in {data} (docs/data.md#layout)")
    df = spark.read.parquet(path)
    fields = {f.name: f.dataType for f in df.schema.fields}
    for column, kind in columns:
        if column not in fields:
            raise InputError(f"{path}: missing column `{column}` (present: {', '.join(fields)})")
        found = fields[column]
        ok = {
            "integer": isinstance(found, INTEGERS),
            "date": isinstance(found, (T.DateType, T.TimestampType, T.TimestampNTZType)),
            "integer list": isinstance(found, T.ArrayType) and isinstance(found.elementType, INTEGERS),
            "string": isinstance(found, T.StringType),
        }[kind]
        if not ok:
            raise InputError(f"{path}: column `{column}` is {found.simpleString()}, expected {kind}")
    return path, df.select(*[c for c, _ in columns])


def refuse_problems(path, counts, what):
    """Raises for the first column (in order) with problem rows, like musicrec's readers."""
    for column, rows in counts:
        if rows:
            raise InputError(f"{path}: column `{column}`: {rows} rows {what(column)}")


def read_tracks(spark, store, data):
    path, df = read_input(
        spark,
        store,
        data,
        "tracks.parquet",
        [("track_id", "integer"), ("albums", "integer list"), ("artists", "integer list"), ("genres", "integer list")],
    )
    lists = {kind: f"{kind}s" for kind in LIST_KINDS}
    # A null list reads as empty; a null id, in the column or inside a list, is refused.
    checks = [F.sum(F.col("track_id").isNull().cast("long")).alias("track_id")] + [
        F.sum(F.coalesce(F.size(F.filter(F.col(c), lambda x: x.isNull())), F.lit(0))).alias(c) for c in lists.values()
    ]
    nulls = df.agg(*checks).first()
    refuse_problems(path, [(c, nulls[c]) for c in ["track_id", *lists.values()]], lambda c: "are null")
    df = df.select(F.col("track_id").cast("long").alias("track_id"), *lists.values()).cache()
    duplicates = df.groupBy("track_id").count().filter("count > 1")
    repeated = duplicates.agg(F.sum(F.col("count") - 1), F.min("track_id")).first()
    if repeated[0]:
        raise InputError(
            f"{path}: column `track_id`: {repeated[0]} rows repeat a track id already listed "
            f"(e.g. {repeated[1]}); each track must appear once"
        )
    return df


def read_names(spark, store, data):
    path, df = read_input(
        spark, store, data, "catalog_names.parquet", [("id", "integer"), ("type", "string"), ("name", "string")]
    )
    # The file's order, which the per-kind tables keep (as the Rust stage does).
    df = df.withColumn("row", F.monotonically_increasing_id())
    nulls = df.agg(*[F.sum(F.col(c).isNull().cast("long")).alias(c) for c in ("id", "type", "name")]).first()
    refuse_problems(path, [(c, nulls[c]) for c in ("id", "type", "name")], lambda c: "are null")
    bad = df.filter(~F.col("type").isin(*NAME_KINDS))
    bad_rows = bad.count()
    if bad_rows:
        example = bad.first()["type"]
        raise InputError(
            f"{path}: column `type`: {bad_rows} rows have a type outside album, artist, genre, track "
            f"(e.g. {json.dumps(example)})"
        )
    return df


def read_events(spark, store, data, tracks, unknown_tracks):
    """Valid events of catalogue tracks with their day, and counts for the summary."""
    path, df = read_input(
        spark,
        store,
        data,
        "interactions.parquet",
        [("user_id", "integer"), ("track_id", "integer"), ("track_seq", "integer"), ("started_at", "date")],
    )
    columns = ("user_id", "track_id", "track_seq", "started_at")
    int32 = (F.col("track_seq") < -(2**31)) | (F.col("track_seq") >= 2**31)
    counts = df.agg(
        F.count(F.lit(1)).alias("rows"),
        *[F.sum(F.col(c).isNull().cast("long")).alias(c) for c in columns],
        F.sum(int32.cast("long")).alias("seq_range"),
    ).first()
    refuse_problems(path, [(c, counts[c]) for c in columns], lambda c: "are null")
    refuse_problems(
        path,
        [("track_seq", counts["seq_range"])],
        lambda c: "are outside the 32-bit range allowed for a position in a user's history",
    )
    # Days in UTC (the session's time zone), times of day floored.
    events = df.select(
        F.col("user_id").cast("long").alias("user_id"),
        F.col("track_id").cast("long").alias("track_id"),
        F.col("track_seq").cast("int").alias("track_seq"),
        F.to_date("started_at").alias("started_at"),
    )
    ids = F.broadcast(tracks.select("track_id"))
    unknown = events.join(ids, "track_id", "left_anti")
    stats = unknown.agg(F.count(F.lit(1)).alias("rows"), F.countDistinct("track_id").alias("ids")).first()
    examples = [r.track_id for r in unknown.select("track_id").distinct().orderBy("track_id").limit(5).collect()]
    if stats["rows"] and unknown_tracks == "fail":
        raise InputError(
            f"{path}: {stats['rows']} events of {stats['ids']} tracks missing from tracks.parquet "
            f"(e.g. {', '.join(map(str, examples))}); data.unknown_tracks is fail"
        )
    kept = events.join(ids, "track_id", "left_semi").select(*columns)
    report = {
        "events_read": counts["rows"],
        "unknown_track_events_dropped": stats["rows"],
        "unknown_track_ids": stats["ids"],
        "unknown_track_examples": examples,
    }
    if stats["rows"] == counts["rows"]:
        raise InputError(f"{path}: column `track_id`: name tracks missing from tracks.parquet: no events are left")
    return kept, report


class Outputs:
    """Single-file parquet outputs in a private staging directory, published manifest last."""

    def __init__(self, spark, store, artifacts):
        self.spark, self.store = spark, store
        self.dir = f"{artifacts}/{STAGE}"
        self.staging = f"{artifacts}/.staging/{STAGE}-spark-{uuid.uuid4().hex}"
        self.outputs = []

    def write(self, df: DataFrame, file: str, order=None, columns=None):
        """Writes `columns` (default: all) of `df` as one parquet file; `order` sorts it first
        (in one partition: done only for the catalogue's tables, small next to the events)."""
        single = df.repartition(1).sortWithinPartitions(*order) if order else df.coalesce(1)
        if columns:
            single = single.select(*columns)
        tmp = f"{self.staging}/{file}.parts"
        single.write.mode("overwrite").parquet(tmp)
        parts = [name for name in self.store.files(tmp) if name.endswith(".parquet")]
        if len(parts) != 1:
            raise RuntimeError(f"{tmp}: expected one parquet part, found {parts}")
        self.store.rename(f"{tmp}/{parts[0]}", f"{self.staging}/{file}")
        self.store.delete(tmp, recursive=True)
        path = f"{self.staging}/{file}"
        rows = self.spark.read.parquet(path).count()
        self.outputs.append({"file": file, "rows": rows, "bytes": self.store.size(path)})
        return rows

    def commit(self, manifest):
        """As StageWriter::commit: old manifest out, outputs in, unlisted files out, manifest last."""
        store = self.store
        store.mkdirs(self.dir)
        store.delete(f"{self.dir}/{MANIFEST}")
        for output in self.outputs:
            target = f"{self.dir}/{output['file']}"
            store.delete(target)
            store.rename(f"{self.staging}/{output['file']}", target)
        listed = {o["file"] for o in self.outputs} | {MANIFEST}
        for name in store.files(self.dir):
            if name not in listed:
                store.delete(f"{self.dir}/{name}")
        manifest["outputs"] = self.outputs
        store.write_atomic(f"{self.dir}/{MANIFEST}", json.dumps(manifest, indent=2).encode())

    def abandon(self):
        self.store.delete(self.staging, recursive=True)


def fingerprint(params):
    """musicrec_config::fingerprint_of: the first 8 bytes of the SHA-256 of the compact JSON
    (serde_json sorts object keys)."""
    text = json.dumps(params, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run(spark, args):
    started, started_at = time.monotonic(), datetime.datetime.now(datetime.timezone.utc)
    store = Store(spark)
    tracks = read_tracks(spark, store, args.data)
    names = read_names(spark, store, args.data)
    events, report = read_events(spark, store, args.data, tracks, args.unknown_tracks)

    window = (
        F.when(F.col("started_at") < F.lit(args.train_end), "train")
        .when(F.col("started_at") < F.lit(args.target_end), "target")
        .otherwise("test")
    )
    events = events.withColumn("window", window).cache()
    per_window = {r["window"]: r for r in events.groupBy("window").agg(F.count(F.lit(1)).alias("events")).collect()}
    span = events.agg(F.min("started_at"), F.max("started_at")).first()
    empty = [w for w in WINDOWS if w not in per_window]
    if empty:
        raise InputError(
            f"the {empty[0]} window has no events: the data spans {span[0]}..{span[1]}, the split is "
            f"train < {args.train_end} <= target < {args.target_end} <= test; check --train-end and --target-end"
        )

    users = (
        events.select("user_id", "window")
        .distinct()
        .groupBy("user_id")
        .agg(
            F.max(F.col("window") == "train").alias("old"),
            F.max(F.col("window") == "target").alias("in_target"),
            F.max(F.col("window") == "test").alias("in_test"),
        )
        .cache()
    )
    membership = {"train": "old", "target": "in_target", "test": "in_test"}
    window_users = users.agg(
        *[F.sum(F.col(m).cast("long")).alias(w) for w, m in membership.items()],
        *[F.sum((F.col(m) & F.col("old")).cast("long")).alias(f"{w}_old") for w, m in membership.items()],
    ).first()

    out = Outputs(spark, store, args.artifacts)
    try:
        for w in WINDOWS:
            out.write(events.filter(F.col("window") == w).drop("window"), f"{w}.parquet")
        out.write(users, "users.parquet", order=["user_id"])
        catalogue = out.write(tracks.select("track_id"), "tracks.parquet", order=["track_id"])
        for kind in LIST_KINDS:
            exploded = tracks.select("track_id", F.posexplode(f"{kind}s").alias("pos", "entity"))
            table = exploded.select("track_id", "pos", F.col("entity").cast("long").alias(f"{kind}_id"))
            out.write(table, f"track_{kind}s.parquet", order=["track_id", "pos"], columns=["track_id", f"{kind}_id"])
        for kind in NAME_KINDS:
            table = names.filter(F.col("type") == kind).select(
                "row", F.col("id").cast("long").alias("id"), F.col("name")
            )
            out.write(table, f"names_{kind}.parquet", order=["row"], columns=["id", "name"])
        summary = {
            "events_read": report["events_read"],
            "events_kept": sum(r["events"] for r in per_window.values()),
            "unknown_track_events_dropped": report["unknown_track_events_dropped"],
            "unknown_track_ids": report["unknown_track_ids"],
            "unknown_track_examples": report["unknown_track_examples"],
            "first_day": str(span[0]),
            "last_day": str(span[1]),
            "catalogue_tracks": catalogue,
            # Spark takes the split dates as given: the automatic split is the Rust stage's.
            "split": {"train_end": str(args.train_end), "target_end": str(args.target_end), "chosen_by": "configured"},
            "windows": {
                w: {
                    "events": per_window[w]["events"],
                    "users": window_users[w],
                    "old_users": window_users[f"{w}_old"],
                    "new_users": window_users[w] - window_users[f"{w}_old"],
                }
                for w in WINDOWS
            },
            "engine": {"name": "spark", "version": spark.version, "master": spark.sparkContext.master},
        }
        params = {
            "preprocess": {"train_end": str(args.train_end), "target_end": str(args.target_end)},
            "data": {"path": args.data, "unknown_tracks": args.unknown_tracks},
        }
        finished = datetime.datetime.now(datetime.timezone.utc)
        out.commit(
            {
                "format": MANIFEST_FORMAT,
                "stage": STAGE,
                "run_id": f"{started_at:%Y%m%dT%H%M%SZ}-spark-{spark.sparkContext.applicationId}",
                "started_at": started_at.isoformat(),
                "finished_at": finished.isoformat(),
                "duration_s": time.monotonic() - started,
                "peak_rss_bytes": None,
                "config_fingerprint": fingerprint(params),
                "params": params,
                "inputs": {"data": args.data},
                "summary": summary,
            }
        )
    finally:
        out.abandon()
    return summary


def main(argv):
    try:
        args = parse_args(argv)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    spark = (
        SparkSession.builder.appName("musicrec-preprocess")
        .config("spark.sql.session.timeZone", "UTC")
        # Local paths without Hadoop's .crc side files, which no musicrec reader wants.
        .config("spark.hadoop.fs.file.impl", "org.apache.hadoop.fs.RawLocalFileSystem")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel(os.environ.get("MUSICREC_SPARK_LOG", "WARN"))
    try:
        summary = run(spark, args)
        executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1
        print(
            f"preprocess on {spark.sparkContext.master} ({executors} executors): "
            f"{summary['events_kept']} events kept of {summary['events_read']}, written to {args.artifacts}/{STAGE}"
        )
        return 0
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
