"""Pass 2 for one partition: sample from the match index, write the kept rows.

The keep decision reads only the match index (never the text); the kept
rows' columns are then read from the pool and written with their uid.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import matchindex
from .balance import keep_mask
from .config import UID, CurateConfig
from .images import lost_image
from .outdir import OutDir
from .pass1 import lang_stats
from .pool import Partition, read_partition
from .storage import read_json, write_json_atomic, write_parquet_atomic
from .texts import invalid_utf8_rows


def balance_partition(part: Partition, cfg: CurateConfig) -> dict:
    """Pass 2 for one partition: the kept rows, with every passed-through column.
    Everything it needs is on disk (the generation's probabilities.npy), so a
    task retried on another worker after a lost one reads the same inputs."""
    lay = OutDir.of(cfg)
    generation = lay.generation(cfg.balance_id)
    marker, shard = generation.marker(part), generation.shard(part)
    if marker.exists() and shard.exists():  # a marker only ever describes a shard of its own generation
        return read_json(marker)
    p = probabilities(str(generation.probabilities))
    index = matchindex.read(lay.shard("matches", part))
    result = matchindex.match_result(index)
    keys = matchindex.uid_keys(index)
    if cfg.device == "gpu":
        from .gpu_engine import keep_rows_gpu

        keep = keep_rows_gpu(result.offsets, result.entry_ids, keys, p, cfg.seed).get()
    else:
        keep = keep_mask(result, keys, p, cfg.seed, cfg.threads)
    rows = index.column(matchindex.ROW).to_numpy()
    lost = lost_image(cfg, generation, part, rows)
    keep &= ~lost
    kept_rows = rows[keep] - part.first_row
    table = read_partition(part, _kept_columns(cfg, part), cfg.text_column).take(pa.array(kept_rows))
    table = _with_text_as_string(table, cfg.text_column)
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
        "balance_id": cfg.balance_id,
        "languages": lang_stats(langs, rows_kept=np.ones(table.num_rows, bool)),
    }
    write_json_atomic(stats, marker)
    return stats


@lru_cache(maxsize=2)
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


def _with_text_as_string(table: pa.Table, column: str) -> pa.Table:
    """Texts read as bytes (text formats) are stored as strings, each row's
    bytes untouched: a kept text that is not valid UTF-8 (it matched on its
    bytes) is counted in the summary, never altered."""
    i = table.column_names.index(column)
    if pa.types.is_binary(table.schema.field(i).type) or pa.types.is_large_binary(table.schema.field(i).type):
        as_string = pc.CastOptions(target_type=pa.large_string(), allow_invalid_utf8=True)
        table = table.set_column(i, column, pc.cast(table.column(i), options=as_string))
    return table
