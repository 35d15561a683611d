"""Match texts against metadata: the public `match` and its CSR result."""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import pyarrow as pa

from . import _core
from .automaton import Automaton
from .errors import InputError
from .metadata import Metadata
from .results import MatchResult
from .texts import as_string_array

Device = Literal["cpu", "gpu", "auto"]


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def match_cpu(arr: pa.Array, automaton: Automaton, threads: int | None = None, per_row: bool = False) -> MatchResult:
    """The CPU engine: kernels/walk.cuh compiled for the host, over Arrow buffers.

    Rows are walked in batches (gpu_curate/host_walk.h); per_row=True runs
    the per-row walk a GPU thread runs instead (slower: tests compare the two).
    """
    if isinstance(arr, pa.ChunkedArray):
        return MatchResult.concat([match_cpu(c, automaton, threads, per_row) for c in arr.chunks])
    validity, offsets, data = arr.buffers()
    wide = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    offsets = np.frombuffer(offsets, dtype=np.int64 if wide else np.int32) if offsets else np.zeros(1, np.int32)
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    validity = np.frombuffer(validity, dtype=np.uint8) if validity is not None and arr.null_count else None
    offs, ids = _core.match(
        automaton.tables, data, offsets, validity, arr.offset, len(arr), threads or default_threads(), per_row
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
