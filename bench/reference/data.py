"""Reading the input, the date split and the integer codes, as musicrec's preprocess and
matrices stages do them.

Codes: items are the whole catalogue (tracks.parquet, sorted by id), so every track has a
code and features; users with train events ("old") are 0..n_old-1 sorted by id, and users seen
only in the target or test window ("new") follow them. Events of tracks missing from the
catalogue are dropped and counted (musicrec's default `data.unknown_tracks: drop`).
"""
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from settings import fail

FEATURE_GROUPS = ("albums", "artists", "genres")


def read_table(data_dir, name, columns):
    path = os.path.join(data_dir, name)
    if not os.path.isfile(path):
        fail(f"{path} not found")
    table = pq.read_table(path)
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        fail(f"{path}: missing column(s) {', '.join(missing)}")
    return table.select(columns)


def epoch_days(column):
    """Days since 1970-01-01 of a date or timestamp column, as int64."""
    if pa.types.is_date(column.type) or pa.types.is_timestamp(column.type):
        return pc.cast(pc.cast(column, pa.date32()), pa.int32()).to_numpy().astype(np.int64)
    fail(f"interactions.parquet: started_at is {column.type}, expected a date or timestamp")


def lookup(sorted_ids, values):
    """Position of each value in `sorted_ids`, -1 where it is absent."""
    if len(sorted_ids) == 0:
        return np.full(len(values), -1, np.int64)
    pos = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == values, pos, -1)


class Interactions:
    """The split windows in codes, the train matrix and the item × feature one-hot matrix."""

    def __init__(self, data_dir, config, timer):
        with timer.step("load"):
            events = read_table(data_dir, "interactions.parquet", ["user_id", "track_id", "started_at"])
            tracks = read_table(data_dir, "tracks.parquet", ["track_id", *FEATURE_GROUPS])
            for name, table, columns in (("interactions.parquet", events, events.column_names),
                                         ("tracks.parquet", tracks, ["track_id"])):
                for column in columns:
                    if table.column(column).null_count:
                        fail(f"{name}: column {column} has {table.column(column).null_count} null value(s)")
            user = events.column("user_id").to_numpy().astype(np.int64)
            track = events.column("track_id").to_numpy().astype(np.int64)
            day = epoch_days(events.column("started_at"))
        with timer.step("split_encode"):
            self.split_and_encode(user, track, day, tracks, config)
        with timer.step("matrices"):
            self.build_matrices(tracks)

    def split_and_encode(self, user, track, day, tracks, config):
        track_ids = tracks.column("track_id").to_numpy().astype(np.int64)
        self.item_ids = np.unique(track_ids)
        if len(self.item_ids) != len(track_ids):
            fail(f"tracks.parquet: {len(track_ids) - len(self.item_ids)} repeated track_id value(s)")
        self.n_items = len(self.item_ids)
        item = lookup(self.item_ids, track)
        known = item >= 0
        self.unknown_track_events = int((~known).sum())
        user, item, day = user[known], item[known], day[known]

        window = np.select([day < config["train_day"], day < config["target_day"]], [0, 1], 2)
        for w, name in enumerate(("train", "target", "test")):
            if not (window == w).any():
                first, last = (np.datetime64(int(d), "D") for d in (day.min(), day.max()))
                fail(f"the {name} window has no events (data spans {first}..{last}); check "
                     "preprocess.train_end and preprocess.target_end")
        train = window == 0
        self.old_user_ids = np.unique(user[train])
        self.n_old = len(self.old_user_ids)
        new_user_ids = np.setdiff1d(np.unique(user), self.old_user_ids)
        code = lookup(self.old_user_ids, user)
        code[code < 0] = self.n_old + lookup(new_user_ids, user[code < 0])
        self.n_users = self.n_old + len(new_user_ids)
        # Train events in file order: the ranker's "most recent tracks" breaks day ties by it.
        self.train_user, self.train_item, self.train_day = code[train], item[train], day[train]
        # Relevant items: the distinct (user, track) pairs of each evaluation window.
        self.relevant = {name: distinct_pairs(code[window == w], item[window == w], self.n_items)
                         for w, name in ((1, "target"), (2, "test"))}
        self.window_users = {
            name: np.unique(code[window == w]) for w, name in enumerate(("train", "target", "test"))}
        self.window_events = {name: int((window == w).sum()) for w, name in enumerate(("train", "target", "test"))}

    def build_matrices(self, tracks):
        # Listen counts: repeated (user, track) events add up.
        self.user_item = sp.csr_matrix(
            (np.ones(len(self.train_user), np.float32), (self.train_user, self.train_item)),
            shape=(self.n_old, self.n_items))
        self.user_item.sum_duplicates()
        self.user_item.sort_indices()
        self.users_per_item = np.bincount(self.user_item.indices, minlength=self.n_items)
        self.item_features, self.feature_group = item_feature_matrix(tracks, self.item_ids)

    def stats(self):
        return {
            "catalogue_tracks": self.n_items,
            "unknown_track_events_dropped": self.unknown_track_events,
            "old_users": self.n_old,
            "users": self.n_users,
            "events": self.window_events,
            "window_users": {w: int(len(u)) for w, u in self.window_users.items()},
            "train_pairs": int(self.user_item.nnz),
        }


def distinct_pairs(user, item, n_items):
    key = np.unique(user * n_items + item)
    return pd.DataFrame({"user": key // n_items, "item": key % n_items})


def item_feature_matrix(tracks, item_ids):
    """Item × (album | artist | genre value) one-hot matrix over the catalogue, and the group
    index of each column."""
    track_ids = tracks.column("track_id").to_numpy().astype(np.int64)
    rows, cols, groups, offset = [], [], [], 0
    for g, name in enumerate(FEATURE_GROUPS):
        lists = tracks.column(name).combine_chunks()
        parent = pc.list_parent_indices(lists).to_numpy()
        values = pc.list_flatten(lists)
        keep = values.is_valid().to_numpy(zero_copy_only=False)
        values = values.to_numpy(zero_copy_only=False)[keep].astype(np.int64)
        distinct, code = np.unique(values, return_inverse=True)
        rows.append(lookup(item_ids, track_ids[parent[keep]]))
        cols.append(code + offset)
        groups.append(np.full(len(distinct), g))
        offset += len(distinct)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(item_ids), offset))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # a value listed twice for one track is still one column
    return matrix, np.concatenate(groups)
