"""Texts as Arrow string arrays: the input both engines read in place."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .errors import InputError


def as_string_array(texts) -> pa.Array | pa.ChunkedArray:
    """Texts as an Arrow (large_)string/binary array, without copying Arrow input."""
    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        arr = texts
    elif hasattr(texts, "__array__") and hasattr(texts, "dtype") and hasattr(texts, "index"):  # pandas Series
        arr = pa.Array.from_pandas(texts)
    else:
        arr = pa.array(list(texts), type=pa.large_string())
    t = arr.type
    if not (
        pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)
    ):
        if pa.types.is_null(t):
            return arr.cast(pa.large_string())
        raise InputError(f"texts must be strings, got Arrow type {t}")
    return arr


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, int64 offsets starting at 0) of a string/binary array without nulls."""
    arr = arr.cast(pa.large_binary())
    _, offsets, data = arr.buffers()
    off = np.frombuffer(offsets, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    raw = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return raw[off[0] : off[-1]], off - off[0]
