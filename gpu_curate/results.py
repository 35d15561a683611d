"""Match sets in CSR form: what every engine returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa


@dataclass(frozen=True)
class MatchResult:
    """Match sets in CSR form: row i matched entry_ids[offsets[i]:offsets[i+1]]
    (ascending, unique)."""

    offsets: np.ndarray  # int64, len(texts) + 1
    entry_ids: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> np.ndarray:
        return self.entry_ids[self.offsets[i] : self.offsets[i + 1]]

    def to_lists(self) -> list[list[int]]:
        return [self.row(i).tolist() for i in range(len(self))]

    def to_arrow(self) -> pa.LargeListArray:
        """The match sets as a list<int32> column (no copy of the ids)."""
        return pa.LargeListArray.from_arrays(pa.array(self.offsets), pa.array(self.entry_ids))

    def counts(self, n_entries: int) -> np.ndarray:
        """Rows matching each entry (docs/semantics.md section 5), uint64."""
        return np.bincount(self.entry_ids, minlength=n_entries).astype(np.uint64)

    @staticmethod
    def concat(parts: Sequence["MatchResult"]) -> "MatchResult":
        if not parts:
            return MatchResult(np.zeros(1, np.int64), np.zeros(0, np.int32))
        starts = np.cumsum([0] + [len(p.entry_ids) for p in parts[:-1]])
        offsets = np.concatenate([[0]] + [p.offsets[1:] + s for p, s in zip(parts, starts)])
        return MatchResult(offsets.astype(np.int64), np.concatenate([p.entry_ids for p in parts]))
