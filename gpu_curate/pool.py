"""Pool files in: finding them, cutting them into partitions, reading a partition.

A pool is one or more files (parquet, jsonl, csv/tsv, txt; each optionally
.gz), directories or globs. It is cut into partitions of at most
`partition_rows` rows: row ranges of a parquet file (reading only the row
groups that overlap), line ranges of an uncompressed txt/tsv file (found by
one streaming pass over its newlines), or one whole csv, jsonl or .gz file.
Each partition is read on its own, so memory is bounded by the partition,
never by the pool.
"""

from __future__ import annotations

import glob
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from .errors import InputError

FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".txt": "txt"}
TXT_COLUMN = "text"  # the one column of a .txt pool (one text per line)


def file_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise InputError(f"{path}: unknown pool format (expected {', '.join(sorted(FORMATS))}, optionally .gz)")
    return fmt


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """Files named, found in directories (recursively) or matched by globs, sorted."""
    files: list[Path] = []
    for item in inputs:
        item = str(item)
        if os.path.isdir(item):
            found = sorted(p for p in Path(item).rglob("*") if p.is_file() and _is_pool_file(p))
        elif any(c in item for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if os.path.isfile(p))
        elif os.path.isfile(item):
            found = [Path(item)]
        else:
            raise InputError(f"{item}: no such file or directory")
        if not found:
            raise InputError(f"{item}: no pool files found")
        files.extend(found)
    seen = set()
    return [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]


def _is_pool_file(p: Path) -> bool:
    try:
        file_format(p)
    except InputError:
        return False
    return not p.name.startswith((".", "_"))


@dataclass(frozen=True)
class Partition:
    """A slice of one pool file; its index names its output shards."""

    index: int
    path: str
    name: str  # path relative to the pool's common root: the derived-uid prefix
    format: str
    first_row: int  # row number in the file of the partition's first row
    num_rows: int | None  # None: to the end of the file
    byte_range: tuple[int, int] | None = None  # txt/tsv: the bytes of whole lines this partition reads

    @property
    def shard(self) -> str:
        return f"part-{self.index:06d}"


def plan_partitions(files: list[Path], partition_rows: int, text_column: str = TXT_COLUMN) -> list[Partition]:
    """Cut the pool into partitions of at most `partition_rows` rows: row
    ranges of parquet files, line ranges of uncompressed txt/tsv files, whole
    files otherwise."""
    root = Path(os.path.commonpath([str(f.resolve().parent) for f in files])) if files else Path(".")
    parts: list[Partition] = []
    for f in files:
        fmt = file_format(f)
        name = str(f.resolve().relative_to(root))
        if fmt == "parquet":
            try:
                total = pq.ParquetFile(f).metadata.num_rows
            except (pa.ArrowInvalid, OSError) as e:
                raise InputError(f"{f}: not a readable parquet file ({_one_line(e)})") from None
            for first in range(0, max(total, 1), partition_rows):
                parts.append(Partition(len(parts), str(f), name, fmt, first, min(partition_rows, total - first)))
        elif fmt in LINE_FORMATS and f.suffix.lower() != ".gz":
            skip_header = fmt == "tsv" and _column_names(f, fmt, text_column)[1]
            for start, end, first, num in line_ranges(f, partition_rows, skip_header):
                parts.append(Partition(len(parts), str(f), name, fmt, first, num, (start, end)))
        else:
            parts.append(Partition(len(parts), str(f), name, fmt, 0, None))
    return parts


# Formats whose rows are exactly their lines (blank lines too), so a file can be
# cut at line ends and row numbers stay those of the whole file. csv may quote
# newlines; the jsonl reader skips blank lines; .gz cannot seek.
LINE_FORMATS = ("txt", "tsv")
_BLOCK = 1 << 26


def line_ranges(path: Path, rows: int, skip_header: bool) -> list[tuple[int, int, int, int]]:
    """(byte start, byte end, first row, rows) of consecutive runs of at most
    `rows` whole lines, found with one streaming pass over the file."""
    size = path.stat().st_size
    ranges: list[tuple[int, int, int, int]] = []
    start = first = seen = pos = 0  # open range's byte start and first row; complete lines seen; block offset
    with open(path, "rb") as f:
        if skip_header:
            start = pos = len(f.readline())
        while block := f.read(_BLOCK):
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10) + (pos + 1)  # just past each newline
            for i in range(rows - (seen - first) - 1, len(ends), rows):  # the newlines that close a range
                ranges.append((start, int(ends[i]), first, rows))
                start, first = int(ends[i]), first + rows
            seen += len(ends)
            pos += len(block)
    if start < size or not ranges:  # the rest; its last line may lack a newline
        partial = 1 if start < size and not _ends_with_newline(path, size) else 0
        ranges.append((start, size, first, seen - first + partial))
    return ranges


def _ends_with_newline(path: Path, size: int) -> bool:
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1) == b"\n"


def _column_names(path: Path, fmt: str, text_column: str) -> tuple[list[str], bool]:
    """(column names, whether the first line is a header). A TSV whose first
    line does not name `text_column` is headerless: `text<TAB>url<TAB>...`
    (CC3M's layout)."""
    with _open(path) as f:
        head = f.readline().rstrip(b"\r\n").split(b"\t" if fmt == "tsv" else b",")
    names = [h.decode("utf-8", "replace") for h in head]
    if fmt == "tsv" and text_column not in names:
        return ([text_column, "url"] + [f"column_{i}" for i in range(2, len(head))])[: len(head)], False
    return names, True


def read_partition(part: Partition, columns: list[str] | None, text_column: str) -> pa.Table:
    """The partition's rows; `columns` None means all. The text column of
    text formats is read as binary so invalid UTF-8 can be counted, not fatal."""
    path = Path(part.path)
    try:
        if part.format == "parquet":
            return _read_parquet_rows(path, part.first_row, part.num_rows, columns)
        if part.format == "txt":
            table = pa.table({TXT_COLUMN: _lines(_read_bytes(path, part.byte_range))})
        elif part.format == "jsonl":
            table = pajson.read_json(path)
        else:
            table = _read_delimited(path, part.format, text_column, part.byte_range)
    except InputError:
        raise
    except (pa.ArrowInvalid, OSError, EOFError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{path}: cannot read {part.format} ({_one_line(e)})") from None
    _check_columns(path, table.column_names, columns)
    return table.select(columns) if columns is not None else table


def _read_parquet_rows(path: Path, first: int, num: int | None, columns: list[str] | None) -> pa.Table:
    f = pq.ParquetFile(path)
    _check_columns(path, f.schema_arrow.names, columns)
    meta = f.metadata
    num = meta.num_rows - first if num is None else num
    groups, start, group_first = [], 0, None
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if start < first + num and start + n > first:
            groups.append(g)
            group_first = start if group_first is None else group_first
        start += n
    if not groups:
        return f.schema_arrow.empty_table().select(columns) if columns else f.schema_arrow.empty_table()
    return f.read_row_groups(groups, columns=columns).slice(first - group_first, num)


def _one_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _check_columns(path: Path, have: list[str], want: list[str] | None) -> None:
    missing = [c for c in want or [] if c not in have]
    if missing:
        raise InputError(f"{path}: no column {missing[0]!r} (columns: {', '.join(have)})")


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def _read_bytes(path: Path, byte_range: tuple[int, int] | None) -> bytes:
    with _open(path) as f:
        if byte_range is None:
            return f.read()
        f.seek(byte_range[0])
        return f.read(byte_range[1] - byte_range[0])


def _lines(data: bytes) -> pa.Array:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return pa.array([ln[:-1] if ln.endswith(b"\r") else ln for ln in lines], type=pa.large_binary())


def _read_delimited(path: Path, fmt: str, text_column: str, byte_range: tuple[int, int] | None = None) -> pa.Table:
    """CSV with a header row; TSV with a header row or headerless (see
    _column_names). A TSV line range is parsed with the file's column names.
    Blank TSV lines are rows (of empty values), so rows are lines."""
    parse = pacsv.ParseOptions(
        delimiter="\t" if fmt == "tsv" else ",",
        quote_char=False if fmt == "tsv" else '"',
        newlines_in_values=fmt == "csv",
        ignore_empty_lines=fmt != "tsv",
    )
    names, has_header = _column_names(path, fmt, text_column)
    # Names are given where the bytes parsed hold no header: a headerless file, or a line range.
    read = pacsv.ReadOptions(block_size=1 << 26, column_names=None if has_header and not byte_range else names)
    convert = pacsv.ConvertOptions(column_types={text_column: pa.large_binary()}, strings_can_be_null=False)
    source = path if byte_range is None else pa.BufferReader(_read_bytes(path, byte_range))
    return pacsv.read_csv(source, read_options=read, parse_options=parse, convert_options=convert)


def read_table(path: str | Path, columns: list[str] | None = None, text_column: str = TXT_COLUMN) -> pa.Table:
    """Read one whole pool file (the `match` command)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    fmt = file_format(path)
    return read_partition(Partition(0, str(path), path.name, fmt, 0, None), columns, text_column)
