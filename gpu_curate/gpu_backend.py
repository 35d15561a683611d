"""Which CuPy the GPU engine runs on, and whether it can run here.

    cupy()            the real CuPy, or with GPU_CURATE_EMULATE=1 the emulated
                      device's stand-in (gpu_curate.emulated_cupy)
    emulated()        is the switch on
    device_label(d)   "gpu (emulated)" for the GPU under the switch: what logs
                      and summary.json say, never a bare "gpu"
    missing / available / require    what stands in the way of the GPU engine

The emulated device runs the GPU engine's own kernels on the host, one thread
of the grid at a time: a development facility (slow), chosen only by the
switch, never by `--device auto`. Nothing here imports CuPy or cuDF until
asked.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings

from .errors import DeviceError

EMULATE_ENV = "GPU_CURATE_EMULATE"
MIN_CUPY = (14, 2)  # before 14.2 its on-disk cache of name_expressions kernels misses: every worker recompiles
_ON, _OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def emulated() -> bool:
    """True when GPU_CURATE_EMULATE asks for the emulated device (read at every call)."""
    value = os.environ.get(EMULATE_ENV, "").strip().lower()
    if value not in _ON + _OFF:
        raise DeviceError(f"{EMULATE_ENV}={os.environ[EMULATE_ENV]!r}: use 1 (emulated device) or 0")
    return value in _ON


def cupy():
    """The CuPy module the GPU engine calls: the real one, or the stand-in under the switch."""
    if emulated():
        from . import emulated_cupy

        return emulated_cupy
    import cupy

    return cupy


def device_label(device: str) -> str:
    """How a resolved device is reported: the emulated device is never just "gpu"."""
    return "gpu (emulated)" if device == "gpu" and emulated() else device


@functools.cache
def _probe(emulate: bool) -> tuple[str | None, str | None, str | None]:
    """What stands in the way of (CuPy, a CUDA device, cuDF), None where nothing does.

    Cached: the answer does not change within a process, and asking CUDA for
    its devices costs a driver initialization.
    """
    if emulate:
        no_device = None
        if importlib.util.find_spec("gpu_curate._emulated_device") is None:
            no_device = "the emulated device (gpu_curate._emulated_device is not built: pip install -e .)"
        return None, no_device, "cuDF (the emulated device has none)"
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

                if _version(cupy.__version__) < MIN_CUPY:
                    no_cupy = (
                        f"CuPy >= 14.2 (this is {cupy.__version__}, whose kernel cache makes every worker compile anew)"
                    )
                if cupy.cuda.runtime.getDeviceCount() < 1:
                    no_device = "a CUDA device"
                else:
                    cupy.cuda.nvrtc.getVersion()  # the kernels are compiled by NVRTC on first use
        except ImportError as e:
            no_cupy, no_device = f"a working CuPy ({e})", "a CUDA device (unknown without CuPy)"
        except Exception as e:  # CUDARuntimeError: no driver, no device, driver too old; NVRTCError
            if "nvrtc" in f"{type(e).__name__} {e}".lower():
                no_cupy = f"NVRTC, which compiles the kernels (pip install nvidia-cuda-nvrtc; {_first(e)})"
            else:
                no_device = f"a CUDA device ({_first(e)})"
    no_cudf = "cuDF" if importlib.util.find_spec("cudf") is None else None
    return no_cupy, no_device, no_cudf


def missing(need_cudf: bool = True) -> list[str]:
    """The GPU engine's requirements absent here, as phrases for an error message."""
    no_cupy, no_device, no_cudf = _probe(emulated())
    return [m for m in (no_cupy, no_device, no_cudf if need_cudf else None) if m]


def available(need_cudf: bool = True) -> bool:
    """True when the GPU engine can run here (CuPy, a CUDA device and, by default, cuDF)."""
    return not missing(need_cudf)


def require(need_cudf: bool = True) -> None:
    """Raise DeviceError, in one line naming what is missing, unless available()."""
    absent = missing(need_cudf)
    if absent:
        if emulated():
            raise DeviceError(f"the emulated GPU engine ({EMULATE_ENV}=1) needs {', '.join(absent)}")
        raise DeviceError(
            f"the GPU engine needs {', '.join(absent)}; "
            "install gpu_curate[gpu] on a machine with an NVIDIA GPU, or use --device cpu"
        )


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _first(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
