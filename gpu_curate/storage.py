"""Writing outputs so that a reader never sees half a file.

Every output goes to a temporary name beside its final path and is renamed
into place, so a crash leaves either the old file or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq


def _current_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, before any worker thread writes
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


def write_atomic(path: str | Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp)` on a temporary name beside `path`, then rename it to
    `path`: readers never see half a file, and a crash leaves none."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet_atomic(table: pa.Table, path: str | Path) -> None:
    """Write to a temporary name beside `path`, then rename: readers never see half a file."""
    # No dictionary encoding: alt-texts and uids are nearly unique, and trying it costs ~15% of the write.
    write_atomic(path, lambda tmp: pq.write_table(table, tmp, use_dictionary=False))


def write_json_atomic(obj, path: str | Path) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, sort_keys=True)
            f.write("\n")

    write_atomic(path, write)


def read_json(path: str | Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)
