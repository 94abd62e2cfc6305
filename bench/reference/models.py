"""The candidate models with the libraries of the original system: ALS and BPR from `implicit`,
Item2Item from scikit-learn (TruncatedSVD, NearestNeighbors), and popularity. Each one fits on
the train matrix and recommends to every old user, as musicrec's candidate stages do.

Recommendations are frames of (user, item, score, rank), rank 1 = best, listened tracks left
out.
"""
import numpy as np
import pandas as pd
from implicit.als import AlternatingLeastSquares
from implicit.bpr import BayesianPersonalizedRanking
from sklearn.decomposition import TruncatedSVD
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from settings import fail

# implicit pads short lists with this score (and item -1) instead of shortening them.
PADDING_SCORE = np.finfo(np.float32).min / 2
SIMILAR_PER_TRACK = 10


def ranked(user, item, score):
    """Recommendations sorted by user, then best score first (ties: lower item), rank from 1."""
    frame = pd.DataFrame({"user": user, "item": item, "score": np.asarray(score, np.float64)})
    frame = frame.sort_values(["user", "score", "item"], ascending=[True, False, True], ignore_index=True)
    frame["rank"] = frame.groupby("user").cumcount() + 1
    return frame


class TrainingSet:
    """The item filter of ALS, BPR and Item2Item: tracks with at least `min_users` distinct train
    listeners, then the users left with at least one of them."""

    def __init__(self, user_item, min_users, model):
        listeners = np.bincount(user_item.indices, minlength=user_item.shape[1])
        self.items = np.flatnonzero(listeners >= min_users)
        if len(self.items) == 0:
            fail(f"{model}: no track has at least min_users_per_item = {min_users} distinct listeners "
                 f"(the most listened has {listeners.max()})")
        kept = user_item[:, self.items].tocsr()
        self.users = np.flatnonzero(np.diff(kept.indptr) > 0)
        self.matrix = kept[self.users]


class FactorModel:
    """ALS or BPR from `implicit`."""

    def __init__(self, name, c, seed, threads, user_item):
        self.name, self.threads = name, threads
        self.data = TrainingSet(user_item, c["min_users_per_item"], name)
        if name == "als":
            self.build = lambda: AlternatingLeastSquares(
                factors=c["factors"], iterations=c["iterations"], regularization=c["regularization"],
                alpha=c["alpha"], use_cg=True, random_state=seed, num_threads=threads)
        else:
            self.build = lambda: BayesianPersonalizedRanking(
                factors=c["factors"], iterations=c["iterations"], learning_rate=c["learning_rate"],
                regularization=c["regularization"], verify_negative_samples=True, random_state=seed,
                num_threads=threads)

    def fit(self):
        # implicit parallelises over users itself; a BLAS pool inside its threads only
        # oversubscribes the cores (implicit warns at construction, so build inside the limit).
        with threadpool_limits(1, "blas"):
            self.model = self.build()
            self.model.fit(self.data.matrix, show_progress=False)

    def item_vectors(self):
        """The item factors by catalogue item (for the ranker's similarity features)."""
        return self.data.items, np.asarray(self.model.item_factors)

    def recommend(self, n, batch=50_000):
        users, parts = self.data.users, []
        with threadpool_limits(1, "blas"):
            for start in range(0, len(users), batch):
                rows = np.arange(start, min(start + batch, len(users)))
                ids, scores = self.model.recommend(rows, self.data.matrix[rows], N=min(n, len(self.data.items)),
                                                   filter_already_liked_items=True)
                ok = (ids >= 0) & (scores > PADDING_SCORE)
                who = np.broadcast_to(users[rows][:, None], ids.shape)
                parts.append((who[ok], self.data.items[ids[ok]], scores[ok]))
        return ranked(*(np.concatenate(p) for p in zip(*parts)))

    def similar_items(self, n=SIMILAR_PER_TRACK):
        """The n most similar tracks of every track (itself excluded); returns how many pairs."""
        own = np.arange(len(self.data.items))
        with threadpool_limits(1, "blas"):
            ids, _ = self.model.similar_items(own, N=min(n + 1, len(own)))
        return int(np.minimum((ids != own[:, None]).sum(axis=1), n).sum())


class Item2Item:
    """Content model: truncated SVD of the item × feature one-hot matrix; a user's profile is the
    mean vector of the eligible tracks they played (each once); recommendations are the nearest
    unplayed tracks, score 1 / (1 + distance). The search asks for `n_neighbors` nearest tracks
    and drops the played ones, so a list can come out shorter than asked."""

    def __init__(self, c, seed, threads, user_item, item_features):
        self.c, self.seed, self.threads = c, seed, threads
        self.data = TrainingSet(user_item, c["min_users_per_item"], "item2item")
        features = item_features[self.data.items]
        self.features = features[:, np.asarray(features.sum(axis=0)).ravel() > 0]
        # TruncatedSVD needs fewer components than features.
        self.components = min(c["n_components"], self.features.shape[1] - 1, len(self.data.items))
        if self.components < 1:
            fail(f"item2item: the {self.features.shape} item-feature matrix is too small for an SVD")
        played = self.data.matrix.copy()
        played.data[:] = 1.0
        self.played = played

    def fit(self):
        svd = TruncatedSVD(self.components, random_state=self.seed)
        self.vectors = svd.fit_transform(self.features).astype(np.float32)
        self.explained_variance = float(svd.explained_variance_ratio_.sum())
        self.index = NearestNeighbors(metric=self.c["metric"], n_jobs=self.threads).fit(self.vectors)

    def recommend(self, n, batch=500):
        users, parts = self.data.users, []
        wanted = min(self.c["n_neighbors"], len(self.data.items))
        keep = min(n, self.c["n_neighbors"])
        for start in range(0, len(users), batch):
            rows = self.played[start:start + batch]
            profiles = (rows @ self.vectors) / rows.sum(axis=1).A
            distance, neighbour = self.index.kneighbors(profiles, wanted)
            heard = np.take_along_axis(rows.toarray(), neighbour, axis=1) > 0
            # Stable sort: unplayed neighbours first, each group still nearest first.
            order = np.argsort(heard, axis=1, kind="stable")[:, :keep]
            ok = ~np.take_along_axis(heard, order, axis=1)
            who = np.broadcast_to(users[start:start + batch][:, None], order.shape)
            parts.append((who[ok], self.data.items[np.take_along_axis(neighbour, order, axis=1)[ok]],
                          1.0 / (1.0 + np.take_along_axis(distance, order, axis=1)[ok])))
        return ranked(*(np.concatenate(p) for p in zip(*parts)))


class TopItems:
    """The most popular tracks by distinct train listeners (ties: lower item), scored by their
    share of train users, recommended to anyone minus what they played."""

    def __init__(self, top_n, user_item):
        self.top_n, self.user_item = top_n, user_item

    def fit(self):
        listeners = np.bincount(self.user_item.indices, minlength=self.user_item.shape[1])
        heard = np.flatnonzero(listeners > 0)
        self.items = heard[np.lexsort((heard, -listeners[heard]))][:self.top_n]
        self.scores = listeners[self.items] / max(self.user_item.shape[0], 1)

    def recommend(self, users, n):
        played = np.zeros((len(users), len(self.items)), bool)
        old = users < self.user_item.shape[0]
        played[old] = self.user_item[users[old]][:, self.items].toarray() > 0
        order = np.argsort(played, axis=1, kind="stable")[:, :n]
        ok = ~np.take_along_axis(played, order, axis=1)
        who = np.broadcast_to(users[:, None], order.shape)
        return ranked(who[ok], self.items[order][ok], self.scores[order][ok])
