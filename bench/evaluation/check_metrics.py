"""An independent implementation of docs/metrics.md, checked against `musicrec evaluate`.

Reads a finished run's artifacts and a recommendations file (user_id, track_id, rank), computes
every metric at every K from the definitions, user by user with Python sets and numpy, runs
`musicrec evaluate --json`-style output (or reads it from --json) and compares key by key.

    python bench/evaluation/check_metrics.py --artifacts artifacts --recs artifacts/ranking/recommendations.parquet \
        --window test --k 5,10,20 --musicrec target/release/musicrec

Exit status: 0 when every value agrees within --tolerance, 1 when one does not, 2 for bad input.
It shares no code with musicrec: only the file layout (docs/pipeline.md) and the definitions.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq


def fail(message):
    print(f"check_metrics.py: {message}", file=sys.stderr)
    sys.exit(2)


def read(path, columns):
    if not os.path.exists(path):
        fail(f"{path} does not exist (is it a finished run's artifacts directory?)")
    return pq.read_table(path, columns=columns).to_pandas()


class Run:
    """What the metrics need from a run's artifacts, in external ids."""

    def __init__(self, artifacts, window):
        pre = os.path.join(artifacts, "preprocess")
        mat = os.path.join(artifacts, "matrices")
        self.catalogue = read(os.path.join(mat, "items.parquet"), ["track_id"])["track_id"].to_numpy()
        catalogue = set(self.catalogue.tolist())
        old_users = set(read(os.path.join(mat, "users.parquet"), ["user_id"])["user_id"].tolist())
        train = read(os.path.join(pre, "train.parquet"), ["user_id", "track_id"])
        train = train[train["user_id"].isin(old_users) & train["track_id"].isin(catalogue)].drop_duplicates()
        self.history = train.groupby("user_id")["track_id"].apply(set).to_dict()
        listeners = train.groupby("track_id")["user_id"].nunique()
        self.listeners = {int(t): int(listeners.get(t, 0)) for t in self.catalogue}
        n_train_users = max(len(self.history), 1)
        self.information = {t: math.log2(n_train_users / max(c, 1)) for t, c in self.listeners.items()}
        counts = np.sort(np.array(list(self.listeners.values())))
        self.percentile = {t: np.searchsorted(counts, c, side="left") / len(counts) for t, c in self.listeners.items()}
        events = read(os.path.join(pre, f"{window}.parquet"), ["user_id", "track_id"])
        events = events[events["track_id"].isin(catalogue)]
        self.relevant = events.groupby("user_id")["track_id"].apply(set).to_dict()
        # Users musicrec knows: old users and every user of the target and test windows.
        windows = [read(os.path.join(pre, f"{w}.parquet"), ["user_id"]) for w in ("target", "test")]
        self.known = old_users | set(pd.concat(windows)["user_id"].tolist())
        self.artists = self.groups(pre, "artist")
        self.genres = self.groups(pre, "genre")

    @staticmethod
    def groups(pre, kind):
        table = read(os.path.join(pre, f"track_{kind}s.parquet"), ["track_id", f"{kind}_id"])
        return table.groupby("track_id")[f"{kind}_id"].apply(set).to_dict()


def read_lists(path):
    recs = read(path, ["user_id", "track_id", "rank"]).sort_values(["user_id", "rank"], kind="stable")
    return {int(u): list(map(int, group["track_id"])) for u, group in recs.groupby("user_id")}


def metrics_at(run, lists, k):
    users = sorted(run.relevant)
    sums = dict.fromkeys(("precision", "recall", "ndcg", "map", "mrr", "hit_rate"), 0.0)
    list_sums = dict.fromkeys(("novelty", "original_novelty", "artists", "genres", "popularity_percentile"), 0.0)
    with_list = 0
    recommended = set()
    for user in users:
        relevant = run.relevant[user]
        top = lists.get(user, [])[:k]
        if not top:
            continue  # scores 0 on every per-user metric
        with_list += 1
        recommended.update(top)
        hits, dcg, precisions, first = 0, 0.0, 0.0, None
        seen_in_list = set()
        for position, track in enumerate(top, start=1):
            if track in relevant and track not in seen_in_list:
                hits += 1
                dcg += 1.0 / math.log2(position + 1)
                precisions += hits / position
                first = first or position
            seen_in_list.add(track)
        ideal_hits = min(len(relevant), k)
        ideal = sum(1.0 / math.log2(position + 1) for position in range(1, ideal_hits + 1))
        sums["precision"] += hits / k
        sums["recall"] += hits / len(relevant)
        sums["ndcg"] += dcg / ideal
        sums["map"] += precisions / ideal_hits
        sums["mrr"] += 1.0 / first if first else 0.0
        sums["hit_rate"] += 1.0 if hits else 0.0
        history = run.history.get(user, set())
        list_sums["novelty"] += np.mean([run.information[t] for t in top])
        list_sums["original_novelty"] += np.mean([t not in history for t in top])
        list_sums["artists"] += len(set().union(*(run.artists.get(t, set()) for t in top)))
        list_sums["genres"] += len(set().union(*(run.genres.get(t, set()) for t in top)))
        list_sums["popularity_percentile"] += np.mean([run.percentile[t] for t in top])
    mean = lambda total, n: total / n if n else 0.0  # noqa: E731
    window_tracks = set().union(*run.relevant.values()) if run.relevant else set()
    out = {name: mean(total, len(users)) for name, total in sums.items()}
    out.update({name: mean(total, with_list) for name, total in list_sums.items()})
    out["coverage_user"] = mean(with_list, len(users))
    out["coverage_item"] = mean(len(recommended & window_tracks), len(window_tracks))
    out["catalog_coverage"] = mean(len(recommended), len(run.catalogue))
    result = {f"{name}@{k}": float(value) for name, value in out.items()}
    return result, len(users), with_list


def musicrec_output(args):
    if args.json:
        with open(args.json) as f:
            return json.load(f)[args.window]
    command = [args.musicrec, "evaluate", "--recs", args.recs, "--window", args.window,
               "--artifacts", args.artifacts, "--k", args.k]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)[args.window]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--recs", required=True, help="recommendations parquet: user_id, track_id, rank")
    parser.add_argument("--window", choices=("target", "test"), default="test")
    parser.add_argument("--k", default="5,10,20", help="comma-separated cut-offs")
    parser.add_argument("--musicrec", default="musicrec", help="the musicrec binary to check")
    parser.add_argument("--json", help="a saved `musicrec evaluate` output instead of running it")
    parser.add_argument("--tolerance", type=float, default=1e-9)
    args = parser.parse_args()
    try:
        ks = [int(k) for k in args.k.split(",")]
    except ValueError:
        fail(f"--k: `{args.k}` is not a comma-separated list of integers")
    if not ks or min(ks) < 1:
        fail("--k: give at least one K, each at least 1")

    run = Run(args.artifacts, args.window)
    lists = {u: l for u, l in read_lists(args.recs).items() if u in run.known}
    ours = {}
    for k in ks:
        values, evaluated, with_list = metrics_at(run, lists, k)
        ours.update(values)
    ours["evaluated_users"], ours["users_with_recs"] = evaluated, with_list
    theirs = musicrec_output(args)

    worst, failures = 0.0, []
    for key in sorted(set(ours) | set(theirs)):
        if key not in ours or key not in theirs:
            failures.append(f"{key}: only in {'musicrec' if key in theirs else 'this script'}")
            continue
        difference = abs(ours[key] - theirs[key])
        worst = max(worst, difference)
        if difference > args.tolerance:
            failures.append(f"{key}: musicrec {theirs[key]!r}, this script {ours[key]!r}")
    print(f"{len(ours)} values at K = {args.k} on {evaluated} {args.window}-window users "
          f"({with_list} with a list): largest difference {worst:.3g}")
    for line in failures:
        print(f"MISMATCH {line}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
