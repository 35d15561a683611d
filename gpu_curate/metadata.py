"""Metadata entry lists and their padding (docs/semantics.md sections 1 and 3).

Entries are kept as one Arrow string array, so 30M entries cost two flat
buffers rather than 30M Python objects; ids are positions in that array.
"""

from __future__ import annotations

import hashlib
import json
import string
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import MetadataError
from .texts import string_buffers

Padding = Literal["metaclip1", "worldwide"]
PADDINGS = ("metaclip1", "worldwide")

# docs/semantics.md section 3: code-point ranges whose characters take no space padding
# under the worldwide (MetaCLIP 2) rule; bounds are inclusive.
CJK_LIKE_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0x2CEB0, 0x2EBEF),
    (0xF900, 0xFAFF),
    (0x2E80, 0x2EFF),
    (0x2F00, 0x2FDF),
    (0x2FF0, 0x2FFF),  # CJK
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x0F00, 0x0FFF),  # Tibetan
)
UTF8_BOM = b"\xef\xbb\xbf"  # some editors start UTF-8 files with it
CJK_LIKE_CHARS = string.punctuation + "，。、；：？！“”‘’（）【】《》〈〉「」『』～—"


def is_cjk_like(codepoints: np.ndarray) -> np.ndarray:
    """Vectorized docs/semantics.md section 3 test on an array of code points."""
    cps = np.asarray(codepoints, dtype=np.int64)
    out = np.isin(cps, [ord(c) for c in CJK_LIKE_CHARS])
    for lo, hi in CJK_LIKE_RANGES:
        out |= (cps >= lo) & (cps <= hi)
    return out


def _decode_at(data: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Code points of the UTF-8 characters starting at byte positions `pos`."""
    at = lambda k: data[np.minimum(pos + k, len(data) - 1)].astype(np.int64)  # noqa: E731
    b0 = at(0)
    cont = lambda k: at(k) & 0x3F  # noqa: E731
    return np.select(
        [b0 < 0x80, b0 < 0xE0, b0 < 0xF0],
        [b0, ((b0 & 0x1F) << 6) | cont(1), ((b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2)],
        ((b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3),
    )


class Metadata:
    """An ordered list of metadata entries; an entry's id is its position.

    >>> md = Metadata(["dog", "hot dog"])
    >>> md.padded(1)
    ' hot dog '
    """

    def __init__(self, entries: Iterable[str] | pa.Array, padding: Padding = "metaclip1", source: str = "<list>"):
        if padding not in PADDINGS:
            raise MetadataError(f"unknown padding rule {padding!r}; choose one of {', '.join(PADDINGS)}")
        if not isinstance(entries, (pa.Array, pa.ChunkedArray)):
            entries = list(entries)
            if not set(map(type, entries)) <= {str}:  # Arrow would take bytes and None too
                _name_bad_entry(entries, source)
            try:  # encodes at C speed; a lone surrogate cannot be UTF-8
                entries = pa.array(entries, type=pa.large_string())
            except UnicodeEncodeError:
                _name_bad_entry(entries, source)
                raise
        if isinstance(entries, pa.ChunkedArray):
            entries = entries.combine_chunks()
        self.entries: pa.Array = entries.cast(pa.large_string())
        self.padding: Padding = padding
        self.source = source
        self._check()
        self._fingerprint: str | None = None

    def _check(self) -> None:
        if self.entries.null_count:
            i = int(pc.index(pc.is_null(self.entries), True).as_py())
            raise MetadataError(f"{self.source} {self._where(i)}: null entry")
        blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(self.entries)), 0)
        if pc.any(blank).as_py():
            i = int(pc.index(blank, True).as_py())
            what = "empty" if self.entries[i].as_py() == "" else "whitespace-only"
            raise MetadataError(f"{self.source} {self._where(i)}: {what} entry")

    def _where(self, i: int) -> str:
        return f"line {i + 1}" if self.source.endswith(".txt") else f"entry {i}"

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> str:
        return self.entries[i].as_py()

    def __repr__(self) -> str:
        return f"Metadata({len(self)} entries from {self.source}, padding={self.padding!r})"

    @classmethod
    def load(cls, path: str | Path, padding: Padding = "metaclip1", column: str = "entry") -> "Metadata":
        """Load a JSON list, a text file (one entry per line) or a parquet column."""
        path = Path(path)
        if not path.is_file():
            raise MetadataError(f"{path}: metadata file not found")
        suffix = path.suffix.lower()
        if suffix == ".json":
            entries = _read_json(path)
        elif suffix == ".parquet":
            entries = _read_parquet(path, column)
        else:
            entries = _read_lines(path)
        if len(entries) == 0:  # a run against it would match and keep nothing
            raise MetadataError(f"{path}: no entries")
        return cls(entries, padding, str(path))

    # -- padding ------------------------------------------------------------
    def pad_flags(self) -> tuple[np.ndarray, np.ndarray]:
        """(pad_left, pad_right) booleans per entry under this padding rule."""
        n = len(self)
        if self.padding == "metaclip1":
            return np.ones(n, bool), np.ones(n, bool)
        data, off = string_buffers(self.entries)
        first = _decode_at(data, off[:-1])
        last_start = off[1:] - 1
        for _ in range(3):  # step back over UTF-8 continuation bytes
            cont = (data[last_start] & 0xC0) == 0x80
            last_start = np.where(cont & (last_start > off[:-1]), last_start - 1, last_start)
        last = _decode_at(data, last_start)
        return ~is_cjk_like(first), ~is_cjk_like(last)

    def padded(self, i: int) -> str:
        """Entry i as it is searched for in the spaced text."""
        e = self[i]
        if self.padding == "metaclip1":
            return f" {e} "
        left, right = ~is_cjk_like([ord(e[0]), ord(e[-1])])
        return (" " if left else "") + e + (" " if right else "")

    @property
    def fingerprint(self) -> str:
        """Content hash of (padding rule, entries): the automaton cache key."""
        if self._fingerprint is None:
            data, off = string_buffers(self.entries)
            h = hashlib.sha256(self.padding.encode())
            h.update(off.tobytes())
            h.update(data.tobytes())
            self._fingerprint = h.hexdigest()[:32]
        return self._fingerprint


def _name_bad_entry(entries: list, source: str) -> None:
    """Raise a MetadataError naming the first entry Arrow could not take as a string."""
    for i, e in enumerate(entries):
        if not isinstance(e, str):
            raise MetadataError(f"{source} entry {i}: expected a string, got {type(e).__name__}")
        try:
            e.encode("utf-8")
        except UnicodeEncodeError:
            raise MetadataError(f"{source} entry {i}: not valid UTF-8 ({e!r})") from None


def _read_json(path: Path) -> list:
    raw = path.read_bytes().removeprefix(UTF8_BOM)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise MetadataError(f"{path} line {line}: not valid UTF-8") from None
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as e:
        raise MetadataError(f"{path} line {e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(entries, list):
        raise MetadataError(f"{path}: expected a JSON list of strings, got {type(entries).__name__}")
    return entries


def _read_lines(path: Path) -> pa.Array:
    raw = path.read_bytes().removeprefix(UTF8_BOM)  # else the first entry would hold it and never match
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
    arr = pa.array(lines, type=pa.large_binary())
    try:
        return arr.cast(pa.large_string())
    except pa.ArrowInvalid:
        for i, ln in enumerate(lines):
            try:
                ln.decode("utf-8")
            except UnicodeDecodeError:
                raise MetadataError(f"{path} line {i + 1}: not valid UTF-8 ({ln[:60]!r})") from None
        raise


def _read_parquet(path: Path, column: str) -> pa.Array:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=[column])
    except (pa.ArrowInvalid, OSError) as e:
        if column not in _parquet_columns(path):
            raise MetadataError(f"{path}: no column {column!r} (use --metadata-column)") from None
        raise MetadataError(f"{path}: cannot read parquet ({e})") from None
    col = table.column(column)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise MetadataError(f"{path}: column {column!r} has type {col.type}, expected strings")
    return col.combine_chunks()


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).names
    except Exception:
        return []
