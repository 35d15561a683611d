"""A stand-in object store for tests that kill the command line: memory://
lives and dies with its process, so a killed upload is inspected in
`diskstore://`, an fsspec filesystem (not a LocalFileSystem, so gpu_curate
treats it as a remote store) whose objects are files under $DISKSTORE_ROOT.

`python -c "import storelib; storelib.main()" ARGS` is `gpu-curate ARGS`
with the protocol registered (fsspec's registry is per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fsspec
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem

ROOT_ENV = "DISKSTORE_ROOT"


class DiskStore(DirFileSystem):
    protocol = "diskstore"

    def __init__(self, *args, **kwargs):
        super().__init__(path=os.environ[ROOT_ENV], fs=LocalFileSystem(auto_mkdir=True))


def register() -> None:
    fsspec.register_implementation("diskstore", DiskStore, clobber=True)


def main() -> None:
    register()
    sys.argv[0] = "gpu-curate"
    from gpu_curate.cli import main as cli_main

    cli_main()


def cli(root: Path, *args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`gpu-curate ARGS` in a fresh process whose diskstore:// lives in `root`."""
    tests = str(Path(__file__).parent)
    path = os.pathsep.join(p for p in (tests, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-c", "import storelib; storelib.main()", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path, ROOT_ENV: str(root), **(env or {})},
        timeout=timeout,
    )
