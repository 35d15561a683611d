"""What identifies a pool's contents, so that a rerun in the same --out can
tell that the pool is not the one it was made from.

Per file: its size and modification time (for URLs, the store's ETag,
generation or mtime), a digest of a parquet file's footer (row counts,
column chunk offsets and statistics), and with --verify-inputs a digest of
every byte. An edit in place at the same size (`sed -i s/dog/cat/`) changes
the time; a parquet rewrite that keeps size and time still shows in the
footer when it moves a column chunk or changes a statistic; --verify-inputs
sees every change, and forgives a file that was only touched.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

from .errors import InputError
from .fs import one_line, open_file, quote_path
from .pool import PoolFile


def input_identity(files: list[PoolFile], verify: bool = False) -> list[dict]:
    """What identifies each file's contents: size and modification time (or the
    store's version), a digest of a parquet file's footer (row groups, column
    chunk offsets and statistics), and with `verify` a digest of every byte."""

    def one(f: PoolFile) -> dict:
        d = {"file": f.key, "size": f.size, "version": f.version}
        if f.format == "parquet":
            d["footer"] = _footer_digest(f.path)
        if verify:
            d["blake2b"] = _content_digest(f.path)
        return d

    with ThreadPoolExecutor(8) as pool:  # I/O-bound; hashlib releases the GIL on large blocks
        return list(pool.map(one, files))


def _footer_digest(path: str) -> str:
    try:
        with open_file(path) as f:
            f.seek(-8, os.SEEK_END)
            tail = f.read(8)
            length = int.from_bytes(tail[:4], "little")
            if tail[4:] != b"PAR1" or length + 8 > f.tell():
                raise InputError(f"{quote_path(path)}: not a readable parquet file (no parquet footer)")
            f.seek(-8 - length, os.SEEK_END)
            return hashlib.blake2b(f.read(length), digest_size=16).hexdigest()
    except OSError as e:
        raise InputError(f"{quote_path(path)}: not a readable parquet file ({one_line(e)})") from None


def _content_digest(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    try:
        with open_file(path) as f:
            while block := f.read(1 << 23):
                h.update(block)
    except OSError as e:
        raise InputError(f"{quote_path(path)}: cannot read ({one_line(e)})") from None
    return h.hexdigest()


def changed_input(old: list[dict], new: list[dict]) -> str | None:
    """Why the pool differs from the one an --out was made from (one line naming a file), or None.
    Where both runs hashed the contents (--verify-inputs), the digest decides, not the time."""
    old_by, new_by = {d["file"]: d for d in old}, {d["file"]: d for d in new}
    for f in new_by:
        if f not in old_by:
            return f"{quote_path(f)}: not in the pool this --out was made from; use a new --out"
    for f in old_by:
        if f not in new_by:
            return f"{quote_path(f)}: in the pool this --out was made from, but not in this one; use a new --out"
    for f, n in new_by.items():
        o = old_by[f]
        if o["size"] != n["size"]:
            what = "size"
        elif "blake2b" in o and "blake2b" in n:
            what = "contents" if o["blake2b"] != n["blake2b"] else None
        elif o["version"] != n["version"]:
            what = "modification time"
        elif o.get("footer") != n.get("footer"):
            what = "parquet footer"
        else:
            what = None
        if what:
            return f"{quote_path(f)}: changed since this --out was made (other {what}); use a new --out"
    return None
