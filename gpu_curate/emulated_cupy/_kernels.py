"""RawModule / RawKernel of the emulated device: the host build of
kernels/gpu_curate.cu (gpu_curate._emulated_device), launched after every
argument is checked against the kernel's C++ parameter list."""

from __future__ import annotations

import functools
import os

import numpy as np

from .. import kernels
from ..errors import DeviceError
from ._array import ndarray

# C spelling of a parameter's element type, for messages.
_C_TYPES = {"bool": "bool", "float32": "float", "float64": "double"}


class EmulationError(RuntimeError):
    """A kernel did what a GPU would report as an error (an out-of-bounds write)."""


@functools.cache
def _device():
    from .. import _emulated_device

    return _emulated_device


def _c_type(kind: str, dtype: str, writable: bool) -> str:
    base = _C_TYPES.get(dtype, f"{dtype}_t")
    return base if kind == "scalar" else f"{'' if writable else 'const '}{base}*"


class RawModule:
    """cupy.RawModule(code=kernels.source(), ...) on the emulated device.

    The kernels were compiled into gpu_curate._emulated_device at install
    time; `code` must be the very source they were compiled from.
    """

    def __init__(self, *, code=None, path=None, options=(), backend="nvrtc", name_expressions=None, **unused):
        if code is None:
            raise NotImplementedError("the emulated device loads kernels from source code only (code=...)")
        built = _device().SOURCE_SHA256
        if kernels.source_fingerprint(code) != built:
            raise DeviceError(
                "the emulated device was built from other kernel sources than the ones given "
                "(kernels/ changed since install): rebuild it with pip install -e . "
                "(or python setup.py build_ext --inplace)"
            )
        self._params = _device().kernels()
        self.name_expressions = tuple(name_expressions or ())
        unknown = [n for n in self.name_expressions if n not in self._params]
        if unknown:
            raise ValueError(f"the emulated device has no kernel {', '.join(unknown)}")
        self.options = tuple(options)

    def get_function(self, name: str) -> "RawKernel":
        if name not in self.name_expressions:
            raise ValueError(f"{name}: not among this module's name_expressions (as CuPy requires)")
        return RawKernel(name, self._params[name])


class RawKernel:
    """One kernel: kernel(grid, block, args) runs it over the grid on the host."""

    def __init__(self, name: str, params: list[tuple[str, str, bool, int]]):
        self.name = name
        self.params = params

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None, enable_cooperative_groups=False):
        if shared_mem:
            raise ValueError(f"{self.name}: the emulated device has no shared memory (shared_mem={shared_mem})")
        if enable_cooperative_groups:
            raise ValueError(f"{self.name}: the emulated device has no cooperative groups")
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"{self.name}: args must be a tuple, got {type(args).__name__}")
        if len(args) != len(self.params):
            raise TypeError(f"{self.name} takes {len(self.params)} arguments, got {len(args)}")
        packed, pointed = [], []
        for k, (arg, param) in enumerate(zip(args, self.params)):
            packed.append(self._pack(k, arg, *param))
            if isinstance(arg, ndarray):
                pointed.append((k, arg, param))
        _device().launch(self.name, _dims(grid, "grid"), _dims(block, "block"), packed, _workers())
        for k, arg, param in pointed:
            if not arg._allocation.guards_intact():
                raise EmulationError(
                    f"{self.name} wrote outside argument {k} ({_c_type(*param[:3])}, {arg.size} items): "
                    "an out-of-bounds write (the emulated device's guard bytes were overwritten)"
                )

    def _pack(self, k: int, arg, kind: str, dtype: str, writable: bool, size: int) -> bytes:
        """The bytes CUDA copies for argument k, after checking what CuPy would pass silently."""
        where = f"{self.name}: argument {k} ({_c_type(kind, dtype, writable)})"
        if isinstance(arg, np.ndarray):
            raise TypeError(
                f"{where} is a host (NumPy) array: a GPU cannot read host memory; copy it with cupy.asarray"
            )
        if kind == "pointer":
            if isinstance(arg, ndarray):
                if arg.dtype != np.dtype(dtype):
                    raise TypeError(f"{where} is a device array of {arg.dtype}: the kernel would misread its bytes")
                if not arg.flags.c_contiguous:
                    raise TypeError(f"{where} is a strided view: the kernel reads contiguous items")
                return np.uint64(arg._data.ctypes.data).tobytes()
            if isinstance(arg, np.uint64) and arg == 0:
                return arg.tobytes()  # a null pointer
            raise TypeError(f"{where}: needs a device array (or np.uint64(0) for null), got {type(arg).__name__}")
        if not isinstance(arg, np.generic) or arg.dtype != np.dtype(dtype):
            got = (
                f"{type(arg).__name__} of {arg.dtype}" if isinstance(arg, (np.generic, ndarray)) else type(arg).__name__
            )
            raise TypeError(
                f"{where}: needs np.{np.dtype(dtype).name}(...), got {got}: CuPy would pass its bytes as they are"
            )
        packed = arg.tobytes()
        assert len(packed) == size, (where, len(packed), size)
        return packed


def _dims(d, what: str) -> list[int]:
    """A CUDA grid or block extent as three ints (CuPy takes tuples of 1 to 3)."""
    if not isinstance(d, tuple) or not 1 <= len(d) <= 3 or not all(isinstance(x, (int, np.integer)) for x in d):
        raise TypeError(f"{what} must be a tuple of 1 to 3 ints, got {d!r}")
    if any(x < 1 for x in d):
        raise ValueError(f"{what} extents must be positive, got {d!r}")
    return [int(x) for x in d] + [1] * (3 - len(d))


def _workers() -> int:
    """Host threads that share a launch's blocks."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
