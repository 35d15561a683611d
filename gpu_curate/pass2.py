"""Pass 2 for one partition: sample from the match index, write the kept rows.

The keep decision reads only the match index (never the text); the kept
rows' columns are then read from the pool and written with their uid.
"""

from __future__ import annotations

import os
from functools import lru_cache

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
from .partition import Partition
from .storage import read_json, write_json_atomic


def balance_partition(
    part: Partition, cfg: CurateConfig, p_key: str | None = None
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Pass 2 for one partition: the kept rows, with every passed-through
    column. Returns (stats, entry ids, kept rows matching each): the kept
    counts, sparse like pass 1's. Everything it reads is on disk (the
    generation's p, and p_head: p with tail entries zeroed), so a task rerun
    on another worker after a lost one reads the same inputs; `p_key`, a
    content hash of both (balance.Balancing.fingerprint), names them in a GPU
    worker's cache. Shards and markers live in the generation of cfg's
    balance parameters, so a marker only ever describes a shard of its own balance."""
    lay = OutDir.of(cfg)
    generation = lay.generation(cfg.balance_id)
    marker, shard = generation.marker(part), generation.shard(part)
    p = probabilities(str(generation.probabilities))
    p_head = probabilities(str(generation.head_probabilities))
    p_key = p_key or probabilities_key(p) + probabilities_key(p_head)
    eng = engine_for(cfg.device, cfg.gpu_reader, cfg.threads)
    index = matchindex.read(lay.shard("matches", part))
    result = matchindex.match_result(index)
    rows = index.column(matchindex.ROW).to_numpy()
    lost = lost_image(cfg, generation, part, rows)
    keep, kept_by_head = eng.keep(index, result, [p, p_head], cfg.seed, p_key)
    keep &= ~lost
    kept_by_head &= keep
    kept_counts = sparse_counts(result.entry_ids[np.repeat(keep, np.diff(result.offsets))], len(p))
    if marker.exists() and shard.exists():  # done before: the decision above is cheap, and gives the counts again
        return read_json(marker), *kept_counts
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


@lru_cache(maxsize=4)  # p and p_head of a balance or two
def _load_probabilities(path: str, mtime_ns: int) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


def probabilities(path: str) -> np.ndarray:
    """p per entry, mapped once per process (worker processes on a node share the pages)."""
    return _load_probabilities(path, os.stat(path).st_mtime_ns)


def _kept_columns(cfg: CurateConfig, part: Partition) -> list[str] | None:
    if cfg.columns is None:
        return None
    wanted = [cfg.text_column, *cfg.columns] + [c for c in (cfg.lang_column,) if c]
    return list(dict.fromkeys(wanted))
