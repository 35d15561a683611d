"""What balancing did, for summary.json: head and tail entries before and after.

An entry is *head* when its count is at least its threshold (t, or its
language's t in a worldwide run): those are the entries sampled down (or
left at exactly t). Every number here comes from entry_counts.parquet's
`count` and `kept_count` and the head mask; the report reads them back from
summary.json instead of computing them again.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

TOP_HEAD_ENTRIES = 20


def balance_statistics(counts_table: pa.Table, head: np.ndarray, rows_kept: int, rows_kept_only_tail: int) -> dict:
    count = counts_table.column("count").to_numpy()
    kept = counts_table.column("kept_count").to_numpy()
    sides = {
        side: {
            "entries": int(mask.sum()),
            "matches_before": int(count[mask].sum()),
            "matches_after": int(kept[mask].sum()),
        }
        for side, mask in (("head", head), ("tail", ~head))
    }
    before, after = int(count.sum()), int(kept.sum())
    return {
        "entries_over_t": sides["head"]["entries"],
        "pairs_kept": after,
        "head_tail": sides,
        "head_share_of_matches": {
            "before": sides["head"]["matches_before"] / before if before else 0.0,
            "after": sides["head"]["matches_after"] / after if after else 0.0,
        },
        "rows_kept_only_through_tail_share": rows_kept_only_tail / rows_kept if rows_kept else 0.0,
        "top_head_entries": _top_head_entries(counts_table, head, count),
    }


def _top_head_entries(counts_table: pa.Table, head: np.ndarray, count: np.ndarray) -> list[dict]:
    ids = np.flatnonzero(head)
    top = ids[np.argsort(-count[ids].astype(np.float64), kind="stable")[:TOP_HEAD_ENTRIES]]
    columns = [c for c in ("entry_id", "entry", "lang", "count", "kept_count") if c in counts_table.column_names]
    return counts_table.select(columns).take(pa.array(top)).to_pylist()
