"""Pool files in: finding them (and saying what was skipped) and cutting them
into partitions. Reading: readers.py; what identifies them: identity.py.

A pool is one or more files (parquet, jsonl, csv/tsv, txt, each optionally
.gz; WebDataset .tar/.tar.gz shards), directories (searched recursively) or
globs, as local paths or fsspec URLs. Inside directories and globs, names
starting with `.` or `_`, img2dataset's `*_stats.json` and a tar beside a
parquet of the same name (img2dataset's two copies of one shard) are skipped
and listed; what cannot be read (an unreadable directory, a broken symlink
named like a pool file, a file without read permission) is refused. Files
named one by one are read as named.

The pool is cut into partitions of at most `partition_rows` rows: row ranges
of a parquet file (reading only the row groups that overlap), line ranges of
an uncompressed txt/tsv file (found by one streaming pass over its newlines),
or one whole csv, jsonl, .gz or tar file. Each partition is read on its own
(readers.py), so memory is bounded by the partition, never by the pool.
"""

from __future__ import annotations

import glob
import os
import posixpath
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import PurePosixPath

import numpy as np
import pyarrow as pa

from .errors import InputError
from .fs import filesystem_error, is_url, one_line, open_file, quote_path, split_url
from .readers import LINE_FORMATS, delimited_header, parquet_file
from .partition import Partition  # noqa: F401  (re-exported: the unit plan_partitions makes)
from .readers import read_partition, read_rows  # noqa: F401  (re-exported: the pool's readers)
from .webdataset import DEFAULT_TAR_TEXT, check_tar_text

FORMATS = {
    ".parquet": "parquet",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "txt",
    ".tar": "tar",
    ".tgz": "tar",
}

HIDDEN = "name starts with . or _"
STATS = "img2dataset stats file"
NOT_A_POOL_FORMAT = "not a pool format"
DIR_LINK = "symlink to a directory (not followed)"
NOT_REGULAR = "not a regular file"
BROKEN_LINK = "broken symlink"
# img2dataset writes each shard as NNNNN.parquet and NNNNN.tar: the parquet is read
# (columnar; note that it also lists the failed downloads, see its status column).
TWIN = "img2dataset tar beside its parquet (the parquet is read)"


def file_format(path: str) -> str:
    suffixes = [s.lower() for s in PurePosixPath(str(path).replace(os.sep, "/")).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise InputError(
            f"{quote_path(path)}: unknown pool format (expected {', '.join(sorted(FORMATS))}, optionally .gz)"
        )
    return fmt


def _is_pool_name(path: str) -> bool:
    try:
        file_format(path)
    except InputError:
        return False
    return True


@dataclass(frozen=True)
class PoolFile:
    """One pool file: where it is, its name in uids and the summary, and what identifies its contents."""

    path: str  # a local path (as found) or a URL
    key: str  # the resolved local path or the URL: the same file however it was named
    format: str
    size: int
    version: str  # local: mtime in ns; remote: the store's ETag / generation / mtime, whichever it gives
    name: str = ""  # relative to the pool's common root: the derived-uid prefix


@dataclass
class Pool:
    files: list[PoolFile]
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"[, "read_instead"]}, in discovery order


def find_pool(inputs: list[str], exclude: str | None = None) -> Pool:
    """The pool's files, in input order (each input's files sorted), each once;
    `exclude` (the run's --out) is never part of it."""
    exclude_real = os.path.realpath(exclude) if exclude and not is_url(exclude) else None
    files: list[PoolFile] = []
    skipped: list[dict] = []
    for item in map(str, inputs):
        fs, path = split_url(item)
        before = len(skipped)
        found = _find_local(item, path, exclude_real, skipped) if fs is None else _find_remote(item, fs, path, skipped)
        if not found:
            reasons = Counter(s["reason"] for s in skipped[before:])
            why = "; ".join(f"{reason} ({n})" for reason, n in reasons.most_common())
            raise InputError(f"{quote_path(item)}: no pool files found" + (f" (skipped: {why})" if why else ""))
        files.extend(found)
    seen: set[str] = set()
    unique = [f for f in files if not (f.key in seen or seen.add(f.key))]
    return Pool(_named(unique), skipped)


def _find_local(item: str, path: str, exclude_real: str | None, skipped: list[dict]) -> list[PoolFile]:
    if os.path.isdir(path):
        if exclude_real and os.path.realpath(path) == exclude_real:
            raise InputError(f"{quote_path(item)}: is the run's --out; give the pool and the outputs different places")
        listed = _walk(path, exclude_real, skipped)
    elif glob.has_magic(path):
        listed = _glob_local(path, exclude_real, skipped)
    elif os.path.isfile(path):
        return [_local_file(path)]  # named on its own: read as named
    elif os.path.islink(path):
        raise InputError(f"{quote_path(item)}: {BROKEN_LINK} (its target is missing)")
    else:
        raise InputError(f"{quote_path(item)}: no such file or directory")
    return [_local_file(p) for p in _pool_files(listed, skipped)]


def _glob_local(pattern: str, exclude_real: str | None, skipped: list[dict]) -> list[str]:
    """Files matched by a glob, with the directory rules: no hidden path
    component below the glob's fixed root, --out left out, and every
    directory the pattern can reach readable (Python's glob passes over an
    unreadable one in silence)."""
    root = _glob_root(pattern, os.sep)
    reach = None if "**" in pattern else pattern[len(root) :].strip(os.sep).count(os.sep) + 1
    _walk(root or os.curdir, exclude_real, [], depth=reach)  # raises on an unreadable directory
    listed, hidden_tops = [], set()
    for p in sorted(glob.glob(pattern, recursive=True)):
        if exclude_real and _inside(p, exclude_real):
            continue  # the run's own outputs
        top = _hidden_top(root, p, os.sep)
        if top is not None:
            if top not in hidden_tops:  # a hidden directory is listed once, not file by file
                hidden_tops.add(top)
                skipped.append({"path": top, "reason": HIDDEN})
        elif os.path.islink(p) and not os.path.exists(p):
            _broken_link(p, skipped)
        elif os.path.isdir(p):
            if reach is not None:  # `pool/2024-*` names directories; with ** glob lists their files itself
                listed.extend(_walk(p, exclude_real, skipped))
        elif os.path.isfile(p):
            listed.append(p)
        else:
            skipped.append({"path": p, "reason": NOT_REGULAR})
    return listed


def _glob_root(pattern: str, sep: str = "/") -> str:
    """The directory part of a glob before its first wildcard ("" for none, "/" for the root)."""
    parts = pattern.split(sep)
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    return sep.join(parts[:fixed]) or (sep if pattern.startswith(sep) else "")


def _hidden_top(root: str, path: str, sep: str) -> str | None:
    """The path down to the first component below `root` whose name starts with . or _, or None."""
    prefix = root if not root or root.endswith(sep) else root + sep
    parts = (path[len(prefix) :] if path.startswith(prefix) else path).split(sep)
    hidden = next((i for i, part in enumerate(parts) if part.startswith((".", "_"))), None)
    return None if hidden is None else prefix + sep.join(parts[: hidden + 1])


def _inside(path: str, directory: str) -> bool:
    real = os.path.realpath(path)
    return real == directory or real.startswith(directory + os.sep)


def _walk(top: str, exclude_real: str | None, skipped: list[dict], depth: int | None = None) -> list[str]:
    """Files under `top` (down to `depth` levels; None: all), sorted by name at
    each level. Unlike Path.rglob, an unreadable directory is an error, not
    silently empty."""
    try:
        with os.scandir(top) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        raise InputError(
            f"{quote_path(top)}: cannot list this pool directory ({e.strerror or one_line(e)}); "
            "make it readable or move it out of the pool"
        ) from None
    files = []
    for e in entries:
        if e.name.startswith((".", "_")):
            skipped.append({"path": e.path, "reason": HIDDEN})
        elif e.is_symlink() and not os.path.exists(e.path):
            _broken_link(e.path, skipped)
        elif e.is_dir():
            if exclude_real and os.path.realpath(e.path) == exclude_real:
                continue  # the run's own outputs: never pool files
            if e.is_symlink():
                skipped.append({"path": e.path, "reason": DIR_LINK})
            elif depth is None or depth > 1:
                files.extend(_walk(e.path, exclude_real, skipped, None if depth is None else depth - 1))
        elif e.is_file():
            files.append(e.path)
        else:
            skipped.append({"path": e.path, "reason": NOT_REGULAR})
    return files


def _broken_link(path: str, skipped: list[dict]) -> None:
    if _is_pool_name(path):  # meant to be read: refuse rather than leave its rows out
        raise InputError(f"{quote_path(path)}: {BROKEN_LINK} (its target is missing); fix it or remove it")
    skipped.append({"path": path, "reason": BROKEN_LINK})


def _pool_files(paths: list[str], skipped: list[dict]) -> list[str]:
    """Listed files that are pool files: not stats, not unknown formats, not a tar twin of a parquet."""
    kept = []
    for p in paths:
        if p.lower().endswith("_stats.json"):
            skipped.append({"path": p, "reason": STATS})
        elif not _is_pool_name(p):
            skipped.append({"path": p, "reason": NOT_A_POOL_FORMAT})
        else:
            kept.append(p)
    parquet = {p[: -len(".parquet")]: p for p in kept if p.lower().endswith(".parquet")}
    result = []
    for p in kept:
        twin = parquet.get(_tar_stem(p)) if file_format(p) == "tar" else None
        if twin is not None:
            skipped.append({"path": p, "reason": TWIN, "read_instead": twin})
        else:
            result.append(p)
    return result


def _tar_stem(path: str) -> str:
    lower = path.lower()
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if lower.endswith(suffix):
            return path[: -len(suffix)]
    return path


def _local_file(path: str) -> PoolFile:
    fmt = file_format(path)
    if not os.access(path, os.R_OK):
        raise InputError(f"{quote_path(path)}: no read permission")
    st = os.stat(path)
    return PoolFile(path, os.path.realpath(path), fmt, st.st_size, str(st.st_mtime_ns))


def _find_remote(url: str, fs, path: str, skipped: list[dict]) -> list[PoolFile]:
    magic = glob.has_magic(path)
    try:
        if magic:
            infos = fs.glob(path, detail=True)
        elif fs.isdir(path):
            infos = fs.find(path, detail=True)
        else:  # named on its own: read as named
            info = fs.info(path)
            return [PoolFile(url, fs.unstrip_protocol(path), file_format(path), int(info["size"]), _version(info))]
    except InputError:
        raise
    except Exception as e:  # each store raises its own types (see fs.filesystem_error)
        raise filesystem_error(url, e) from None
    root = _glob_root(path) if magic else path.rstrip("/")
    listed, hidden_tops = {}, set()
    for p in sorted(infos):
        if infos[p].get("type", "file") != "file":
            continue
        top = _hidden_top(root, p, "/")
        if top is None:
            listed[fs.unstrip_protocol(p)] = infos[p]
        elif top not in hidden_tops:  # a hidden directory is listed once, not file by file
            hidden_tops.add(top)
            skipped.append({"path": fs.unstrip_protocol(top), "reason": HIDDEN})
    return [
        PoolFile(u, u, file_format(u), int(listed[u]["size"]), _version(listed[u]))
        for u in _pool_files(list(listed), skipped)
    ]


# What stores report that changes when an object is rewritten; each gives some of these.
_VERSION_KEYS = ("ETag", "etag", "generation", "blob_id", "VersionId", "mtime", "LastModified", "updated", "created")


def _version(info: dict) -> str:
    values = []
    for k in _VERSION_KEYS:
        if info.get(k) is not None:
            v = info[k]
            values.append(f"{k}={v.timestamp() if isinstance(v, datetime) else v}")
    return ",".join(values)


def _named(files: list[PoolFile]) -> list[PoolFile]:
    """Name each file relative to the pool's common root (the derived-uid
    prefix: `pool.parquet:17`). Local and remote files mixed in one pool
    keep their full path or URL as name, so no two names collide."""
    if not files:
        return files
    schemes = {f.key.split("://")[0] if is_url(f.key) else "" for f in files}
    if len(schemes) > 1:
        return [replace(f, name=f.key) for f in files]
    if not is_url(files[0].key):
        root = os.path.commonpath([os.path.dirname(f.key) for f in files])
        return [replace(f, name=os.path.relpath(f.key, root)) for f in files]
    bare = [f.key.split("://", 1)[1] for f in files]
    root = posixpath.commonpath([posixpath.dirname(b) for b in bare])
    return [replace(f, name=posixpath.relpath(b, root)) for f, b in zip(files, bare)]


# -- partitions ---------------------------------------------------------------------------
def plan_partitions(
    files: list[PoolFile], partition_rows: int, text_column: str = "text", tar_text: str = DEFAULT_TAR_TEXT
) -> list[Partition]:
    """Cut the pool into partitions of at most `partition_rows` rows: row
    ranges of parquet files, line ranges of uncompressed txt/tsv files, whole
    files otherwise (one per tar: its texts, never its images, are held)."""
    check_tar_text(tar_text)
    parts: list[Partition] = []
    for f in files:
        fmt = f.format
        if fmt == "parquet":
            total = parquet_file(f.path).metadata.num_rows
            for first in range(0, max(total, 1), partition_rows):
                parts.append(Partition(len(parts), f.path, f.name, fmt, first, min(partition_rows, total - first)))
        elif fmt in LINE_FORMATS and not f.path.lower().endswith(".gz"):
            try:
                skip_header = fmt == "tsv" and delimited_header(f.path, fmt, text_column)[1]
                ranges = line_ranges(f.path, partition_rows, skip_header)
            except OSError as e:
                raise InputError(f"{quote_path(f.path)}: cannot read ({one_line(e)})") from None
            for start, end, first, num in ranges:
                parts.append(Partition(len(parts), f.path, f.name, fmt, first, num, (start, end)))
        else:
            parts.append(Partition(len(parts), f.path, f.name, fmt, 0, None, tar_text=tar_text))
    return parts


_BLOCK = 1 << 26


def line_ranges(path: str, rows: int, skip_header: bool) -> list[tuple[int, int, int, int]]:
    """(byte start, byte end, first row, rows) of consecutive runs of at most
    `rows` whole lines, found with one streaming pass over the file."""
    ranges: list[tuple[int, int, int, int]] = []
    start = first = seen = pos = 0  # open range's byte start and first row; complete lines seen; block offset
    last = b"\n"
    with open_file(str(path)) as f:
        if skip_header:
            start = pos = len(f.readline())
        while block := f.read(_BLOCK):
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10) + (pos + 1)  # just past each newline
            for i in range(rows - (seen - first) - 1, len(ends), rows):  # the newlines that close a range
                ranges.append((start, int(ends[i]), first, rows))
                start, first = int(ends[i]), first + rows
            seen += len(ends)
            pos += len(block)
            last = block[-1:]
    size = pos
    if start < size or not ranges:  # the rest; its last line may lack a newline
        partial = 1 if start < size and last != b"\n" else 0
        ranges.append((start, size, first, seen - first + partial))
    return ranges


def read_table(path: str, columns: list[str] | None = None, text_column: str = "text") -> pa.Table:
    """Read one whole pool file (the `match` command)."""
    files = find_pool([str(path)]).files
    if len(files) != 1:
        raise InputError(f"{quote_path(path)}: not one pool file ({len(files)} found)")
    f = files[0]
    return read_partition(Partition(0, f.path, f.name, f.format, 0, None), columns, text_column)
