"""A NumPy-backed stand-in for the CuPy calls of the GPU engine: the emulated
device (GPU_CURATE_EMULATE=1; gpu_curate.gpu_backend.cupy() returns this module).

Device memory is host memory that only this module touches; kernels are
kernels/gpu_curate.cu compiled for the host (gpu_curate._emulated_device).
It is strict where a GPU is, and stricter where CuPy is silent:

  * no implicit conversion to NumPy (np.asarray(a) raises, as in CuPy);
  * a kernel argument must be a device array of exactly the parameter's
    element type, or a NumPy scalar of exactly the parameter's type
    (CuPy would pass the bytes of anything else as they are); no host arrays;
  * guard bytes around every allocation, checked after every launch: an
    out-of-bounds write is an EmulationError naming the kernel and argument;
  * `empty` memory is filled with 0xCD, so reading what no one wrote shows;
  * every byte that crosses host<->device is counted by call site:
    transfers() / reset_transfers(), so tests can assert what moves.

What it cannot check: register use, occupancy, timing, streams and
asynchronous ordering, memory coalescing, races between threads (the kernels
have none by design), cuDF. Slow: a development facility, never a GPU.
"""

from __future__ import annotations

import numpy as np
from numpy import (  # noqa: F401  (dtypes, as cupy.int32 etc.)
    bool_,
    float32,
    float64,
    int8,
    int16,
    int32,
    int64,
    uint8,
    uint16,
    uint32,
    uint64,
)

from ._array import DEVICE_METHODS, device_function, from_host, ndarray, new  # noqa: F401
from ._kernels import EmulationError, RawKernel, RawModule  # noqa: F401
from ._memory import Transfers, reset_transfers, transfers  # noqa: F401

EMULATED = True  # tells this module from the real CuPy

# NumPy functions that CuPy has with the same meaning, run on device buffers
# (arguments must be device arrays; results are device arrays). Adding one is
# one name here.
DEVICE_FUNCTIONS = (
    "arange",
    "argsort",
    "bincount",
    "concatenate",
    "cumsum",
    "diff",
    "flatnonzero",
    "full",
    "isin",
    "searchsorted",
    "take",
    "unique",
    "zeros",
    "zeros_like",
)
for _name in DEVICE_FUNCTIONS:
    globals()[_name] = device_function(_name, getattr(np, _name))


def empty(shape, dtype=float64, order="C") -> ndarray:
    """Uninitialized device memory: every byte 0xCD until a kernel writes it."""
    return new(shape, dtype)


def asarray(a, dtype=None, order=None) -> ndarray:
    """A device array: `a` itself when already one of ours (converted on the
    device if dtype differs), else `a` copied from the host (counted)."""
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    if hasattr(a, "__cuda_array_interface__"):
        raise TypeError(f"a {type(a).__name__} lives on a real GPU, not on the emulated device")
    # As CuPy: converted on the host, then copied.
    return from_host(np.ascontiguousarray(np.asarray(a, dtype=dtype)))


def array(a, dtype=None, copy=True, order="K") -> ndarray:
    """cupy.array: a new device array (copied on the device, or from the host)."""
    if isinstance(a, ndarray) and copy:
        return a.copy() if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    return asarray(a, dtype)


def ascontiguousarray(a, dtype=None) -> ndarray:
    """Device array in C order: `a` itself when it already is one (of dtype)."""
    if not isinstance(a, ndarray):
        raise TypeError(f"cupy.ascontiguousarray: needs a device array, got {type(a).__name__}")
    a = asarray(a, dtype)
    return a if a.flags.c_contiguous else a.copy()


def asnumpy(a, stream=None, order="C", out=None, blocking=True) -> np.ndarray:
    """Copies a device array to the host (counted); host values pass through."""
    return a.get(order=order, out=out) if isinstance(a, ndarray) else np.asarray(a, order=order)


class CUDARuntimeError(RuntimeError):
    pass


class _Device:
    """cupy.cuda.Device: the emulated device is device 0, the only one."""

    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            raise CUDARuntimeError(
                f"cudaErrorInvalidDevice: invalid device ordinal {self.id} (the emulated device is 0)"
            )
        self.compute_capability = "90"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def use(self) -> None:
        pass

    def synchronize(self) -> None:
        pass  # launches return when the kernel has finished


class _Runtime:
    @staticmethod
    def getDevice() -> int:
        return 0

    @staticmethod
    def getDeviceCount() -> int:
        return 1

    @staticmethod
    def deviceSynchronize() -> None:
        pass


class cuda:  # noqa: N801  (the cupy.cuda namespace)
    Device = _Device
    runtime = _Runtime
    CUDARuntimeError = CUDARuntimeError


dtype = np.dtype  # after the functions above, whose parameters of that name shadow it
