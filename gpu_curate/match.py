"""Match texts against metadata: the public `match` and its CSR result."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import pyarrow as pa

from . import _core
from .automaton import Automaton
from .errors import InputError
from .metadata import Metadata

Device = Literal["cpu", "gpu", "auto"]


@dataclass(frozen=True)
class MatchResult:
    """Match sets in CSR form: row i matched entry_ids[offsets[i]:offsets[i+1]]
    (ascending, unique)."""

    offsets: np.ndarray  # int64, len(texts) + 1
    entry_ids: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, i: int) -> np.ndarray:
        return self.entry_ids[self.offsets[i] : self.offsets[i + 1]]

    def to_lists(self) -> list[list[int]]:
        return [self.row(i).tolist() for i in range(len(self))]

    def to_arrow(self) -> pa.LargeListArray:
        """The match sets as a list<int32> column (no copy of the ids)."""
        return pa.LargeListArray.from_arrays(pa.array(self.offsets), pa.array(self.entry_ids))

    def counts(self, n_entries: int) -> np.ndarray:
        """Rows matching each entry (SPEC section 5), uint64."""
        return np.bincount(self.entry_ids, minlength=n_entries).astype(np.uint64)

    @staticmethod
    def concat(parts: Sequence["MatchResult"]) -> "MatchResult":
        if not parts:
            return MatchResult(np.zeros(1, np.int64), np.zeros(0, np.int32))
        starts = np.cumsum([0] + [len(p.entry_ids) for p in parts[:-1]])
        offsets = np.concatenate([[0]] + [p.offsets[1:] + s for p, s in zip(parts, starts)])
        return MatchResult(offsets.astype(np.int64), np.concatenate([p.entry_ids for p in parts]))


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


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def match_cpu(arr: pa.Array, automaton: Automaton, threads: int | None = None) -> MatchResult:
    """The CPU engine: kernels/walk.cuh compiled for the host, over Arrow buffers."""
    if isinstance(arr, pa.ChunkedArray):
        return MatchResult.concat([match_cpu(c, automaton, threads) for c in arr.chunks])
    validity, offsets, data = arr.buffers()
    wide = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    offsets = np.frombuffer(offsets, dtype=np.int64 if wide else np.int32) if offsets else np.zeros(1, np.int32)
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    validity = np.frombuffer(validity, dtype=np.uint8) if validity is not None and arr.null_count else None
    offs, ids = _core.match(
        automaton.tables, data, offsets, validity, arr.offset, len(arr), threads or default_threads()
    )
    return MatchResult(offs, ids)


def resolve_device(device: Device) -> Literal["cpu", "gpu"]:
    """`gpu` needs CuPy and a device (Arrow input reaches the GPU without
    cuDF; a cuDF column brings cuDF with it); `auto` picks the GPU when cuDF,
    CuPy and a device are all present, as DESIGN.md says."""
    if device == "cpu":
        return "cpu"
    from . import gpu_engine

    if device == "gpu":
        gpu_engine.require(need_cudf=False)
        return "gpu"
    if device == "auto":
        return "gpu" if gpu_engine.available() else "cpu"
    raise InputError(f"unknown device {device!r}; choose cpu, gpu or auto")


def match(
    texts,
    metadata: Metadata | Automaton,
    device: Device = "cpu",
    threads: int | None = None,
) -> MatchResult:
    """Match sets of `texts` (SPEC section 4).

    texts: list of str/None, a pyarrow (large_)string or binary array or
    chunked array, or a pandas Series. Nulls match nothing.
    """
    automaton = metadata if isinstance(metadata, Automaton) else Automaton.for_metadata(metadata)
    arr = as_string_array(texts)
    if resolve_device(device) == "gpu":
        from . import gpu_engine

        return gpu_engine.match_gpu(arr, automaton)
    return match_cpu(arr, automaton, threads)
