#!/usr/bin/env python3
"""The reference musicrec is measured against: its offline pipeline written with the libraries
of the original system (implicit, scikit-learn, CatBoost), on the same split, item filters,
parameters and threads, timing every step and evaluating every model as `musicrec evaluate`
does. `musicrec bench models` runs it beside our stages; it also runs alone:

    python bench/reference/pipeline.py --data DIR --set threads=2 --set als.factors=64 --out ref.json

Parameters are musicrec's configuration keys (see settings.py). Output JSON:
`timings_s` (seconds per step, e.g. `als_fit`, `als_recommend`, `ranking_fit`), `metrics`
(per model and window, the keys of musicrec's metrics.json: `metrics.als.test["ndcg@10"]`),
`models` (facts per model), `data`, `params`, `versions`.
"""
import json
import os
import platform
import sys
import time
from contextlib import contextmanager

import settings

ARGS = settings.parse_args()
# BLAS and OpenMP size their pools when numpy loads: the thread count must be set before.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(ARGS.config["threads"])

import catboost  # noqa: E402
import implicit  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow  # noqa: E402
import scipy  # noqa: E402
import sklearn  # noqa: E402

import metrics  # noqa: E402
import ranker  # noqa: E402
from data import Interactions  # noqa: E402
from models import FactorModel, Item2Item, TopItems  # noqa: E402


class Timer:
    def __init__(self):
        self.seconds = {}

    @contextmanager
    def step(self, name):
        started = time.perf_counter()
        yield
        elapsed = time.perf_counter() - started
        self.seconds[name] = round(self.seconds.get(name, 0.0) + elapsed, 4)
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {elapsed:.2f}s", file=sys.stderr, flush=True)


def main():
    config, timer = ARGS.config, Timer()
    started = time.perf_counter()
    data = Interactions(ARGS.data, config, timer)
    print(f"windows: {data.stats()['events']}", file=sys.stderr)
    k, seed, threads = config["evaluation"]["headline_k"], config["seed"], config["threads"]
    recs, facts, models = {}, {}, {}
    for name in (m for m in ("als", "bpr", "item2item") if m in ARGS.models):
        c = config[name]
        with timer.step(f"{name}_fit"):
            model = (Item2Item(c, seed, threads, data.user_item, data.item_features) if name == "item2item"
                     else FactorModel(name, c, seed, threads, data.user_item))
            model.fit()
        facts[name] = {"items": int(len(model.data.items)), "users": int(len(model.data.users))}
        if name == "item2item":
            facts[name].update(components=model.components, explained_variance=round(model.explained_variance, 4))
        else:
            with timer.step(f"{name}_similar_items"):
                facts[name]["similar_pairs"] = model.similar_items()
        with timer.step(f"{name}_recommend"):
            recs[name] = model.recommend(c["n_candidates"])
        models[name] = model
    if "top_items" in ARGS.models:
        with timer.step("top_items_fit"):
            popular = TopItems(config["top_items"]["top_n"], data.user_item)
            popular.fit()
        with timer.step("top_items_recommend"):
            # Popularity serves new users too.
            recs["top_items"] = popular.recommend(np.arange(data.n_users), config["top_items"]["top_n"])

    def evaluate(frame, relevant):
        return metrics.evaluate(frame, relevant, data.user_item, k)

    results = {}
    with timer.step("evaluate"):
        for name, frame in recs.items():
            results[name] = {w: evaluate(frame, data.relevant[w]) for w in ("target", "test")}
            facts.setdefault(name, {})["users_with_candidates"] = int(frame["user"].nunique())
    if "ranking" in ARGS.models:
        results["ranking"], facts["ranking"] = ranker.run(
            data, config, recs, models["als"], timer, evaluate)
    timer.seconds["total"] = round(time.perf_counter() - started, 4)

    report = {
        "versions": {"python": platform.python_version(), "platform": platform.platform(),
                     "cpus": os.cpu_count(), "numpy": np.__version__, "pandas": pd.__version__,
                     "pyarrow": pyarrow.__version__, "scipy": scipy.__version__,
                     "scikit-learn": sklearn.__version__, "implicit": implicit.__version__,
                     "catboost": catboost.__version__},
        # The data directory by name only: results travel between machines.
        "params": {"data": os.path.basename(os.path.normpath(ARGS.data)), "models": ARGS.models,
                   **{key: value for key, value in config.items()
                      if key in ("threads", "seed", "evaluation", "preprocess", "features", *settings.MODELS)}},
        "data": data.stats(),
        "timings_s": timer.seconds,
        "metrics": results,
        "models": facts,
    }
    print_table(results, timer.seconds, k)
    if ARGS.out:
        write_json(ARGS.out, report)


def print_table(results, seconds, k):
    names = ("precision", "recall", "ndcg", "coverage_user", "coverage_item", "original_novelty")
    print(f"{'model/window':<18}" + "".join(f"{n + '@' + str(k):>18}" for n in names) + f"{'users':>9}")
    for model, windows in results.items():
        for window, m in windows.items():
            print(f"{model + '/' + window:<18}" + "".join(f"{m[f'{n}@{k}']:>18.4f}" for n in names)
                  + f"{m['users_with_recs']:>9}")
    print("seconds: " + ", ".join(f"{step}={s:.2f}" for step, s in seconds.items()))


def write_json(path, report):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = path + ".tmp"
    with open(partial, "w") as f:
        json.dump(report, f, indent=2, default=str)
    os.replace(partial, path)


if __name__ == "__main__":
    main()
