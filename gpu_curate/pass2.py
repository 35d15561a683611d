"""Pass 2 for one partition: sample from the match index, write the kept rows.

The keep decision reads only the match index (never the text); the kept
rows' columns are then read from the pool and written with their uid.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from . import matchindex
from .balance import probabilities_key
from .config import UID, CurateConfig
from .count import sparse_counts
from .engines import engine_for
from .images import lost_image
from .outdir import OutDir
from .pass1 import lang_stats
from .pool import Partition
from .storage import read_json, write_json_atomic


def balance_partition(
    part: Partition, cfg: CurateConfig, p: np.ndarray, p_head: np.ndarray, p_key: str | None = None
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Pass 2 for one partition: the kept rows, with every passed-through
    column. Returns (stats, entry ids, kept rows matching each): the kept
    counts, sparse like pass 1's. `p_head` is p with tail entries zeroed;
    `p_key`, a content hash of both (balance.Balancing.fingerprint), names
    them in a GPU worker's cache."""
    p_key = p_key or probabilities_key(p) + probabilities_key(p_head)
    lay = OutDir(cfg.out)
    marker, shard = lay.marker("kept", part), lay.shard("kept", part)
    eng = engine_for(cfg.device, cfg.gpu_reader, cfg.threads)
    index = matchindex.read(lay.shard("matches", part))
    result = matchindex.match_result(index)
    rows = index.column(matchindex.ROW).to_numpy()
    lost = lost_image(cfg, part, rows)
    keep, kept_by_head = eng.keep(index, result, [p, p_head], cfg.seed, p_key)
    keep &= ~lost
    kept_by_head &= keep
    kept_counts = sparse_counts(result.entry_ids[np.repeat(keep, np.diff(result.offsets))], len(p))
    if marker.exists():  # done before: the decision above is cheap, and gives the counts again
        stats = read_json(marker)
        if stats.get("balance_id") == cfg.balance_id:
            return stats, *kept_counts
    extra = {}
    if UID not in (cfg.columns or ()):
        extra[UID] = matchindex.uids(index, keep)
    if cfg.keep_matched_ids:
        ids = index.column(matchindex.IDS).combine_chunks().filter(pa.array(keep))
        extra[matchindex.IDS] = ids.cast(pa.list_(pa.int32()))
    n_kept, kept_invalid, langs = eng.write_kept(
        part, _kept_columns(cfg, part), rows[keep] - part.first_row, extra, shard, cfg.text_column, cfg.lang_column
    )
    stats = {
        "file": part.name,
        "rows_kept": n_kept,
        "rows_kept_invalid_utf8": kept_invalid,
        "rows_same_image_dropped": int(lost.sum()),
        "rows_kept_only_through_tail": int(keep.sum() - kept_by_head.sum()),
        "balance_id": cfg.balance_id,
        "languages": lang_stats(langs, rows_kept=np.ones(n_kept, bool)),
    }
    write_json_atomic(stats, marker)
    return stats, *kept_counts


def _kept_columns(cfg: CurateConfig, part: Partition) -> list[str] | None:
    if cfg.columns is None:
        return None
    wanted = [cfg.text_column, *cfg.columns] + [c for c in (cfg.lang_column,) if c]
    return list(dict.fromkeys(wanted))
