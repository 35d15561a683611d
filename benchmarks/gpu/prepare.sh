#!/usr/bin/env bash
# On a machine with PyPI and ../shared/data: gather what a lent GPU machine
# lacks, into git-ignored folders of the repository, so that run.sh there is
# one command. That machine has Python 3.12 with CuPy, pyarrow, pandas, typer,
# rich, fsspec and pybind11, but no Dask, dask-cuda, cuDF or pyahocorasick,
# and no network.
#   .whl/   Python 3.12 wheels of Dask and distributed (the versions installed
#           here), their few pure-Python needs, and pyahocorasick (the baseline)
#   .data/  the real corpora and metadata lists the tests and benchmarks read
# Carry both (device tool: carry [".whl", ".data"]; 3 MB + 16 MB).
set -euo pipefail
cd "$(dirname "$0")/../.."
version() { python3 -m pip show "$1" | sed -n "s/^Version: //p" | grep . || { echo "prepare.sh: $1 is not installed here (activate the project's environment)" >&2; exit 1; }; }
dask_version=$(version dask)
distributed_version=$(version distributed)
rm -rf .whl && mkdir -p .whl .data
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "dask==$dask_version" "distributed==$distributed_version" partd locket tblib zict tornado pyahocorasick
cp -r "${GPU_CURATE_SHARED_DATA:-../shared/data}/." .data/
du -sh .whl .data
