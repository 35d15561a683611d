"""Counting matches per entry (docs/semantics.md section 5)."""

from __future__ import annotations

import numpy as np


def sparse_counts(entry_ids: np.ndarray, n_entries: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(entry ids, rows matching each) of one partition's match index. Each
    row lists an entry at most once, so occurrences are rows. Sparse, so a
    partition's result stays small however large the metadata."""
    if n_entries is not None and n_entries <= 8 * len(entry_ids):  # bincount: linear, no sort
        dense = np.bincount(entry_ids, minlength=n_entries)
        ids = np.flatnonzero(dense)
        return ids.astype(np.int32), dense[ids].astype(np.uint64)
    ids, counts = np.unique(entry_ids, return_counts=True)
    return ids.astype(np.int32), counts.astype(np.uint64)


class CountAccumulator:
    """The pool-wide uint64 count vector, summed from partition results."""

    def __init__(self, n_entries: int):
        self.counts = np.zeros(n_entries, np.uint64)

    def add(self, ids: np.ndarray, counts: np.ndarray) -> None:
        self.counts[ids] += counts  # ids are unique within one partition
