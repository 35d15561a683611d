"""Writing outputs so that a reader never sees half a file.

Every output goes to a temporary name beside its final path, `.<name>.<8
random characters>.tmp`, and is renamed into place, so a crash leaves
either the old file or the new one (plus, at worst, a temporary that the
next run removes: remove_temporaries). Directories are published the same
way, and removed by first renaming them to such a name. Each publishing
rename passes faults.checkpoint, where the test suite kills or fails runs.

A failing write (a full disk, no permission) is one OutputError naming the
file, never a traceback; what was written before stays valid.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import OutputError
from .fs import quote_path
from .faults import checkpoint

_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what mkstemp and _temporary_name make


def _current_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, before any worker thread writes
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


def _temporary_name(path: Path) -> Path:
    return path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"


def _reason(e: OSError) -> str:
    """The errno text of an OSError (Arrow's have none: then its message, on one line)."""
    return os.strerror(e.errno) if e.errno else " ".join(str(e).split())


def write_atomic(path: str | Path, write: Callable[[str], None]) -> None:
    """Call `write(tmp)` on a temporary name beside `path`, then rename it to
    `path`: readers never see half a file, and a crash leaves none."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes 0600; give the file the usual mode
        checkpoint(path, "before-rename")
        os.replace(tmp, path)
        tmp = None
        checkpoint(path, "after-rename")
    except OSError as e:
        raise OutputError(f"{quote_path(path)}: cannot write ({_reason(e)})") from e
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


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


def write_npy_atomic(array: np.ndarray, path: str | Path) -> None:
    """A .npy file (what np.load reads). Written by hand, not by np.save:
    that reports a full disk as "N requested and M written", without errno."""
    array = np.ascontiguousarray(array)
    if array.dtype.hasobject:
        raise ValueError("object arrays are not written (they would need pickle)")

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(array))
            f.write(array.reshape(-1).view(np.uint8).data)

    write_atomic(path, write)


def read_json(path: str | Path):
    """An output's JSON (a marker, run.json, a summary); a damaged one is one line naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        why = _reason(e) if isinstance(e, OSError) else " ".join(str(e).split())
        raise OutputError(f"{quote_path(path)}: cannot read ({why})") from e


def replace_symlink(path: str | Path, target: str) -> None:
    """Point the link `path` at `target` in one step (rename(2) over the old
    link): a reader resolves either the old target or the new one."""
    path = Path(path)
    tmp = _temporary_name(path)
    try:
        os.symlink(target, tmp)
        checkpoint(path, "before-rename")
        os.replace(tmp, path)
        tmp = None
        checkpoint(path, "after-rename")
    except OSError as e:
        raise OutputError(f"{quote_path(path)}: cannot link to {quote_path(target)} ({_reason(e)})") from e
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def publish_dir(tmp: str | Path, path: str | Path) -> None:
    """Rename a directory written under a temporary name to `path` (which must not exist)."""
    try:
        checkpoint(path, "before-rename")
        os.rename(tmp, path)
        checkpoint(path, "after-rename")
    except OSError as e:
        raise OutputError(f"{quote_path(path)}: cannot publish ({_reason(e)})") from e


def temporary_dir(path: str | Path) -> Path:
    """A fresh temporary name beside `path`, for a directory to publish_dir later."""
    return _temporary_name(Path(path))


def remove_tree(path: str | Path) -> None:
    """Remove a file or directory: first renamed to a temporary name (one
    step), so a crash during the deletion never leaves part of it under its
    real name; remove_temporaries finishes what a crash left."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    trash = _temporary_name(path)
    try:
        checkpoint(path, "before-rename")
        os.rename(path, trash)
        checkpoint(path, "after-rename")
        _remove(trash)
    except OSError as e:
        raise OutputError(f"{quote_path(path)}: cannot remove ({_reason(e)})") from e


def temporaries(root: str | Path) -> list[str]:
    """The temporaries that killed writes and removals left under `root`
    (only names this module makes), outermost first."""
    found = []
    for parent, dirs, files in os.walk(root):  # links are not followed
        for name in dirs + files:
            if _TEMPORARY.match(name):
                found.append(os.path.join(parent, name))
        dirs[:] = [d for d in dirs if not _TEMPORARY.match(d)]
    return found


def remove_temporaries(root: str | Path) -> int:
    """Remove temporaries(root); returns how many. Call it only while
    holding root's lock, so that no running write loses its file."""
    found = temporaries(root)
    for path in found:
        try:
            _remove(path)
        except OSError as e:
            raise OutputError(f"{quote_path(path)}: cannot remove a leftover temporary ({_reason(e)})") from e
    return len(found)


def _remove(path) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)
