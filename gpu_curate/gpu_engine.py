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
    available / require            is the engine usable here, or why not

Kernels run on CuPy's current stream. cuDF works on the legacy default
stream, which orders itself with every other blocking stream, so reading a
cuDF column in place needs no extra synchronization.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import threading
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from . import kernels
from .automaton import Automaton
from .errors import DeviceError, InputError
from .results import MatchResult
from .texts import as_string_array

# Threads per block: one row per thread; 256 keeps enough warps in flight to
# hide the walk's memory latency without tuning per GPU.
_BLOCK = 256
# A null device pointer for a kernel's pointer parameter (CuPy passes a NumPy
# scalar by value, so this is 8 zero bytes where the kernel reads a pointer).
_NULL = np.uint64(0)


# -- availability ----------------------------------------------------------------
@functools.cache
def _probe() -> tuple[str | None, str | None, str | None]:
    """What stands in the way of (CuPy, a CUDA device, cuDF), None where nothing does.

    Cached: the answer does not change within a process, and asking CUDA for
    its devices costs a driver initialization.
    """
    if importlib.util.find_spec("cupy") is None:
        no_cupy: str | None = "CuPy"
        no_device: str | None = "a CUDA device (unknown without CuPy)"
    else:
        no_cupy = no_device = None
        try:
            # CuPy warns about CUDA paths on machines without CUDA; that is
            # exactly the case this function reports, so the warning is noise.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import cupy

                if cupy.cuda.runtime.getDeviceCount() < 1:
                    no_device = "a CUDA device"
        except ImportError as e:
            no_cupy, no_device = f"a working CuPy ({e})", "a CUDA device (unknown without CuPy)"
        except Exception as e:  # CUDARuntimeError: no driver, no device, driver too old
            no_device = f"a CUDA device ({e})"
    no_cudf = "cuDF" if importlib.util.find_spec("cudf") is None else None
    return no_cupy, no_device, no_cudf


def missing(need_cudf: bool = True) -> list[str]:
    """The GPU engine's requirements absent here, as phrases for an error message."""
    no_cupy, no_device, no_cudf = _probe()
    return [m for m in (no_cupy, no_device, no_cudf if need_cudf else None) if m]


def available(need_cudf: bool = True) -> bool:
    """True when the GPU engine can run here (CuPy, a CUDA device and, by default, cuDF)."""
    return not missing(need_cudf)


def require(need_cudf: bool = True) -> None:
    """Raise DeviceError, in one line naming what is missing, unless available()."""
    absent = missing(need_cudf)
    if absent:
        raise DeviceError(
            f"the GPU engine needs {', '.join(absent)}; "
            "install gpu_curate[gpu] on a machine with an NVIDIA GPU, or use --device cpu"
        )


# -- automaton tables in GPU memory ------------------------------------------------
def table_arguments(tables: dict[str, np.ndarray]) -> list[tuple[str, Any]]:
    """Automaton.tables as (name, value) in the order of GC_TABLE_PARAMS in
    kernels/gpu_curate.cu: contiguous arrays of the kernels' dtypes, and NumPy
    scalars for the sizes. Host-side only (no CuPy), so CI checks the order."""

    def array(key: str, dtype) -> np.ndarray:
        return np.ascontiguousarray(tables[key], dtype=dtype)

    def slots(key: str) -> np.ndarray:  # (n_slots, 2) uint64 -> flat gc::Slot words
        return array(key, np.uint64).reshape(-1)

    def trie(a: str) -> list[tuple[str, Any]]:
        edges = slots(f"{a}_edge_slots")
        return [
            (f"{a}_n_nodes", np.int32(tables[f"{a}_n_nodes"])),
            (f"{a}_n_symbols", np.int32(tables[f"{a}_n_symbols"])),
            (f"{a}_edge_slots", edges),
            (f"{a}_edge_mask", np.uint64(len(edges) // 2 - 1)),
            (f"{a}_out_lists", array(f"{a}_out_lists", np.int32)),
        ]

    def automaton(a: str) -> list[tuple[str, Any]]:  # a trie with suffix links
        *head, out_lists = trie(a)
        return [*head, (f"{a}_cfail", array(f"{a}_cfail", np.int32)), out_lists]

    vocab = slots("vocab_slots")
    return [
        *trie("tok"),
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


# Uploaded tables, most recently used last, keyed by (device, content
# fingerprint) so that an automaton unpickled anew in every Dask task is
# uploaded once per worker, not once per partition. Bounded in bytes because
# worldwide metadata has one (mostly small) automaton per language.
_TABLE_CACHE: OrderedDict[tuple[int, str], DeviceTables] = OrderedDict()
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
    import cupy

    key = (cupy.cuda.runtime.getDevice(), _fingerprint(automaton))
    with _TABLE_LOCK:
        cached = _TABLE_CACHE.get(key)
        if cached is not None:
            _TABLE_CACHE.move_to_end(key)
            return cached
        args = tuple(cupy.asarray(v) if isinstance(v, np.ndarray) else v for _, v in table_arguments(automaton.tables))
        tables = DeviceTables(args, key[0], sum(a.nbytes for a in args if isinstance(a, cupy.ndarray)))
        _TABLE_CACHE[key] = tables
        total = sum(t.nbytes for t in _TABLE_CACHE.values())
        while total > _TABLE_CACHE_BYTES and len(_TABLE_CACHE) > 1:
            total -= _TABLE_CACHE.popitem(last=False)[1].nbytes
        return tables


def clear_device_tables() -> None:
    """Drop every cached upload (the memory returns to CuPy's pool)."""
    with _TABLE_LOCK:
        _TABLE_CACHE.clear()


# -- string columns in GPU memory ----------------------------------------------------
@dataclass(frozen=True)
class _DeviceStrings:
    """A string column in GPU memory as the kernels' column arguments
    (gc::StringColumn): row i is chars[offsets[offset + i]:offsets[offset + i + 1]],
    null where validity bit offset + i is 0."""

    chars: Any  # CuPy uint8 array, or a device address as np.uint64
    offsets: Any  # likewise, int32 or int64 items
    validity: Any  # likewise; _NULL when no row is null
    offset: int
    n_rows: int
    wide: bool  # int64 offsets
    owner: Any = None  # keeps foreign (cuDF) buffers alive while kernels read them


@dataclass(frozen=True)
class ArrowWindow:
    """The host bytes an Arrow string array's rows use, laid out as the
    kernels read them (gc::StringColumn); what is copied to the GPU."""

    chars: np.ndarray  # uint8
    offsets: np.ndarray  # int32 or int64, rebased to chars
    validity: np.ndarray | None  # whole bytes of the validity bitmap; None: no nulls
    offset: int  # first row's index in offsets and validity, < 8


def arrow_window(arr: pa.Array) -> ArrowWindow:
    """Only the bytes the rows use, so a small slice of a big array copies little.

    Validity is cut at whole bytes, so a slice keeps its offset modulo 8 and
    the kernels' slice handling runs on Arrow input too, not only on cuDF's.
    """
    wide = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    validity, offsets, chars = arr.buffers()[:3]
    n, first = len(arr), arr.offset - arr.offset % 8
    if offsets is None:  # a zero-length array may have no buffers
        window = np.zeros(arr.offset - first + n + 1, np.int64 if wide else np.int32)
    else:
        window = np.frombuffer(offsets, dtype=np.int64 if wide else np.int32)[first : arr.offset + n + 1]
    lo, hi = int(window[0]), int(window[-1])
    valid = None
    if validity is not None and arr.null_count:
        valid = np.frombuffer(validity, dtype=np.uint8)[first // 8 : (arr.offset + n + 7) // 8]
    return ArrowWindow(
        chars=np.frombuffer(chars, dtype=np.uint8)[lo:hi] if chars is not None else np.zeros(0, np.uint8),
        offsets=window - window.dtype.type(lo),
        validity=valid,
        offset=arr.offset - first,
    )


def _strings_from_arrow(arr: pa.Array) -> _DeviceStrings:
    import cupy

    w = arrow_window(arr)
    return _DeviceStrings(
        chars=cupy.asarray(w.chars),
        offsets=cupy.asarray(w.offsets),
        validity=_NULL if w.validity is None else cupy.asarray(w.validity),
        offset=w.offset,
        n_rows=len(arr),
        wide=w.offsets.dtype == np.int64,
    )


def is_device_column(obj) -> bool:
    """True for a cuDF Series/Index or pylibcudf Column: input the GPU engine
    reads in place (match.match must hand it over before any Arrow conversion)."""
    return type(obj).__module__.split(".")[0] in ("cudf", "pylibcudf")


def _pylibcudf_column(obj):
    """The pylibcudf.Column under a cuDF Series or Index, without a copy.

    cuDF >= 25.02: Series/Index.to_pylibcudf() -> (Column, metadata). A
    cuDF-internal column takes mode="read" in 25.x and no argument in 26.x.
    """
    if type(obj).__module__.startswith("pylibcudf"):
        return obj
    import cudf

    to_plc = getattr(obj, "to_pylibcudf", None)
    if to_plc is None:
        raise DeviceError(f"cannot read a {type(obj).__name__} in place: cuDF >= 25.02 is needed")
    if isinstance(obj, (cudf.Series, cudf.Index)):
        col = to_plc()
    else:
        try:
            col = to_plc(mode="read")
        except TypeError:
            col = to_plc()
    return col[0] if isinstance(col, tuple) else col


def _address(buf) -> np.uint64:
    """Device address of a pylibcudf buffer: a gpumemoryview in cuDF 25.x, a
    Span (ptr, size, element_type) in 26.x; both carry .ptr."""
    return _NULL if buf is None else np.uint64(buf.ptr)


def _strings_from_cudf(obj) -> _DeviceStrings:
    """Reads a cuDF strings column where it lies (chars, offsets child, null
    mask, slice offset); libcudf's bit order is Arrow's."""
    import cupy
    import pylibcudf as plc

    col = _pylibcudf_column(obj)
    if col.type().id() != plc.TypeId.STRING:
        raise InputError(f"texts must be a strings column, got cuDF type {col.type().id()!r}")
    n = col.size()
    if col.num_children() == 0:
        # libcudf's strings column with no offsets child: every row is empty
        # or null. Give it real (all-zero) offsets and let the walk decide.
        return _DeviceStrings(
            chars=_NULL,
            offsets=cupy.zeros(col.offset() + n + 1, dtype=cupy.int32),
            validity=_address(col.null_mask()),
            offset=col.offset(),
            n_rows=n,
            wide=False,
            owner=col,
        )
    if col.num_children() != 1:
        raise DeviceError("this cuDF keeps string bytes in a child column; cuDF >= 25.02 is needed")
    offsets = col.child(0)
    kind = offsets.type().id()
    if kind not in (plc.TypeId.INT32, plc.TypeId.INT64):
        raise InputError(f"unexpected strings offsets type {kind!r}")
    wide = kind == plc.TypeId.INT64
    itemsize = 8 if wide else 4
    # The offsets child is not sliced with its parent; skip its own offset, if any.
    offsets_at = np.uint64(int(_address(offsets.data())) + offsets.offset() * itemsize)
    return _DeviceStrings(
        chars=_address(col.data()),
        offsets=offsets_at,
        validity=_address(col.null_mask()),
        offset=col.offset(),
        n_rows=n,
        wide=wide,
        owner=col,
    )


# -- kernels -------------------------------------------------------------------------
@functools.cache
def _kernel(name: str, device: int):
    import cupy

    with cupy.cuda.Device(device):
        return kernels.raw_module().get_function(name)


def _launch(name: str, n_rows: int, args: tuple) -> None:
    import cupy

    if n_rows > 0:
        kernel = _kernel(name, cupy.cuda.runtime.getDevice())
        kernel(((n_rows + _BLOCK - 1) // _BLOCK,), (_BLOCK,), args)


def _exclusive_scan(counts):
    """[0, c0, c0 + c1, ...] as int64, len(counts) + 1 items."""
    import cupy

    out = cupy.zeros(len(counts) + 1, dtype=cupy.int64)
    if len(counts):
        out[1:] = cupy.cumsum(counts, dtype=cupy.int64)
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
        """Rows matching each entry (SPEC section 5): cupy uint64."""
        return counts_gpu(self.entry_ids, n_entries)

    @staticmethod
    def concat(parts: Sequence["DeviceMatchResult"]) -> "DeviceMatchResult":
        import cupy

        if not parts:
            return DeviceMatchResult(cupy.zeros(1, cupy.int64), cupy.zeros(0, cupy.int32))
        shifts = np.cumsum([0] + [len(p.entry_ids) for p in parts[:-1]])
        offsets = cupy.concatenate([parts[0].offsets[:1]] + [p.offsets[1:] + int(s) for p, s in zip(parts, shifts)])
        return DeviceMatchResult(offsets, cupy.concatenate([p.entry_ids for p in parts]))


def _match_strings(col: _DeviceStrings, tables: DeviceTables) -> DeviceMatchResult:
    import cupy

    n = col.n_rows
    suffix = "<int64_t>" if col.wide else "<int32_t>"
    column = (*tables.args, col.chars, col.offsets, col.validity, np.int64(col.offset), np.int64(n))
    counts = cupy.empty(n, dtype=cupy.int64)
    _launch("gc::count_matches" + suffix, n, (*column, counts))
    starts = _exclusive_scan(counts)
    total = int(starts[-1])
    raw = cupy.empty(total, dtype=cupy.int32)
    n_unique = cupy.empty(n, dtype=cupy.int64)
    _launch("gc::write_matches" + suffix, n, (*column, starts, raw, n_unique))
    offsets = _exclusive_scan(n_unique)
    kept = int(offsets[-1])
    if kept == total:  # no row repeated an id: every region is already in place
        return DeviceMatchResult(offsets, raw)
    ids = cupy.empty(kept, dtype=cupy.int32)
    _launch("gc::compact_matches", n, (starts, raw, offsets, np.int64(n), ids))
    return DeviceMatchResult(offsets, ids)


def match_gpu_device(texts, automaton: Automaton) -> DeviceMatchResult:
    """Match sets of `texts` on the current GPU, left in GPU memory.

    texts: a cuDF Series/Index of strings or a pylibcudf strings Column (read
    in place), or anything match.as_string_array accepts (Arrow arrays,
    lists, pandas), copied to the GPU. Nulls match nothing.
    """
    require(need_cudf=is_device_column(texts))
    tables = device_tables(automaton)
    if is_device_column(texts):
        return _match_strings(_strings_from_cudf(texts), tables)
    arr = as_string_array(texts)
    chunks = arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]
    parts = [_match_strings(_strings_from_arrow(c), tables) for c in chunks if len(c)]
    return parts[0] if len(parts) == 1 else DeviceMatchResult.concat(parts)


def match_gpu(texts, automaton: Automaton) -> MatchResult:
    """match_gpu_device, brought back to host memory as a MatchResult (NumPy)."""
    return match_gpu_device(texts, automaton).to_host()


# -- counting and sampling -------------------------------------------------------------
def _device_array(values, dtype):
    import cupy

    return cupy.ascontiguousarray(cupy.asarray(values, dtype=dtype))


def counts_gpu(entry_ids, n_entries: int):
    """Rows per entry (SPEC section 5) from CSR entry ids: cupy uint64, n_entries items."""
    import cupy

    ids = _device_array(entry_ids, cupy.int32)
    if ids.size == 0:
        return cupy.zeros(n_entries, dtype=cupy.uint64)
    return cupy.bincount(ids, minlength=n_entries).astype(cupy.uint64)


def uid_keys_gpu(uids):
    """The sampling key per uid on the GPU (cupy uint64), equal to balance.uid_keys:
    integer uids as their int64 bits, string uids hashed by gc::hash_bytes.

    uids: a cuDF Series or an Arrow array (chunked or not) of integers or strings.
    """
    import cupy

    if is_device_column(uids):
        import pylibcudf as plc

        col = _pylibcudf_column(uids)
        if col.type().id() != plc.TypeId.STRING:
            return cupy.ascontiguousarray(uids.astype("int64").to_cupy()).view(cupy.uint64)
        strings = _strings_from_cudf(uids)
    else:
        uids = uids.combine_chunks() if isinstance(uids, pa.ChunkedArray) else uids
        if pa.types.is_integer(uids.type):
            host = uids.cast(pa.int64()).to_numpy(zero_copy_only=False).view(np.uint64)
            return cupy.asarray(host)
        strings = _strings_from_arrow(as_string_array(uids))
    keys = cupy.empty(strings.n_rows, dtype=cupy.uint64)
    suffix = "<int64_t>" if strings.wide else "<int32_t>"
    args = (strings.chars, strings.offsets, np.int64(strings.offset), np.int64(strings.n_rows), keys)
    _launch("gc::hash_rows" + suffix, strings.n_rows, args)
    return keys


def keep_rows_gpu(offsets, entry_ids, uid_keys, p, seed: int):
    """Keep decision per row (SPEC section 7) on the GPU: cupy bool, len(uid_keys) items.

    The same gc::keep_row as gpu_curate._core.keep_rows, so both engines keep
    the same rows. Inputs may be NumPy or CuPy arrays.
    """
    import cupy

    offsets = _device_array(offsets, cupy.int64)
    ids = _device_array(entry_ids, cupy.int32)
    uid_keys = _device_array(uid_keys, cupy.uint64)
    p = _device_array(p, cupy.float64)
    n = len(uid_keys)
    if len(offsets) != n + 1:
        raise InputError(f"offsets must have len(uid_keys) + 1 = {n + 1} items, got {len(offsets)}")
    keep = cupy.zeros(n, dtype=cupy.bool_)
    _launch("gc::keep_rows", n, (offsets, ids, uid_keys, p, np.uint64(seed), np.int64(n), keep))
    return keep
