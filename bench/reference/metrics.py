"""The metrics of `musicrec evaluate` (crates/eval), computed the same way so that the two
sides' numbers can be compared digit for digit (up to floating-point summation order).

For cut-off K, each list cut to its first K tracks, per window user (a user with at least one
relevant track) that received a non-empty list:

- precision = hits / K; recall = hits / |relevant|;
- NDCG = DCG / ideal DCG, with gain 1 / log2(position + 1) for a hit at 1-based position and
  the ideal of min(|relevant|, K) hits at the top;
- original_novelty (the original system's Novelty) = share of the list the user did not play in
  train;
- novelty = mean over the list of log2(train users / the track's train listeners),
  a track without listeners counted as if it had one;

precision, recall and NDCG averaged over all window users (a user without a list scores 0), the
novelties over the users with a list (0 when there are none). Then
coverage_user = those users / window users; coverage_item = share of the window's relevant
tracks recommended to any of them; catalog_coverage = share of the catalogue recommended to
any of them. A track repeated within a list counts as a hit once, at its first position.
"""
import numpy as np

METRICS = ("precision", "recall", "ndcg", "coverage_user", "coverage_item", "original_novelty", "catalog_coverage",
           "novelty")


def share(part, whole):
    return float(part) / whole if whole else 0.0


def evaluate(recs, relevant, history, k):
    """Metrics of `recs` (a frame of user, item, rank with rank 1 = best) against the window's
    `relevant` (user, item) pairs, in musicrec's `metrics.json` form."""
    n_items = history.shape[1]
    window_users = np.unique(relevant["user"].to_numpy())
    relevant_keys = relevant["user"].to_numpy() * n_items + relevant["item"].to_numpy()
    relevant_keys.sort()

    top = recs[(recs["rank"] <= k) & np.isin(recs["user"].to_numpy(), window_users)]
    user, item, rank = (top[c].to_numpy() for c in ("user", "item", "rank"))
    keys = user * n_items + item
    first = ~top.duplicated(["user", "item"]).to_numpy()
    hit = np.isin(keys, relevant_keys) & first

    # Users in compact positions for per-user sums.
    served, row = np.unique(user, return_inverse=True)
    per_user = lambda values: np.bincount(row, weights=values, minlength=len(served))  # noqa: E731
    list_length = per_user(np.ones(len(user)))
    hits = per_user(hit)
    dcg = per_user(np.where(hit, 1.0 / np.log2(rank + 1.0), 0.0))
    n_relevant = np.bincount(relevant["user"].to_numpy())[served]
    ideal = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))[np.minimum(n_relevant, k) - 1]
    played = train_played(history, user, item)
    novel = per_user(~played)
    listeners = np.maximum(np.bincount(history.indices, minlength=n_items), 1)
    train_users = max(int((np.diff(history.indptr) > 0).sum()), 1)
    information = per_user(np.log2(train_users / listeners[item]))

    n = len(served)
    recommended = np.unique(item)
    relevant_items = np.unique(relevant["item"].to_numpy())
    values = {
        "precision": share((hits / k).sum(), len(window_users)),
        "recall": share((hits / n_relevant).sum(), len(window_users)),
        "ndcg": share((dcg / ideal).sum(), len(window_users)),
        "coverage_user": share(n, len(window_users)),
        "coverage_item": share(np.isin(relevant_items, recommended).sum(), len(relevant_items)),
        "original_novelty": share((novel / list_length).sum(), n),
        "catalog_coverage": share(len(recommended), n_items),
        "novelty": share((information / list_length).sum(), n),
    }
    out = {f"{name}@{k}": values[name] for name in METRICS}
    out["evaluated_users"] = int(len(window_users))
    out["users_with_recs"] = int(n)
    return out


def train_played(history, user, item):
    """Whether each (user, item) pair is in the train history; new users have none."""
    played = np.zeros(len(user), bool)
    old = user < history.shape[0]
    if old.any():
        played[old] = np.asarray(history[user[old], item[old]]).ravel() > 0
    return played
