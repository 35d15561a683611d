"""Local paths and fsspec URLs (s3://, gs://, hf://, memory://, file://) behind one small interface.

A pool file is named by a string: a local path, or a URL with its protocol.
file:// URLs become local paths, so a pool named either way is the same pool
(same derived uids, same identity). Everything else goes through fsspec, as
Dask and pyarrow users expect; the filesystem packages (s3fs, gcsfs,
huggingface_hub) are the user's to install.
"""

from __future__ import annotations

import gzip
import os
from typing import BinaryIO

from .errors import InputError, OptionError


def quote_path(path) -> str:
    """A path as it may appear in a one-line message: as is when printable,
    else Python-quoted, so a newline in a name cannot split the line."""
    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike)) else str(path)
    return text if text.isprintable() else repr(text)


def one_line(e: BaseException) -> str:
    """An exception's first line, for messages that must stay one line."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def is_url(path: str) -> bool:
    return "://" in str(path)


def split_url(url: str):
    """(fsspec filesystem, path inside it) of a URL; (None, local path) for a
    local path or a file:// URL."""
    if not is_url(url):
        return None, str(url)
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:  # unknown protocol, or its package missing
        raise InputError(f"{quote_path(url)}: {one_line(e)}") from None
    if _is_local(fs):
        return None, path
    return fs, path


def _is_local(fs) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def local_path(url: str) -> str | None:
    """The local path a name refers to, or None for a remote URL."""
    fs, path = split_url(url)
    return path if fs is None else None


def local_out(value, option: str = "--out") -> str:
    """The local directory that an output option names: a path, or a file://
    URL. Where outputs may go to object storage, curate --out and balance
    (OUT, --out) are staged locally and published (publish.py), and match
    --out writes its shards straight there (match_pool.py), and report reads
    a published run from there. Rebalancer.open maps a run's files in place,
    which rests on POSIX semantics (memory maps, flock) that object stores
    lack, so a URL is refused there in one line."""
    fs, path = split_url(str(value))
    if fs is not None:
        raise OptionError(
            f"{option} {quote_path(value)}: takes a local or shared POSIX file system (a path or a file:// URL), "
            "not object storage; curate --out, balance and match --out write to a URL (curate and balance from a "
            "local work dir), so point this at that work dir or a local path"
        )
    return path


def open_file(url: str) -> BinaryIO:
    """A seekable binary file: the OS's for local paths, fsspec's for URLs."""
    fs, path = split_url(url)
    return open(path, "rb") if fs is None else fs.open(path, "rb")


def open_stream(url: str) -> BinaryIO:
    """The file's bytes, decompressed when it ends in .gz."""
    f = open_file(url)
    return gzip.GzipFile(fileobj=f, mode="rb") if str(url).lower().endswith(".gz") else f


def filesystem_error(url: str, e: BaseException) -> InputError:
    """One line for a filesystem call that failed. Remote stores raise their
    own exception types (botocore, aiohttp, gcsfs, huggingface_hub), so the
    callers catch broadly and come here."""
    if isinstance(e, FileNotFoundError):
        return InputError(f"{quote_path(url)}: no such file or directory")
    if isinstance(e, PermissionError):
        return InputError(f"{quote_path(url)}: permission denied")
    return InputError(f"{quote_path(url)}: cannot reach ({type(e).__name__}: {one_line(e)})")
