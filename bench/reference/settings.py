"""The reference's parameters: musicrec's own configuration, read from the repository's
`crates/config/src/default.yaml`, then an optional partial config file, then `--set key=value`
overrides. Keys and meanings are musicrec's, so both sides are given the same numbers by name.

Only the standard library and PyYAML are imported here: the thread count has to be known
before numpy loads (see pipeline.py).
"""
import argparse
import datetime
import json
import os
import sys

import yaml

DEFAULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "config", "src",
                        "default.yaml")
MODELS = ("als", "bpr", "item2item", "top_items", "ranking")
# The candidate models the ranking merges, as musicrec's ranking stage does.
CANDIDATE_MODELS = ("als", "bpr", "item2item")


def fail(message):
    """Bad input: one line on stderr, exit code 2 (as musicrec does)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Python reference of musicrec's offline pipeline (implicit, scikit-learn, CatBoost): "
                    "times every step and evaluates every model as `musicrec evaluate` does.")
    p.add_argument("--data", required=True, help="directory with interactions.parquet, tracks.parquet, "
                                                 "catalog_names.parquet")
    p.add_argument("--config", help="musicrec config file (any subset of keys) over the defaults")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set als.factors=64 (repeatable)")
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma-separated subset of " + ",".join(MODELS)
                        + "; ranking also runs every candidate model it merges and top_items")
    p.add_argument("--out", help="write the results JSON here")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or not args.models:
        fail(f"--models: unknown {unknown}; choose from {','.join(MODELS)}")
    if "ranking" in args.models:
        args.models = list(dict.fromkeys([*CANDIDATE_MODELS, "top_items", *args.models]))
    args.config = load_config(args.config, args.set)
    return args


def merge(base, layer, where=""):
    for key, value in layer.items():
        if key not in base:
            fail(f"unknown config key `{where}{key}`")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                fail(f"config key `{where}{key}` is a section, got {value!r}")
            merge(base[key], value, f"{where}{key}.")
        else:
            base[key] = value


def load_config(path, overrides):
    with open(DEFAULTS) as f:
        config = yaml.safe_load(f)
    if path:
        try:
            with open(path) as f:
                merge(config, yaml.safe_load(f) or {})
        except OSError as e:
            fail(f"--config {path}: {e.strerror}")
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            fail(f"--set {item}: expected KEY=VALUE")
        # JSON first (what `musicrec bench models` passes: YAML 1.1 reads `1e-7` as text),
        # YAML for what a person types (`--set item2item.metric=cosine`).
        try:
            layer = json.loads(text)
        except ValueError:
            layer = yaml.safe_load(text)
        for part in reversed(key.split(".")):
            layer = {part: layer}
        merge(config, layer)
    check(config)
    return config


def day_number(value, key):
    """Days since 1970-01-01 of a config date, the unit every event date is compared in."""
    try:
        date = value if isinstance(value, datetime.date) else datetime.date.fromisoformat(str(value))
    except ValueError:
        fail(f"`{key}`: {value!r} is not a date (YYYY-MM-DD)")
    return (date - datetime.date(1970, 1, 1)).days


def check(c):
    """The ranges the reference relies on; musicrec checks the full set before it starts."""
    def count(key, minimum=1):
        section, _, name = key.rpartition(".")
        value = c[section][name] if section else c[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            fail(f"`{key}` must be an integer >= {minimum}, got {value!r}")

    for key in ("evaluation.headline_k", "als.factors", "als.iterations", "als.min_users_per_item", "als.n_candidates",
                "bpr.factors", "bpr.iterations", "bpr.min_users_per_item", "bpr.n_candidates",
                "item2item.n_components", "item2item.n_neighbors", "item2item.min_users_per_item",
                "item2item.n_candidates", "top_items.top_n", "ranking.iterations", "ranking.depth",
                "ranking.top_n"):
        count(key)
    for key in ("threads", "seed", "ranking.popular_candidates", "ranking.negatives_per_user",
                "ranking.recent_tracks"):
        count(key, 0)
    for key in ("als.regularization", "als.alpha", "bpr.learning_rate", "ranking.learning_rate"):
        section, name = key.split(".")
        if not isinstance(c[section][name], (int, float)) or not c[section][name] > 0:
            fail(f"`{key}` must be a number > 0, got {c[section][name]!r}")
    if c["item2item"]["metric"] not in ("manhattan", "euclidean", "cosine"):
        fail(f"`item2item.metric` must be manhattan, euclidean or cosine, got {c['item2item']['metric']!r}")
    c["train_day"] = day_number(c["preprocess"]["train_end"], "preprocess.train_end")
    c["target_day"] = day_number(c["preprocess"]["target_end"], "preprocess.target_end")
    if c["target_day"] <= c["train_day"]:
        fail("`preprocess.target_end` must be after `preprocess.train_end`")
    if c["threads"] == 0:
        c["threads"] = os.cpu_count() or 1
