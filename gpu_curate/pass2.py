"""Pass 2 for one partition: sample from the match index, write the kept rows.

The keep decision reads only the match index (never the text); the kept
rows' columns are then read from the pool and written with their uid.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import matchindex
from .balance import keep_mask
from .config import UID, CurateConfig
from .count import sparse_counts
from .images import lost_image
from .outdir import OutDir
from .pass1 import lang_stats
from .pool import Partition
from .readers import read_rows
from .storage import read_json, write_json_atomic, write_parquet_atomic
from .texts import invalid_utf8_rows, text_as_string


def balance_partition(
    part: Partition, cfg: CurateConfig, p: np.ndarray, p_head: np.ndarray
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Pass 2 for one partition: the kept rows, with every passed-through
    column. Returns (stats, entry ids, kept rows matching each): the kept
    counts, sparse like pass 1's. `p_head` is p with tail entries zeroed."""
    lay = OutDir(cfg.out)
    marker, shard = lay.marker("kept", part), lay.shard("kept", part)
    index = matchindex.read(lay.shard("matches", part))
    result = matchindex.match_result(index)
    keys = matchindex.uid_keys(index)
    rows = index.column(matchindex.ROW).to_numpy()
    lost = lost_image(cfg, part, rows)
    keep = _keep(cfg, result, keys, p) & ~lost
    kept_counts = sparse_counts(result.entry_ids[np.repeat(keep, np.diff(result.offsets))], len(p))
    if marker.exists():  # done before: the decision above is cheap, and gives the counts again
        stats = read_json(marker)
        if stats.get("balance_id") == cfg.balance_id:
            return stats, *kept_counts
    kept_by_head = keep & _keep(cfg, result, keys, p_head)
    kept_rows = rows[keep] - part.first_row
    table = read_rows(part, kept_rows, _kept_columns(cfg, part), cfg.text_column)
    table = text_as_string(table, cfg.text_column)
    if UID not in table.column_names:
        table = table.append_column(UID, matchindex.uids(index, keep))
    if cfg.keep_matched_ids:
        ids = index.column(matchindex.IDS).combine_chunks().filter(pa.array(keep))
        table = table.append_column(matchindex.IDS, ids.cast(pa.list_(pa.int32())))
    invalid = read_json(lay.marker("matches", part))["rows_invalid_utf8"]
    kept_invalid = int(invalid_utf8_rows(table.column(cfg.text_column)).sum()) if invalid else 0
    write_parquet_atomic(table, shard)
    langs = table.column(cfg.lang_column).combine_chunks() if cfg.lang_column else None
    stats = {
        "file": part.name,
        "rows_kept": table.num_rows,
        "rows_kept_invalid_utf8": kept_invalid,
        "rows_same_image_dropped": int(lost.sum()),
        "rows_kept_only_through_tail": int(keep.sum() - kept_by_head.sum()),
        "balance_id": cfg.balance_id,
        "languages": lang_stats(langs, rows_kept=np.ones(table.num_rows, bool)),
    }
    write_json_atomic(stats, marker)
    return stats, *kept_counts


def _keep(cfg: CurateConfig, result, keys: np.ndarray, p: np.ndarray) -> np.ndarray:
    if cfg.device == "gpu":
        from .gpu_engine import keep_rows_gpu

        return keep_rows_gpu(result.offsets, result.entry_ids, keys, p, cfg.seed).get()
    return keep_mask(result, keys, p, cfg.seed, cfg.threads)


def _kept_columns(cfg: CurateConfig, part: Partition) -> list[str] | None:
    if cfg.columns is None:
        return None
    wanted = [cfg.text_column, *cfg.columns] + [c for c in (cfg.lang_column,) if c]
    return list(dict.fromkeys(wanted))
