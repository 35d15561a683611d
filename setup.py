# The CPU engine: kernels/ compiled for the host as a Python extension at
# install time (a wheel carries it prebuilt; no compiler needed at run time).
from pybind11.setup_helpers import Pybind11Extension
from setuptools import setup

setup(
    ext_modules=[
        Pybind11Extension(
            "gpu_curate._core",
            ["gpu_curate/_core.cpp"],
            include_dirs=["kernels"],
            depends=["kernels/common.cuh", "kernels/walk.cuh", "kernels/sample.cuh", "gpu_curate/host_walk.h"],
            cxx_std=17,
            extra_compile_args=["-O3"],
        )
    ]
)
