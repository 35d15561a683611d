"""`gpu-curate match`: the match set of every row of a pool, without counting
or sampling, in this process (the walk threaded over rows).

The output is a directory of parquet shards, one per partition (curate's
partitioning and shard names), each holding every row of its partition: the
pool's columns with the text as a string column, `uid` (the pool's, or
derived `<file>:<row>` as in curate) and `matched_entry_ids`, and
`_match.json` (the totals), written last. A rerun replaces the outputs of an
earlier `gpu-curate match`, never a directory it did not write.

Locally the shards go to a temporary directory beside --out, renamed into
place when complete: a failed run leaves nothing. On object storage (an
fsspec URL) each shard is one PUT, and `_match.pending` is there from the
run's start to its end: the output is complete when `_match.json` is there
and `_match.pending` is not; a failed run leaves `_match.pending`, and its
rerun replaces everything.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .checks import check_run
from .config import UID, CurateConfig
from .errors import CurateError, OptionError, OutputError
from .fs import one_line, quote_path
from .match import resolve_device
from .pass1 import checked_texts, column_of, id_column_of, row_uids
from .pool import find_pool, plan_partitions
from .publish import Store, open_store
from .readers import read_partition
from .storage import write_json_atomic, write_parquet_atomic
from .texts import text_as_string
from .worldwide import load_cached

DONE = "_match.json"  # the totals, written last: marks a directory written by `gpu-curate match`


PENDING = "_match.pending"  # on object storage: a run is writing here


def match_pool(cfg: CurateConfig, log: Callable[[str], None] = lambda s: None) -> dict:
    """Match every row of the pool; write the shards to cfg.out; return the totals."""
    local, store = open_store(cfg.out)
    cfg = replace(cfg, out=local or cfg.out, device=resolve_device(cfg.device))
    pool = find_pool(list(cfg.inputs), exclude=local)
    check_run(cfg, pool.files, sampling=False)
    shards = _DirectoryShards(Path(local)) if store is None else _StoreShards(store)
    parts = plan_partitions(pool.files, cfg.partition_rows, cfg.text_column, cfg.tar_text)
    mdset = load_cached(cfg.metadata_ref)
    shards.begin()
    totals = {"rows_in": 0, "rows_matched": 0, "rows_null_text": 0, "rows_invalid_utf8": 0, "pairs_matched": 0}
    try:
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
            shards.write(f"{part.shard}.parquet", table)
            totals["rows_in"] += table.num_rows
            totals["rows_matched"] += int((np.diff(res.offsets) > 0).sum())
            totals["rows_null_text"] += texts.null_count
            totals["rows_invalid_utf8"] += n_invalid
            totals["pairs_matched"] += len(res.entry_ids)
        shards.finish(totals)
    except BaseException:
        shards.abort()
        raise
    return totals


class _DirectoryShards:
    """A temporary directory beside --out, renamed into place when complete."""

    def __init__(self, out: Path):
        self.out = out
        if out.is_dir() and any(out.iterdir()) and not (out / DONE).exists():
            raise OptionError(f"--out {out}: a directory that `gpu-curate match` did not write; use a new --out")
        self.tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"

    def begin(self) -> None:
        self.tmp.mkdir(parents=True)

    def write(self, name: str, table: pa.Table) -> None:
        write_parquet_atomic(table, self.tmp / name)

    def finish(self, totals: dict) -> None:
        write_json_atomic(totals, self.tmp / DONE)
        if self.out.exists():
            shutil.rmtree(self.out)  # an earlier `gpu-curate match` output (or an empty directory)
        self.tmp.rename(self.out)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class _StoreShards:
    """Each shard one PUT to object storage (no rename there), between
    `_match.pending` (first) and `_match.json` (last)."""

    def __init__(self, store: Store):
        self.store = store
        self.before = store.objects()
        if self.before and DONE not in self.before and PENDING not in self.before:
            raise OptionError(
                f"--out {quote_path(store.url)}: holds objects that `gpu-curate match` did not write; use a new --out"
            )
        self.written: set[str] = set()

    def begin(self) -> None:
        self._put(PENDING, b"{}\n")  # before the old _match.json goes: the URL stays this command's
        if DONE in self.before:
            self.store.ask(self.store.fs.rm_file, self.store.path(DONE))

    def write(self, name: str, table: pa.Table) -> None:
        def put(f):
            pq.write_table(table, f, use_dictionary=False)

        self._put(name, put)
        self.written.add(name)

    def finish(self, totals: dict) -> None:
        for name in sorted(set(self.before) - self.written - {DONE, PENDING}):  # an earlier run's extra shards
            self.store.ask(self.store.fs.rm_file, self.store.path(name))
        self._put(DONE, (json.dumps(totals, indent=1, sort_keys=True) + "\n").encode())
        self.store.ask(self.store.fs.rm_file, self.store.path(PENDING))

    def abort(self) -> None:
        pass  # _match.pending stays: the output is incomplete, and a rerun may replace it

    def _put(self, name: str, data) -> None:
        """One object: bytes, or what `data(f)` writes to it."""
        try:
            if callable(data):
                with self.store.fs.open(self.store.path(name), "wb") as f:
                    data(f)
            else:
                self.store.fs.pipe_file(self.store.path(name), data)
        except CurateError:
            raise
        except Exception as e:  # noqa: BLE001 (each store raises its own types)
            raise OutputError(f"{quote_path(self.store.url_of(name))}: cannot write ({one_line(e)})") from None
