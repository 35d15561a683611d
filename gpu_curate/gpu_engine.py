"""The GPU engine: kernels/gpu_curate.cu run through CuPy over Arrow or cuDF strings.

The per-row walk and the sampling hash are the very C++ the CPU engine runs
(kernels/walk.cuh, kernels/sample.cuh), compiled by NVRTC, so both engines
give the same match sets and keep the same rows. This module only moves data
and launches kernels. CuPy and cuDF are imported inside the functions that
use them, never at import time: a CPU-only install imports it freely.

    match_gpu / match_gpu_device   texts -> CSR match sets (host / GPU memory)
    counts_gpu                     entry ids -> rows per entry
    uid_keys_gpu                   uids -> 64-bit sampling keys
    keep_rows_gpu                  CSR + keys + p + seed -> keep per row
    available / require            is the engine usable here, or why not (gpu_backend)

"CuPy" is gpu_backend.cupy(): the real CuPy, or with GPU_CURATE_EMULATE=1
the emulated device (gpu_curate.emulated_cupy), which runs these very calls
and kernels on the host.

Kernels run on CuPy's current stream. cuDF works on the legacy default
stream, which orders itself with every other blocking stream, so reading a
cuDF column in place needs no extra synchronization.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from . import kernels
from .automaton import Automaton
from .errors import DeviceError, InputError
from .gpu_backend import available, cupy, missing, require  # noqa: F401  (available, missing: API)
from .gpu_strings import NULL, DeviceStrings, is_device_column, pylibcudf_column, strings_from_arrow, strings_from_cudf
from .results import MatchResult
from .texts import as_string_array

# Threads per block: one row per thread; 256 keeps enough warps in flight to
# hide the walk's memory latency without tuning per GPU.
_BLOCK = 256


# -- automaton tables in GPU memory ------------------------------------------------
def table_arguments(tables: dict[str, np.ndarray]) -> list[tuple[str, Any]]:
    """Automaton.tables as (name, value) in the order of GC_TABLE_PARAMS in
    kernels/gpu_curate.cu: contiguous arrays of the kernels' dtypes, and NumPy
    scalars for the sizes. Host-side only (no CuPy), so CI checks the order."""

    def array(key: str, dtype) -> np.ndarray:
        return np.ascontiguousarray(tables[key], dtype=dtype)

    def slots(key: str) -> np.ndarray:  # (n_slots, 2) uint64 -> flat gc::Slot words
        return array(key, np.uint64).reshape(-1)

    def automaton(a: str) -> list[tuple[str, Any]]:
        edges = slots(f"{a}_edge_slots")
        return [
            (f"{a}_n_nodes", np.int32(len(tables[f"{a}_cfail"]))),
            (f"{a}_n_symbols", np.int32(tables[f"{a}_n_symbols"])),
            (f"{a}_edge_slots", edges),
            (f"{a}_edge_mask", np.uint64(len(edges) // 2 - 1)),
            (f"{a}_cfail", array(f"{a}_cfail", np.int32)),
            (f"{a}_out_lists", array(f"{a}_out_lists", np.int32)),
        ]

    vocab = slots("vocab_slots")
    return [
        *automaton("tok"),
        ("vocab_slots", vocab),
        ("vocab_mask", np.uint64(len(vocab) // 2 - 1)),
        ("vocab_offsets", array("vocab_offsets", np.int64)),
        ("vocab_bytes", array("vocab_bytes", np.uint8)),
        *automaton("byte"),
        ("byte_root", slots("byte_root")),
    ]


@dataclass(frozen=True, eq=False)
class DeviceTables:
    """One automaton's tables in one GPU's memory, as the kernels' leading arguments."""

    args: tuple  # CuPy arrays and NumPy scalars, in kernel parameter order
    device: int
    nbytes: int


# Uploaded tables, most recently used last, keyed by (CuPy module, device,
# content fingerprint) so that an automaton unpickled anew in every Dask task is
# uploaded once per worker, not once per partition. Bounded in bytes because
# worldwide metadata has one (mostly small) automaton per language.
_TABLE_CACHE: OrderedDict[tuple[str, int, str], DeviceTables] = OrderedDict()
_TABLE_CACHE_BYTES = 2 << 30
_TABLE_LOCK = threading.Lock()
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fingerprint(automaton: Automaton) -> str:
    """A content hash of the tables, computed once per Automaton object."""
    fp = _FINGERPRINTS.get(automaton)
    if fp is None:
        h = hashlib.blake2b(digest_size=16)
        for key in sorted(automaton.tables):
            a = np.ascontiguousarray(automaton.tables[key])
            h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.reshape(-1).view(np.uint8))
        fp = _FINGERPRINTS[automaton] = h.hexdigest()
    return fp


def device_tables(automaton: Automaton) -> DeviceTables:
    """The automaton's tables on the current GPU, uploaded once per process and reused."""
    cp = cupy()
    key = (cp.__name__, cp.cuda.runtime.getDevice(), _fingerprint(automaton))
    with _TABLE_LOCK:
        cached = _TABLE_CACHE.get(key)
        if cached is not None:
            _TABLE_CACHE.move_to_end(key)
            return cached
        args = tuple(cp.asarray(v) if isinstance(v, np.ndarray) else v for _, v in table_arguments(automaton.tables))
        tables = DeviceTables(args, key[1], sum(a.nbytes for a in args if isinstance(a, cp.ndarray)))
        _TABLE_CACHE[key] = tables
        total = sum(t.nbytes for t in _TABLE_CACHE.values())
        while total > _TABLE_CACHE_BYTES and len(_TABLE_CACHE) > 1:
            total -= _TABLE_CACHE.popitem(last=False)[1].nbytes
        return tables


def clear_device_tables() -> None:
    """Drop every cached upload (the memory returns to CuPy's pool)."""
    with _TABLE_LOCK:
        _TABLE_CACHE.clear()


# -- kernels -------------------------------------------------------------------------
@functools.cache
def _kernel(cp, name: str, device: int):
    with cp.cuda.Device(device):
        return kernels.raw_module(cp).get_function(name)


def _launch(name: str, n_rows: int, args: tuple) -> None:
    cp = cupy()
    if n_rows > 0:
        kernel = _kernel(cp, name, cp.cuda.runtime.getDevice())
        kernel(((n_rows + _BLOCK - 1) // _BLOCK,), (_BLOCK,), args)


def _exclusive_scan(counts):
    """[0, c0, c0 + c1, ...] as int64, len(counts) + 1 items."""
    cp = cupy()
    out = cp.zeros(len(counts) + 1, dtype=cp.int64)
    if len(counts):
        out[1:] = cp.cumsum(counts, dtype=cp.int64)
    return out


@dataclass(frozen=True)
class DeviceMatchResult:
    """Match sets in CSR form in GPU memory (CuPy arrays): row i matched
    entry_ids[offsets[i]:offsets[i+1]], ascending and unique."""

    offsets: Any  # cupy int64, n_rows + 1
    entry_ids: Any  # cupy int32

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def to_host(self) -> MatchResult:
        return MatchResult(self.offsets.get(), self.entry_ids.get())

    def counts(self, n_entries: int):
        """Rows matching each entry (docs/semantics.md section 5): cupy uint64."""
        return counts_gpu(self.entry_ids, n_entries)

    @staticmethod
    def concat(parts: Sequence["DeviceMatchResult"]) -> "DeviceMatchResult":
        cp = cupy()
        if not parts:
            return DeviceMatchResult(cp.zeros(1, cp.int64), cp.zeros(0, cp.int32))
        shifts = np.cumsum([0] + [len(p.entry_ids) for p in parts[:-1]])
        offsets = cp.concatenate([parts[0].offsets[:1]] + [p.offsets[1:] + int(s) for p, s in zip(parts, shifts)])
        return DeviceMatchResult(offsets, cp.concatenate([p.entry_ids for p in parts]))


@dataclass(frozen=True)
class MatchGroup:
    """Rows of a column that one automaton matches: every row (rows None), or
    the rows listed (device int64); `base` is added to every entry id (a
    language's first id in the global id space)."""

    tables: DeviceTables
    rows: Any = None
    base: int = 0


def match_groups(col: DeviceStrings, groups: Sequence[MatchGroup]) -> DeviceMatchResult:
    """One CSR over every row of `col`, each row matched by its group's
    automaton (rows in no group match nothing): two walks per group over its
    rows, one scan, no gather of strings."""
    cp = cupy()
    n = col.n_rows
    suffix = "<int64_t>" if col.wide else "<int32_t>"
    column = (col.chars, col.offsets, col.validity, np.int64(col.offset))

    def launch(kernel: str, g: MatchGroup, *tail) -> None:
        size = n if g.rows is None else len(g.rows)
        rows = NULL if g.rows is None else g.rows
        _launch(kernel + suffix, size, (*g.tables.args, *column, rows, np.int64(size), *tail))

    counts = cp.zeros(n, dtype=cp.int64)
    for g in groups:
        launch("gc::count_matches", g, counts)
    starts = _exclusive_scan(counts)
    total = int(starts[-1])
    raw = cp.empty(total, dtype=cp.int32)
    n_unique = cp.zeros(n, dtype=cp.int64)
    for g in groups:
        launch("gc::write_matches", g, starts, np.int32(g.base), raw, n_unique)
    if n and int((n_unique < 0).sum()):
        raise DeviceError("the GPU walk emitted other ids on its second pass than on its first: refusing the result")
    offsets = _exclusive_scan(n_unique)
    kept = int(offsets[-1])
    if kept == total:  # no row repeated an id: every region is already in place
        return DeviceMatchResult(offsets, raw)
    ids = cp.empty(kept, dtype=cp.int32)
    _launch("gc::compact_matches", n, (starts, raw, offsets, np.int64(n), ids))
    return DeviceMatchResult(offsets, ids)


def _match_strings(col: DeviceStrings, tables: DeviceTables) -> DeviceMatchResult:
    return match_groups(col, [MatchGroup(tables)])


def match_gpu_device(texts, automaton: Automaton) -> DeviceMatchResult:
    """Match sets of `texts` on the current GPU, left in GPU memory.

    texts: a cuDF Series/Index of strings or a pylibcudf strings Column (read
    in place), or anything match.as_string_array accepts (Arrow arrays,
    lists, pandas), copied to the GPU. Nulls match nothing.
    """
    require(need_cudf=is_device_column(texts))
    tables = device_tables(automaton)
    if is_device_column(texts):
        return _match_strings(strings_from_cudf(texts), tables)
    arr = as_string_array(texts)
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    parts = [_match_strings(strings_from_arrow(c), tables) for c in chunks if len(c)]
    return parts[0] if len(parts) == 1 else DeviceMatchResult.concat(parts)


def match_gpu(texts, automaton: Automaton) -> MatchResult:
    """match_gpu_device, brought back to host memory as a MatchResult (NumPy)."""
    return match_gpu_device(texts, automaton).to_host()


# -- counting and sampling -------------------------------------------------------------
def _device_array(values, dtype):
    cp = cupy()
    return cp.ascontiguousarray(cp.asarray(values, dtype=dtype))


def counts_gpu(entry_ids, n_entries: int):
    """Rows per entry (docs/semantics.md section 5) from CSR entry ids: cupy uint64, n_entries items."""
    cp = cupy()
    ids = _device_array(entry_ids, cp.int32)
    if ids.size == 0:
        return cp.zeros(n_entries, dtype=cp.uint64)
    return cp.bincount(ids, minlength=n_entries).astype(cp.uint64)


def uid_keys_gpu(uids):
    """The sampling key per uid on the GPU (cupy uint64), equal to balance.uid_keys:
    integer uids as their int64 bits, string uids hashed by gc::hash_bytes.

    uids: a cuDF Series or an Arrow array (chunked or not) of integers or strings.
    """
    cp = cupy()
    if is_device_column(uids):
        import pylibcudf as plc

        col = pylibcudf_column(uids)
        if col.type().id() != plc.TypeId.STRING:
            import cudf

            # A pylibcudf Column has no astype: take it as a Series (no copy) first.
            series = uids if isinstance(uids, (cudf.Series, cudf.Index)) else cudf.Series.from_pylibcudf(col)
            return cp.ascontiguousarray(series.astype("int64").values).view(cp.uint64)
        strings = strings_from_cudf(uids)
    else:
        uids = uids.combine_chunks() if isinstance(uids, pa.ChunkedArray) else uids
        if pa.types.is_integer(uids.type):
            host = uids.cast(pa.int64()).to_numpy(zero_copy_only=False).view(np.uint64)
            return cp.asarray(host)
        strings = strings_from_arrow(as_string_array(uids))
    keys = cp.empty(strings.n_rows, dtype=cp.uint64)
    suffix = "<int64_t>" if strings.wide else "<int32_t>"
    args = (strings.chars, strings.offsets, np.int64(strings.offset), np.int64(strings.n_rows), keys)
    _launch("gc::hash_rows" + suffix, strings.n_rows, args)
    return keys


def keep_rows_gpu(offsets, entry_ids, uid_keys, p, seed: int):
    """Keep decision per row (docs/semantics.md section 7) on the GPU: cupy bool, len(uid_keys) items.

    The same gc::keep_row as gpu_curate._core.keep_rows, so both engines keep
    the same rows. Inputs may be NumPy or CuPy arrays.
    """
    cp = cupy()
    offsets = _device_array(offsets, cp.int64)
    ids = _device_array(entry_ids, cp.int32)
    uid_keys = _device_array(uid_keys, cp.uint64)
    p = _device_array(p, cp.float64)
    n = len(uid_keys)
    if len(offsets) != n + 1:
        raise InputError(f"offsets must have len(uid_keys) + 1 = {n + 1} items, got {len(offsets)}")
    keep = cp.zeros(n, dtype=cp.bool_)
    _launch("gc::keep_rows", n, (offsets, ids, uid_keys, p, np.uint64(seed), np.int64(n), keep))
    return keep


def invalid_utf8_gpu(col: DeviceStrings):
    """Per row: 1 where the text is not null and not valid UTF-8 (cupy uint8)."""
    cp = cupy()
    out = cp.zeros(col.n_rows, dtype=cp.uint8)
    suffix = "<int64_t>" if col.wide else "<int32_t>"
    args = (col.chars, col.offsets, col.validity, np.int64(col.offset), np.int64(col.n_rows), out)
    _launch("gc::invalid_utf8_rows" + suffix, col.n_rows, args)
    return out


def derived_uid_keys_gpu(prefix: str, rows):
    """Sampling keys of the derived uids prefix + row (rows: device int64), as matchindex.uid_keys."""
    cp = cupy()
    data = np.frombuffer(prefix.encode("utf-8"), np.uint8)
    keys = cp.empty(len(rows), dtype=cp.uint64)
    prefix_on_device = cp.asarray(data) if len(data) else cp.zeros(1, dtype=cp.uint8)
    args = (prefix_on_device, np.int64(len(data)), rows, np.int64(len(rows)), keys)
    _launch("gc::derived_uid_keys", len(rows), args)
    return keys


def sparse_counts_gpu(entry_ids, n_entries: int) -> tuple[np.ndarray, np.ndarray]:
    """(entry ids, rows matching each) of one partition's match sets, brought
    to the host sparse and small, as count.sparse_counts: a bincount over the
    global id space where the ids are dense enough, else a sort."""
    cp = cupy()
    ids = _device_array(entry_ids, cp.int32)
    if ids.size == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.uint64)
    if n_entries <= 8 * ids.size:  # the same rule as the CPU's sparse_counts
        dense = cp.bincount(ids, minlength=n_entries)
        present = cp.flatnonzero(dense)
        return present.astype(cp.int32).get(), dense[present].astype(cp.uint64).get()
    present, counts = cp.unique(ids, return_counts=True)
    return present.astype(cp.int32).get(), counts.astype(cp.uint64).get()
