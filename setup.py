# Two extensions built from kernels/ at install time (a wheel carries them
# prebuilt; no compiler needed at run time):
#   gpu_curate._core              the CPU engine: the shared headers for the host
#   gpu_curate._emulated_device   the GPU engine's kernels (gpu_curate.cu) for the
#                                 host under kernels/emulation.cuh: the emulated
#                                 device behind GPU_CURATE_EMULATE=1 (README)
import importlib.util
from pathlib import Path

from pybind11.setup_helpers import Pybind11Extension
from setuptools import setup

KERNELS = Path(__file__).resolve().parent / "kernels"
HEADERS = ["kernels/common.cuh", "kernels/walk.cuh", "kernels/sample.cuh"]


def kernel_source_fingerprint() -> str:
    """kernels.source_fingerprint(kernels.source()), without importing gpu_curate."""
    spec = importlib.util.spec_from_file_location("gpu_curate_kernel_sources", KERNELS / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.source_fingerprint(module.source())


setup(
    ext_modules=[
        Pybind11Extension(
            "gpu_curate._core",
            ["gpu_curate/_core.cpp"],
            include_dirs=["kernels"],
            depends=HEADERS,
            cxx_std=17,
            extra_compile_args=["-O3"],
        ),
        Pybind11Extension(
            "gpu_curate._emulated_device",
            ["gpu_curate/_emulated_device.cpp"],
            include_dirs=["kernels"],
            depends=[*HEADERS, "kernels/gpu_curate.cu", "kernels/emulation.cuh"],
            define_macros=[("GC_SOURCE_SHA256", f'"{kernel_source_fingerprint()}"')],
            cxx_std=17,
            extra_compile_args=["-O2"],
        ),
    ]
)
