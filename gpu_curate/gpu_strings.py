"""String columns in GPU memory, as the kernels read them (gc::StringColumn).

    DeviceStrings        chars, offsets (32/64-bit), validity, slice offset
    strings_from_arrow   an Arrow array copied to the device (only the bytes its rows use)
    strings_from_cudf    a cuDF / pylibcudf strings column read where it lies
    cudf_spill_lock      held while kernels read cuDF buffers by address

cuDF is imported only by the functions that read cuDF columns.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import DeviceError, InputError
from .gpu_backend import cupy

# A null device pointer for a kernel's pointer parameter (CuPy passes a NumPy
# scalar by value, so this is 8 zero bytes where the kernel reads a pointer).
NULL = np.uint64(0)


@dataclass(frozen=True)
class DeviceStrings:
    """A string column in GPU memory as the kernels' column arguments
    (gc::StringColumn): row i is chars[offsets[offset + i]:offsets[offset + i + 1]],
    null where validity bit offset + i is 0."""

    chars: Any  # CuPy uint8 array, or a device address as np.uint64
    offsets: Any  # likewise, int32 or int64 items
    validity: Any  # likewise; NULL when no row is null
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


def strings_from_arrow(arr: pa.Array) -> DeviceStrings:
    cp = cupy()
    w = arrow_window(arr)
    return DeviceStrings(
        chars=cp.asarray(w.chars),
        offsets=cp.asarray(w.offsets),
        validity=NULL if w.validity is None else cp.asarray(w.validity),
        offset=w.offset,
        n_rows=len(arr),
        wide=w.offsets.dtype == np.int64,
    )


def is_device_column(obj) -> bool:
    """True for a cuDF Series/Index or pylibcudf Column: input the GPU engine
    reads in place (match.match must hand it over before any Arrow conversion)."""
    return type(obj).__module__.split(".")[0] in ("cudf", "pylibcudf")


def pylibcudf_column(obj):
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
    return NULL if buf is None else np.uint64(buf.ptr)


def strings_from_cudf(obj) -> DeviceStrings:
    """Reads a cuDF strings column where it lies (chars, offsets child, null
    mask, slice offset); libcudf's bit order is Arrow's."""
    cp = cupy()
    import pylibcudf as plc

    col = pylibcudf_column(obj)
    if col.type().id() != plc.TypeId.STRING:
        raise InputError(f"texts must be a strings column, got cuDF type {col.type().id()!r}")
    n = col.size()
    if col.num_children() == 0:
        # libcudf's strings column with no offsets child: every row is empty
        # or null. Give it real (all-zero) offsets and let the walk decide.
        return DeviceStrings(
            chars=NULL,
            offsets=cp.zeros(col.offset() + n + 1, dtype=cp.int32),
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
    return DeviceStrings(
        chars=_address(col.data()),
        offsets=offsets_at,
        validity=_address(col.null_mask()),
        offset=col.offset(),
        n_rows=n,
        wide=wide,
        owner=col,
    )


def cudf_spill_lock(uses_cudf: bool):
    """cuDF's spill lock while kernels read cuDF buffers by address: with
    spilling on, cuDF may otherwise move a buffer to host memory under them."""
    if not uses_cudf:
        return contextlib.nullcontext()
    from cudf.core.buffer import acquire_spill_lock

    return acquire_spill_lock()
