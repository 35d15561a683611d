"""The C++/CUDA sources shared by the CPU and GPU engines (installed as gpu_curate.kernels)."""

from pathlib import Path

KERNEL_DIR = Path(__file__).parent
