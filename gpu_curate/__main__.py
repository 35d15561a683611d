"""`python -m gpu_curate ...`: the gpu-curate command, without the console script."""

from .cli import main

main()
