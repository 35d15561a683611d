"""Reading pool files: one reader per format, a partition's rows, or only some of them.

The text column of text formats is read as binary so that invalid UTF-8 can
be counted, not fatal. An empty file (or a csv/jsonl of blank lines, or a
header alone) is 0 rows, never an error.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from .errors import InputError
from .fs import local_path, one_line, open_file, open_stream, quote_path, split_url
from .partition import Partition
from .webdataset import read_tar

# Formats whose rows are exactly their lines (blank lines too), so a file can be
# cut at line ends and row numbers stay those of the whole file. csv may quote
# newlines; the jsonl reader skips blank lines; .gz cannot seek.
LINE_FORMATS = ("txt", "tsv")


def parquet_file(path: str) -> pq.ParquetFile:
    fs, inner = split_url(path)
    try:
        return pq.ParquetFile(
            inner if fs is None else fs.open(inner, "rb")
        )  # seekable: only the footer and row groups read are fetched
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{quote_path(path)}: not a readable parquet file ({one_line(e)})") from None


def parquet_columns(path: str) -> list[str]:
    return parquet_file(path).schema_arrow.names


def read_partition(part: Partition, columns: list[str] | None, text_column: str) -> pa.Table:
    """The partition's rows; `columns` None means all."""
    try:
        if part.format == "parquet":
            return _read_parquet_rows(part, columns)
        if part.format == "tar":
            table = read_tar(part.path, text_column, part.tar_text)
        elif part.format == "txt":
            table = pa.table({text_column: _lines(_read_bytes(part.path, part.byte_range))})  # one text per line
        elif part.format == "jsonl":
            table = _empty_table([], text_column) if _is_blank(part.path) else _read_json(part.path)
        else:
            table = _read_delimited(part.path, part.format, text_column, part.byte_range)
    except InputError:
        raise
    except (pa.ArrowInvalid, OSError, EOFError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"{quote_path(part.path)}: cannot read {part.format} ({one_line(e)})") from None
    _check_columns(part.path, table.column_names, columns)
    return _typed_if_empty(table.select(columns) if columns is not None else table)


def read_rows(part: Partition, rows: np.ndarray, columns: list[str] | None, text_column: str) -> pa.Table:
    """The given rows of a partition (row numbers from its first row, 0-based),
    in the order given. Parquet reads only the row groups holding them; the
    other formats read the partition and take."""
    rows = np.asarray(rows, dtype=np.int64)
    if part.format != "parquet":
        return read_partition(part, columns, text_column).take(pa.array(rows))
    try:
        f = parquet_file(part.path)
        _check_columns(part.path, f.schema_arrow.names, columns)
        sizes = np.array([f.metadata.row_group(g).num_rows for g in range(f.metadata.num_row_groups)], np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)])  # file row of each group's first row
        num = part.num_rows if part.num_rows is not None else int(starts[-1]) - part.first_row
        if len(rows) and (rows.min() < 0 or rows.max() >= num):
            raise IndexError(f"{quote_path(part.path)}: row {int(rows.max())} is outside partition {part.index}")
        absolute = rows + part.first_row
        group_of = np.searchsorted(starts, absolute, side="right") - 1
        groups = np.unique(group_of)
        if not len(groups):
            return _typed_if_empty(f.schema_arrow.empty_table().select(columns or f.schema_arrow.names))
        table = f.read_row_groups(groups.tolist(), columns=columns)
        offset_in_table = np.concatenate([[0], np.cumsum(sizes[groups])[:-1]])  # where each read group begins
        at = offset_in_table[np.searchsorted(groups, group_of)] + (absolute - starts[group_of])
        return table.take(pa.array(at))
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{quote_path(part.path)}: cannot read parquet ({one_line(e)})") from None


def _read_parquet_rows(part: Partition, columns: list[str] | None) -> pa.Table:
    f = parquet_file(part.path)
    _check_columns(part.path, f.schema_arrow.names, columns)
    groups, skip, num = row_group_span(part, f.metadata)
    if not groups:
        return _typed_if_empty(f.schema_arrow.empty_table().select(columns or f.schema_arrow.names))
    try:
        return f.read_row_groups(groups, columns=columns).slice(skip, num)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{quote_path(part.path)}: cannot read parquet ({one_line(e)})") from None


def row_group_span(part: Partition, meta: pq.FileMetaData) -> tuple[list[int], int, int]:
    """(row groups holding a parquet partition's rows, rows of the first group
    before the partition, rows in the partition): read the groups, then slice
    (skip, num). Shared by this reader and cuDF's (gpu_io)."""
    first = part.first_row
    num = meta.num_rows - first if part.num_rows is None else part.num_rows
    groups, start, group_first = [], 0, None
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if start < first + num and start + n > first:
            groups.append(g)
            group_first = start if group_first is None else group_first
        start += n
    return groups, first - (group_first or 0), num


def _check_columns(path: str, have: list[str], want: list[str] | None) -> None:
    missing = [c for c in want or [] if c not in have]
    if missing:
        raise InputError(f"{quote_path(path)}: no column {missing[0]!r} (columns: {', '.join(have)})")


def _empty_table(names: list[str], text_column: str) -> pa.Table:
    names = list(dict.fromkeys([*names, text_column]))
    return pa.table({n: pa.array([], pa.large_binary() if n == text_column else pa.string()) for n in names})


def _typed_if_empty(table: pa.Table) -> pa.Table:
    """A reader infers `null` for the columns of a file without rows (a header
    alone); give them a type every stage accepts."""
    if table.num_rows or not any(pa.types.is_null(t) for t in table.schema.types):
        return table
    return pa.table(
        {n: c.cast(pa.string()) if pa.types.is_null(c.type) else c for n, c in zip(table.column_names, table.columns)}
    )


def _is_blank(path: str) -> bool:
    """Whether a file holds nothing but whitespace (a csv/jsonl without rows)."""
    with open_stream(path) as f:
        while block := f.read(1 << 16):
            if block.strip():
                return False
    return True


def is_empty_file(path: str) -> bool:
    with open_stream(path) as f:
        return not f.read(1)


def arrow_stream(path: str) -> pa.NativeFile:
    """An Arrow input stream of the file's (decompressed) bytes: native I/O for local files."""
    local = local_path(path)
    if local is not None:
        return pa.input_stream(local, compression="detect")
    return pa.input_stream(open_file(path), compression="gzip" if path.lower().endswith(".gz") else None)


def _read_json(path: str) -> pa.Table:
    with arrow_stream(path) as stream:
        return pajson.read_json(stream)


def delimited_header(path: str, fmt: str, text_column: str) -> tuple[list[str], bool]:
    """(column names, whether the first line is a header). A TSV whose first
    line is a text and a URL, `text<TAB>http://...` (CC3M's layout), and
    does not name `text_column` is headerless. Any other first line is a
    header, so that a misnamed column is an error naming the columns, not
    a header read as a row and another column matched."""
    with open_stream(path) as f:
        head = f.readline().rstrip(b"\r\n").split(b"\t" if fmt == "tsv" else b",")
    names = [h.decode("utf-8", "replace") for h in head]
    if fmt == "tsv" and text_column not in names and len(head) == 2 and b"://" in head[1]:
        return [text_column, "url"], False
    return names, True


def _read_bytes(path: str, byte_range: tuple[int, int] | None) -> bytes:
    if byte_range is None:
        with open_stream(path) as f:
            return f.read()
    with open_file(path) as f:
        f.seek(byte_range[0])
        return f.read(byte_range[1] - byte_range[0])


def _lines(data: bytes) -> pa.Array:
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return pa.array([ln[:-1] if ln.endswith(b"\r") else ln for ln in lines], type=pa.large_binary())


def _read_delimited(path: str, fmt: str, text_column: str, byte_range: tuple[int, int] | None = None) -> pa.Table:
    """CSV with a header row; TSV with a header row or headerless (see
    delimited_header). A TSV line range is parsed with the file's column names.
    Blank TSV lines are rows (of empty values), so rows are lines."""
    parse = pacsv.ParseOptions(
        delimiter="\t" if fmt == "tsv" else ",",
        quote_char=False if fmt == "tsv" else '"',
        newlines_in_values=fmt == "csv",
        ignore_empty_lines=fmt != "tsv",
    )
    names, has_header = delimited_header(path, fmt, text_column)
    if byte_range is not None:
        data = _read_bytes(path, byte_range)
        if not data:  # a header alone, or an empty file
            return _empty_table(names if has_header else [text_column], text_column)
    elif _is_blank(path) if fmt == "csv" else is_empty_file(path):
        return _empty_table([n for n in names if n.strip()] if has_header else [], text_column)
    # Names are given where the bytes parsed hold no header: a headerless file, or a line range.
    read = pacsv.ReadOptions(block_size=1 << 26, column_names=None if has_header and not byte_range else names)
    convert = pacsv.ConvertOptions(column_types={text_column: pa.large_binary()}, strings_can_be_null=False)
    if byte_range is not None:
        return pacsv.read_csv(pa.BufferReader(data), read_options=read, parse_options=parse, convert_options=convert)
    with arrow_stream(path) as stream:
        return pacsv.read_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
