"""`gpu-curate match`: the match set of every row of a pool, without counting
or sampling, in this process (the walk threaded over rows).

The output is a directory of parquet shards, one per partition (curate's
partitioning and shard names), each holding every row of its partition: the
pool's columns with the text as a string column, `uid` (the pool's, or
derived `<file>:<row>` as in curate) and `matched_entry_ids`. It is written
to a temporary directory beside --out and renamed into place when complete:
a failed run leaves nothing, and a rerun replaces the outputs of an earlier
`gpu-curate match` (never a directory it did not write).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from .checks import check_run
from .config import UID, CurateConfig
from .errors import OptionError
from .fs import local_out
from .match import resolve_device
from .pass1 import checked_texts, column_of, id_column_of, row_uids
from .pool import find_pool, plan_partitions
from .readers import read_partition
from .storage import write_json_atomic, write_parquet_atomic
from .texts import text_as_string
from .worldwide import load_cached

DONE = "_match.json"  # the totals, written last: marks a directory written by `gpu-curate match`


def match_pool(cfg: CurateConfig, log: Callable[[str], None] = lambda s: None) -> dict:
    """Match every row of the pool; write the shards to cfg.out; return the totals."""
    cfg = replace(cfg, out=local_out(cfg.out), device=resolve_device(cfg.device))
    pool = find_pool(list(cfg.inputs), exclude=cfg.out)
    check_run(cfg, pool.files, sampling=False)
    out = Path(cfg.out)
    if out.is_dir() and any(out.iterdir()) and not (out / DONE).exists():
        raise OptionError(f"--out {out}: a directory that `gpu-curate match` did not write; use a new --out")
    parts = plan_partitions(pool.files, cfg.partition_rows, cfg.text_column, cfg.tar_text)
    mdset = load_cached(cfg.metadata_ref)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        totals = {"rows_in": 0, "rows_matched": 0, "rows_null_text": 0, "rows_invalid_utf8": 0, "pairs_matched": 0}
        for part in parts:
            table = read_partition(part, None, cfg.text_column)
            texts, n_invalid = checked_texts(table, part, cfg)
            uids = row_uids(table, part, id_column_of(cfg, part, table.column_names))
            langs = column_of(table, part, cfg.lang_column).cast(pa.string()) if cfg.lang_column else None
            res, _ = mdset.match(texts, langs, cfg.device, cfg.threads)
            table = text_as_string(table, cfg.text_column)  # invalid UTF-8 keeps its bytes (it matched on them)
            if UID not in table.column_names:
                table = table.append_column(UID, uids)
            table = table.append_column("matched_entry_ids", res.to_arrow().cast(pa.list_(pa.int32())))
            write_parquet_atomic(table, tmp / f"{part.shard}.parquet")
            totals["rows_in"] += table.num_rows
            totals["rows_matched"] += int((np.diff(res.offsets) > 0).sum())
            totals["rows_null_text"] += texts.null_count
            totals["rows_invalid_utf8"] += n_invalid
            totals["pairs_matched"] += len(res.entry_ids)
        write_json_atomic(totals, tmp / DONE)
        if out.exists():
            shutil.rmtree(out)  # an earlier `gpu-curate match` output (or an empty directory)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return totals
