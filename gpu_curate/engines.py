"""The steps of a pass that differ between the CPU and the GPU engine.

pass1 and pass2 are written once; they ask an engine to read a partition's
text to where it is matched, count its invalid UTF-8, match it into what the
match index needs, decide which rows to keep and write the kept rows. The
rest (planning, markers, the index format, stats, counts) is shared.

    engine_for(cfg)   CpuEngine, or GpuEngine with the cuDF or the pyarrow reader

The GPU engine keeps the text on the device from the read to the walk: what
comes back to the host is the match index (row numbers and entry ids), sparse
counts, per-partition totals and one keep flag per matched row. With the
pyarrow reader (`--gpu-reader pyarrow`, the emulated device's only one) a
partition is read on the host and its text copied to the device once, and
kept rows are read and written on the host, as the CPU engine does.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from . import matchindex
from .balance import keep_mask
from .count import sparse_counts
from .errors import DeviceError, InputError, OptionError
from .fs import quote_path
from .partition import Partition
from .readers import read_partition, read_rows
from .results import MatchResult
from .storage import write_parquet_atomic
from .texts import invalid_utf8_rows, text_as_string
from .worldwide import MetadataSet

READERS = ("cudf", "pyarrow")


@dataclass
class Found:
    """What pass 1 keeps of a partition's match sets, on the host."""

    rows: np.ndarray  # int64: the matched rows, from the partition's first row
    result: MatchResult  # their match sets, one CSR row each
    counts: tuple[np.ndarray, np.ndarray]  # (entry ids, rows matching each): sparse
    no_list: int  # rows whose language has no metadata list


def text_column(table: pa.Table, part: Partition, name: str) -> pa.Array:
    """The text column, checked to hold strings or bytes (null: no text at all)."""
    if name not in table.column_names:
        raise InputError(f"{quote_path(part.path)}: no column {name!r} (columns: {', '.join(table.column_names)})")
    texts = table.column(name).combine_chunks()
    if pa.types.is_null(texts.type):
        return texts.cast(pa.large_binary())
    kind = texts.type
    if not (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    ):
        raise InputError(f"{quote_path(part.path)}: text column {name!r} holds {kind}, not strings")
    return texts


def _found(res: MatchResult, no_list: int, n_entries: int) -> Found:
    rows = np.flatnonzero(np.diff(res.offsets) > 0)
    result = MatchResult(np.append(res.offsets[rows], res.offsets[-1]), res.entry_ids)
    return Found(rows, result, sparse_counts(res.entry_ids, n_entries), no_list)


class CpuEngine:
    label = "cpu"
    reader = "pyarrow"

    def __init__(self, threads: int = 1):
        self.threads = threads

    def read(self, part: Partition, columns: list[str] | None, text: str) -> tuple[pa.Table, Any]:
        """(the partition's table, its text column where this engine walks it)."""
        table = read_partition(part, columns, text)
        return table, text_column(table, part, text)

    def n_rows(self, texts) -> int:
        return len(texts)

    def null_count(self, texts) -> int:
        return texts.null_count

    def invalid_utf8(self, texts) -> tuple[int, int | None]:
        """(rows that are not valid UTF-8, the first of them or None)."""
        invalid = invalid_utf8_rows(texts)
        n = int(invalid.sum())
        return n, int(np.argmax(invalid)) if n else None

    def match(self, mdset: MetadataSet, texts, langs: pa.Array | None) -> Found:
        res, no_list = mdset.match(texts, langs, "cpu", self.threads)
        return _found(res, no_list, mdset.n_entries)

    def keep(self, index: pa.Table, result: MatchResult, ps: list[np.ndarray], seed: int, key: str) -> list[np.ndarray]:
        """Keep flag per row of the match index (docs/semantics.md section 7), for
        each probability vector of `ps` (`key` names them for a device cache)."""
        keys = matchindex.uid_keys(index)
        return [keep_mask(result, keys, p, seed, self.threads) for p in ps]

    def write_kept(self, part, columns, kept_rows, extra, path, text, lang) -> tuple[int, int, pa.Array | None]:
        """Writes the kept rows with the `extra` columns appended; returns (rows,
        kept texts that are not valid UTF-8, their languages)."""
        table = text_as_string(read_rows(part, kept_rows, columns, text), text)
        for name, values in extra.items():
            if name not in table.column_names:
                table = table.append_column(name, values)
        write_parquet_atomic(table, path)
        invalid = int(invalid_utf8_rows(table.column(text)).sum())
        return table.num_rows, invalid, table.column(lang).combine_chunks() if lang else None


class GpuEngine(CpuEngine):
    """The GPU path (gpu_engine's kernels through CuPy, or the emulated device)."""

    def __init__(self, reader: str, threads: int = 1):
        super().__init__(threads)
        self.reader = reader
        from .gpu_backend import device_label

        self.label = device_label("gpu")

    def read(self, part, columns, text):
        if self.reader == "cudf" and part.format == "parquet":
            from . import gpu_io

            return gpu_io.read_parquet(part, columns or [text], text)
        from .gpu_strings import strings_from_arrow

        table = read_partition(part, columns, text)
        arrow = text_column(table, part, text)
        return table.drop_columns([text]), _OnDevice(strings_from_arrow(arrow), arrow.null_count)

    def n_rows(self, texts) -> int:
        return texts.strings.n_rows if isinstance(texts, _OnDevice) else texts.n_rows

    def null_count(self, texts) -> int:
        if isinstance(texts, _OnDevice):
            return texts.null_count
        return int(texts.owner.null_count()) if texts.owner is not None else 0

    def invalid_utf8(self, texts):
        from .gpu_engine import invalid_utf8_gpu

        invalid = invalid_utf8_gpu(_strings(texts))
        n = int(invalid.sum())
        return n, int(invalid.argmax()) if n else None

    def match(self, mdset: MetadataSet, texts, langs: pa.Array | None) -> Found:
        from . import gpu_engine as g

        cp = g.cupy()
        strings = _strings(texts)
        no_list = 0
        if not mdset.worldwide:
            groups = [g.MatchGroup(g.device_tables(mdset.automaton(None)))]
        else:
            list_of_row = mdset.list_of_rows(langs)  # host int32, -1: no list
            no_list = int((list_of_row < 0).sum())
            on_device = cp.asarray(list_of_row)
            groups = []
            for k, lang in enumerate(mdset.lists):
                rows = cp.flatnonzero(on_device == k)
                if len(rows):
                    groups.append(g.MatchGroup(g.device_tables(mdset.automaton(lang)), rows, mdset.bases[lang]))
        res = g.match_groups(strings, groups)
        matched = cp.flatnonzero(cp.diff(res.offsets) > 0)
        # The matched rows' CSR: rows without a match hold no ids, so the ids stay as they are.
        offsets = np.append(res.offsets[matched].get(), int(res.offsets[-1]))
        return Found(
            matched.get().astype(np.int64),
            MatchResult(offsets, res.entry_ids.get()),
            g.sparse_counts_gpu(res.entry_ids, mdset.n_entries),
            no_list,
        )

    def keep(self, index, result, ps, seed, key):
        from . import gpu_engine as g

        cp = g.cupy()
        prefix = matchindex.uid_prefix(index)
        if prefix is None:
            keys = g.uid_keys_gpu(index.column(matchindex.UID))
        else:
            keys = g.derived_uid_keys_gpu(prefix, cp.asarray(index.column(matchindex.ROW).to_numpy()))
        offsets, ids = cp.asarray(result.offsets), cp.asarray(result.entry_ids)  # the index crosses once
        return [g.keep_rows_gpu(offsets, ids, keys, _device_p(p, f"{key}:{k}"), seed).get() for k, p in enumerate(ps)]

    def write_kept(self, part, columns, kept_rows, extra, path, text, lang):
        if self.reader != "cudf" or part.format != "parquet":
            return super().write_kept(part, columns, kept_rows, extra, path, text, lang)
        from . import gpu_io
        from .gpu_engine import invalid_utf8_gpu

        rows, texts, langs = gpu_io.write_kept(part, columns, kept_rows, extra, path, text, lang)
        return rows, int(invalid_utf8_gpu(texts).sum()) if texts is not None else 0, langs


@dataclass(frozen=True)
class _OnDevice:
    """Text copied to the device by the pyarrow reader, with its null count (known on the host)."""

    strings: Any
    null_count: int


def _strings(texts):
    return texts.strings if isinstance(texts, _OnDevice) else texts


# The probability vectors on the device, one upload per worker and balance
# (keyed by the caller: p and p_head of one balance), not one per partition.
_P_CACHE: dict[str, Any] = {}
_P_LOCK = threading.Lock()


def _device_p(p: np.ndarray, key: str):
    from .gpu_backend import cupy

    with _P_LOCK:
        if key not in _P_CACHE:
            if len(_P_CACHE) >= 4:  # a worker moves on to another balance
                _P_CACHE.clear()
            _P_CACHE[key] = cupy().asarray(np.ascontiguousarray(p, dtype=np.float64))
        return _P_CACHE[key]


def resolve_reader(device: str, reader: str | None) -> str | None:
    """The GPU engine's reader: cudf unless asked otherwise, never chosen
    silently. The emulated device has no cuDF: there, pyarrow is the default
    and cudf an error. None on the CPU."""
    if device != "gpu":
        return None
    from .gpu_backend import emulated, missing

    reader = reader or ("pyarrow" if emulated() else "cudf")
    if reader not in READERS:
        raise OptionError(f"--gpu-reader must be one of {', '.join(READERS)}, got {reader!r}")
    if reader == "cudf" and emulated():
        raise OptionError("the emulated device has no cuDF: use --gpu-reader pyarrow")
    if reader == "cudf" and "cuDF" in missing(need_cudf=True):
        raise DeviceError(
            "--device gpu reads parquet with cuDF, which is not installed: pip install 'gpu_curate[gpu]' "
            "(cudf-cu13), or choose --gpu-reader pyarrow (read on the host, the text copied to the GPU)"
        )
    return reader


def engine_for(device: str, gpu_reader: str | None, threads: int = 1) -> CpuEngine:
    return GpuEngine(gpu_reader or "cudf", threads) if device == "gpu" else CpuEngine(threads)
