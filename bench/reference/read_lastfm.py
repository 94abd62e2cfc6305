"""The reference for `musicrec import lastfm-1k`'s speed (docs/perf/import.md): pyarrow's
multi-threaded CSV reader reads a Last.fm 1K log and writes the user, time and track columns to
parquet. It does less than the import (no ids for tracks without one, no catalogue, no
validation), so the ratio is a lower bound on what the import's extra work costs.

    python bench/reference/read_lastfm.py LOG.tsv OUT.parquet
"""

import sys
import time

import pyarrow as pa
import pyarrow.csv as csv
import pyarrow.parquet as pq

COLUMNS = ["userid", "timestamp", "artid", "artname", "traid", "traname"]


def main(log: str, out: str) -> None:
    started = time.perf_counter()
    table = csv.read_csv(
        log,
        read_options=csv.ReadOptions(column_names=COLUMNS),
        parse_options=csv.ParseOptions(delimiter="\t", quote_char=False),
        convert_options=csv.ConvertOptions(
            include_columns=["userid", "timestamp", "traid"],
            column_types={"timestamp": pa.timestamp("s", tz="UTC")},
        ),
    )
    pq.write_table(table, out)
    print(f"{table.num_rows} rows in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main(*sys.argv[1:3])
