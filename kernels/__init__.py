"""The C++/CUDA sources shared by the CPU and GPU engines (installed as gpu_curate.kernels).

The CPU engine is these headers compiled into gpu_curate._core at install
time; the GPU engine is gpu_curate.cu compiled by NVRTC through CuPy at run
time, once per process (`raw_module`); the emulated device is gpu_curate.cu
compiled for the host under emulation.cuh into gpu_curate._emulated_device
at install time. This module imports only the standard library: setup.py
loads it to fingerprint the source it compiles.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

KERNEL_DIR = Path(__file__).parent
GPU_SOURCE = KERNEL_DIR / "gpu_curate.cu"

# The kernels of gpu_curate.cu as NVRTC name expressions. int32_t/int64_t
# name the offset type of the string column (Arrow string / large_string).
KERNEL_NAMES = (
    "gc::count_matches<int32_t>",
    "gc::count_matches<int64_t>",
    "gc::write_matches<int32_t>",
    "gc::write_matches<int64_t>",
    "gc::compact_matches",
    "gc::keep_rows",
    "gc::hash_rows<int32_t>",
    "gc::hash_rows<int64_t>",
    "gc::invalid_utf8_rows<int32_t>",
    "gc::invalid_utf8_rows<int64_t>",
    "gc::derived_uid_keys",
)
NVRTC_OPTIONS = ("-std=c++17",)

_LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
_PRAGMA_ONCE = re.compile(r"^\s*#\s*pragma\s+once\b")


def source(path: Path = GPU_SOURCE) -> str:
    """`path` with its local ("...") includes inlined, each file once.

    Why not NVRTC's -I: CuPy's on-disk kernel cache is keyed by the source
    text and options only, so with -I an edited header would be served from
    a stale cached binary; inlined, every line of every header is in the key.
    `#line` directives keep compiler errors pointing at the real file and
    line. Includes are inlined wherever they stand (our headers put none
    under #if), and `#pragma once` lines become blank.
    """
    out: list[str] = []
    _inline(Path(path).resolve(), set(), out)
    return "\n".join(out) + "\n"


def _inline(path: Path, seen: set[Path], out: list[str]) -> None:
    if path in seen:
        return
    seen.add(path)
    out.append(f'#line 1 "{path}"')
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        include = _LOCAL_INCLUDE.match(line)
        if include:
            _inline((path.parent / include.group(1)).resolve(), seen, out)
            out.append(f'#line {number + 1} "{path}"')
        elif _PRAGMA_ONCE.match(line):
            out.append("")
        else:
            out.append(line)


def source_fingerprint(text: str) -> str:
    """SHA-256 of a source() text without its #line directives (which hold
    absolute paths): equal for equal kernel code wherever it is installed.
    The emulated device carries the fingerprint of the source it was built
    from, and refuses to stand in for any other."""
    lines = [line for line in text.splitlines() if not line.startswith("#line ")]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@functools.cache
def raw_module(cupy):
    """The kernels as a RawModule of `cupy` (the real CuPy, or the emulated
    device's stand-in: gpu_curate.gpu_backend.cupy()), built once per process.

    CuPy compiles on first use for the current device and keeps the binary in
    its kernel cache (~/.cupy/kernel_cache), so later processes skip NVRTC.
    Dask-CUDA runs one process per GPU, so one module per process suffices.
    """
    return cupy.RawModule(code=source(), options=NVRTC_OPTIONS, name_expressions=KERNEL_NAMES)
