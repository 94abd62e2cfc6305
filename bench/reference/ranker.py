"""The second stage with CatBoost, as musicrec's ranking stage builds it: every candidate model's
candidates and each user's first `ranking.popular_candidates` popular tracks, merged per old
user (outer join, a missing source leaves NaN); labels from the target window; users with a
positive keep all positives and a seeded sample of negatives; the ranker learns from those
rows, scores every candidate pair, and each user's best `ranking.top_n` are the final lists,
judged on both windows (the target window trained the ranker, so only test is honest).

Features per pair, the same columns as musicrec's ranker: each source's score and rank,
how many sources proposed it, the user's and the track's train activity (listens, listens in
the recent windows, distinct counterparts, days since first and last listen), per group
(album, artist, genre) the largest share of the user's train listens that went to tracks
sharing a value with the candidate, and the cosine of the candidate's ALS vector to the user's
most recent distinct tracks (max and mean).
"""
import numpy as np
from catboost import CatBoostClassifier

from data import FEATURE_GROUPS
from models import ranked

# Pairs described and scored at once: bounds the feature matrix in memory.
PAIRS_PER_BATCH = 1 << 20


class Candidates:
    """The merged (user, item) pairs, sorted by user then item, with each source's columns."""

    def __init__(self, sources, n_items):
        self.n_items = n_items
        keys = [frame["user"].to_numpy() * n_items + frame["item"].to_numpy() for _, frame in sources]
        self.keys, inverse = np.unique(np.concatenate(keys), return_inverse=True)
        self.user, self.item = self.keys // n_items, self.keys % n_items
        self.columns, self.names, start = [], [], 0
        for (name, frame), k in zip(sources, keys):
            score, rank = np.full(len(self.keys), np.nan), np.full(len(self.keys), np.nan)
            at = inverse[start:start + len(k)]
            score[at], rank[at] = frame["score"].to_numpy(), frame["rank"].to_numpy()
            start += len(k)
            self.columns += [score, rank]
            self.names += [f"{name}_score", f"{name}_rank"]
        self.columns.append(sum((~np.isnan(s)).astype(np.float64) for s in self.columns[::2]))
        self.names.append("n_sources")

    def __len__(self):
        return len(self.keys)

    def labels(self, relevant):
        return np.isin(self.keys, relevant["user"].to_numpy() * self.n_items + relevant["item"].to_numpy())

    def sample(self, labels, negatives_per_user, seed):
        """Pair indices of the training rows, ascending."""
        with_positive = np.zeros(self.user.max() + 1, bool)
        with_positive[self.user[labels]] = True
        eligible = with_positive[self.user]
        negatives = np.flatnonzero(eligible & ~labels)
        shuffled = negatives[np.lexsort((np.random.default_rng(seed).random(len(negatives)),
                                         self.user[negatives]))]
        user = self.user[shuffled]
        position = np.arange(len(user)) - np.searchsorted(user, user)  # index within the user
        return np.sort(np.concatenate([np.flatnonzero(labels), shuffled[position < negatives_per_user]]))


def activity(entity, counterpart, day, n, as_of, recent_days):
    """Train activity columns of one side (users or items) as of the split date; days-since
    values are NaN for an entity never played."""
    listens = np.bincount(entity, minlength=n).astype(np.float64)
    columns = {"listens": listens}
    for days in recent_days:
        columns[f"listens_last_{days}d"] = np.bincount(entity[day >= as_of - days], minlength=n).astype(np.float64)
    columns["distinct"] = np.bincount(np.unique(entity.astype(np.int64) * (counterpart.max() + 1) + counterpart)
                                      // (counterpart.max() + 1), minlength=n).astype(np.float64)
    first, last = np.full(n, np.inf), np.full(n, -np.inf)
    np.minimum.at(first, entity, day)
    np.maximum.at(last, entity, day)
    columns["days_since_first"] = np.where(listens > 0, as_of - first, np.nan)
    columns["days_since_last"] = np.where(listens > 0, as_of - last, np.nan)
    return columns


def recent_tracks(user, item, day, n_users, n):
    """Each user's n most recently played distinct tracks (by last-listen day, ties: the later
    event in the file), as an n_users × n matrix padded with -1."""
    event = np.arange(len(user))
    order = np.lexsort((-event, -day, user))
    user, item = user[order], item[order]
    first = np.unique(user * (item.max() + 1) + item, return_index=True)[1]
    first.sort()  # back in (user, newest first) order
    user, item = user[first], item[first]
    position = np.arange(len(user)) - np.searchsorted(user, user)
    keep = position < n
    out = np.full((n_users, n), -1, np.int64)
    out[user[keep], position[keep]] = item[keep]
    return out


class Features:
    def __init__(self, data, config, als_items, als_vectors):
        recent_days = config["features"]["recent_days"]
        as_of = config["train_day"]
        u, i, d = data.train_user, data.train_item, data.train_day
        self.user_columns = activity(u, i, d, data.n_old, as_of, recent_days)
        self.item_columns = activity(i, u, d, data.n_items, as_of, recent_days)
        self.user_columns["distinct_tracks"] = self.user_columns.pop("distinct")
        self.item_columns["distinct_users"] = self.item_columns.pop("distinct")
        # Listens per (user, feature value) and per user: the numerators and denominators of
        # the group shares.
        per_value = (data.user_item @ data.item_features).tocsr()
        per_value.sort_indices()
        self.value_keys = np.repeat(np.arange(per_value.shape[0]), np.diff(per_value.indptr)) \
            * per_value.shape[1] + per_value.indices
        self.value_listens = per_value.data.astype(np.float64)
        self.n_values = per_value.shape[1]
        self.user_listens = np.asarray(data.user_item.sum(axis=1)).ravel().astype(np.float64)
        self.item_features, self.feature_group = data.item_features, data.feature_group
        # Unit ALS vectors by catalogue item; row -1 = no vector.
        self.vector_row = np.full(data.n_items, -1, np.int64)
        self.vector_row[als_items] = np.arange(len(als_items))
        norms = np.linalg.norm(als_vectors, axis=1, keepdims=True)
        self.unit = np.where(norms > 0, als_vectors / np.where(norms > 0, norms, 1), 0).astype(np.float32)
        recent = recent_tracks(u, i, d, data.n_old, config["ranking"]["recent_tracks"])
        self.recent_rows = np.where(recent >= 0, self.vector_row[np.maximum(recent, 0)], -1)

    def names(self, candidates):
        return (candidates.names + [f"user_{n}" for n in self.user_columns]
                + [f"item_{n}" for n in self.item_columns] + [f"{g}_share" for g in FEATURE_GROUPS]
                + ["recent_similarity_max", "recent_similarity_mean"])

    def build(self, candidates, pairs):
        user, item = candidates.user[pairs], candidates.item[pairs]
        columns = [c[pairs] for c in candidates.columns]
        columns += [c[user] for c in self.user_columns.values()]
        columns += [c[item] for c in self.item_columns.values()]
        columns += list(self.group_shares(user, item).T)
        columns += list(self.recent_similarity(user, item))
        return np.column_stack(columns).astype(np.float32)

    def group_shares(self, user, item):
        f = self.item_features
        counts = np.diff(f.indptr)[item]
        pair = np.repeat(np.arange(len(user)), counts)
        # Each pair's slice of the feature matrix's indices, laid end to end.
        offset_in_row = np.arange(len(pair)) - np.repeat(np.cumsum(counts) - counts, counts)
        value = f.indices[np.repeat(f.indptr[item], counts) + offset_in_row]
        keys = user[pair] * self.n_values + value
        at = np.minimum(np.searchsorted(self.value_keys, keys), len(self.value_keys) - 1)
        listens = np.where(self.value_keys[at] == keys, self.value_listens[at], 0.0)
        share = listens / self.user_listens[user[pair]]
        out = np.full((len(user), len(FEATURE_GROUPS)), -np.inf)
        np.maximum.at(out, (pair, self.feature_group[value]), share)
        out[np.isinf(out)] = np.nan  # the track has no value in that group
        return out

    def recent_similarity(self, user, item, pairs_per_batch=1 << 15):
        rows = self.recent_rows[user]
        valid = rows >= 0
        own = self.vector_row[item]
        dots = np.concatenate([np.zeros((0, rows.shape[1]), np.float32)] + [
            np.einsum("pd,prd->pr", self.unit[np.maximum(own[s:s + pairs_per_batch], 0)],
                      self.unit[np.maximum(rows[s:s + pairs_per_batch], 0)])
            for s in range(0, len(user), pairs_per_batch)])
        n_valid = valid.sum(axis=1)
        defined = (own >= 0) & (n_valid > 0)
        best = np.where(defined, np.where(valid, dots, -np.inf).max(axis=1), np.nan)
        mean = np.where(defined, np.where(valid, dots, 0).sum(axis=1) / np.maximum(n_valid, 1), np.nan)
        return best, mean


def run(data, config, recs, als, timer, evaluate):
    """Trains and applies the ranker; returns its metrics and facts about its training set."""
    c = config["ranking"]
    with timer.step("ranking_candidates"):
        top = recs["top_items"]
        popular = top[(top["user"] < data.n_old) & (top["rank"] <= c["popular_candidates"])]
        sources = [(name, recs[name]) for name in ("als", "bpr", "item2item")] + [("top_items", popular)]
        candidates = Candidates(sources, data.n_items)
        labels = candidates.labels(data.relevant["target"])
        rows = candidates.sample(labels, c["negatives_per_user"], config["seed"])
    with timer.step("ranking_features"):
        features = Features(data, config, *als.item_vectors())
        train = features.build(candidates, rows)
    with timer.step("ranking_fit"):
        model = CatBoostClassifier(
            loss_function="Logloss", auto_class_weights="Balanced", iterations=c["iterations"],
            learning_rate=c["learning_rate"], depth=c["depth"], random_seed=config["seed"],
            thread_count=config["threads"], verbose=False, allow_writing_files=False)
        model.fit(train, labels[rows])
    with timer.step("ranking_predict"):
        scores = np.concatenate([
            model.predict_proba(features.build(candidates, np.arange(s, min(s + PAIRS_PER_BATCH, len(candidates)))))[:, 1]
            for s in range(0, len(candidates), PAIRS_PER_BATCH)])
        final = ranked(candidates.user, candidates.item, scores)
        final = final[final["rank"] <= c["top_n"]]
    metrics = {w: evaluate(final, data.relevant[w]) for w in ("target", "test")}
    names = features.names(candidates)
    facts = {
        "candidate_pairs": int(len(candidates)),
        "candidate_users": int(len(np.unique(candidates.user))),
        "training_rows": int(len(rows)),
        "training_positives": int(labels[rows].sum()),
        "features": names,
        "feature_importances": {n: round(float(v), 3) for n, v in sorted(
            zip(names, model.get_feature_importance()), key=lambda x: -x[1])},
    }
    return metrics, facts
