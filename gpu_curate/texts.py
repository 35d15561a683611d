"""Texts as Arrow string arrays: the input both engines read in place."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa

from . import _core
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


class ColumnBuffers(NamedTuple):
    """An Arrow string/binary array as the kernels read it (gc::StringColumn):
    row i is data[offsets[offset + i]:offsets[offset + i + 1]], null where
    bit offset + i of validity is 0 (validity None: no nulls)."""

    data: np.ndarray  # uint8
    offsets: np.ndarray  # int32 or int64
    validity: np.ndarray | None  # uint8 bitmap
    offset: int
    n_rows: int


def column_buffers(arr: pa.Array) -> ColumnBuffers:
    """Views of the array's own buffers: nothing is copied."""
    validity, offsets, data = arr.buffers()[:3]
    wide = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    return ColumnBuffers(
        data=np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8),
        offsets=np.frombuffer(offsets, dtype=np.int64 if wide else np.int32) if offsets else np.zeros(1, np.int32),
        validity=np.frombuffer(validity, dtype=np.uint8) if validity is not None and arr.null_count else None,
        offset=arr.offset,
        n_rows=len(arr),
    )


def invalid_utf8_rows(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per row: True where the text is not null and not valid UTF-8."""
    if isinstance(texts, pa.ChunkedArray):
        chunks = [invalid_utf8_rows(c) for c in texts.chunks]
        return np.concatenate(chunks) if chunks else np.zeros(0, bool)
    return _core.invalid_utf8(*column_buffers(texts))


def text_as_string(table: pa.Table, column: str) -> pa.Table:
    """The text column as strings where it was read as bytes (text formats),
    each row's bytes untouched: a text that is not valid UTF-8 (it matched on
    its bytes) is written as it was, and counted by the caller."""
    import pyarrow.compute as pc

    i = table.column_names.index(column)
    kind = table.schema.field(i).type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        as_string = pc.CastOptions(target_type=pa.large_string(), allow_invalid_utf8=True)
        table = table.set_column(i, column, pc.cast(table.column(i), options=as_string))
    return table
