"""Match texts against metadata: the public `match` and its CSR result."""

from __future__ import annotations

import os
from typing import Literal

import pyarrow as pa

from . import _core
from .automaton import Automaton
from .errors import InputError
from .metadata import Metadata
from .results import MatchResult
from .texts import as_string_array, column_buffers

Device = Literal["cpu", "gpu", "auto"]


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def match_cpu(arr: pa.Array, automaton: Automaton, threads: int | None = None) -> MatchResult:
    """The CPU engine: kernels/walk.cuh compiled for the host, over Arrow buffers."""
    if isinstance(arr, pa.ChunkedArray):
        return MatchResult.concat([match_cpu(c, automaton, threads) for c in arr.chunks])
    col = column_buffers(arr)
    offs, ids = _core.match(
        automaton.tables, col.data, col.offsets, col.validity, col.offset, col.n_rows, threads or default_threads()
    )
    return MatchResult(offs, ids)


def resolve_device(device: Device) -> Literal["cpu", "gpu"]:
    """`gpu` needs CuPy and a device (Arrow input reaches the GPU without
    cuDF; a cuDF column brings cuDF with it), or the emulated device under
    GPU_CURATE_EMULATE=1; `auto` picks a real GPU when cuDF, CuPy and a
    device are all present, and never the emulated device."""
    if device == "cpu":
        return "cpu"
    from . import gpu_backend

    if device == "gpu":
        gpu_backend.require(need_cudf=False)
        return "gpu"
    if device == "auto":
        return "gpu" if not gpu_backend.emulated() and gpu_backend.available() else "cpu"
    raise InputError(f"unknown device {device!r}; choose cpu, gpu or auto")


def match(
    texts,
    metadata: Metadata | Automaton,
    device: Device = "cpu",
    threads: int | None = None,
) -> MatchResult:
    """Match sets of `texts` (docs/semantics.md section 4).

    texts: list of str/None, a pyarrow (large_)string or binary array or
    chunked array, or a pandas Series. Nulls match nothing.
    """
    automaton = metadata if isinstance(metadata, Automaton) else Automaton.for_metadata(metadata)
    arr = as_string_array(texts)
    if resolve_device(device) == "gpu":
        from . import gpu_engine

        return gpu_engine.match_gpu(arr, automaton)
    return match_cpu(arr, automaton, threads)
