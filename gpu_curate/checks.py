"""Every check that a curate run can make before doing any work.

`check_run` is called before anything is written to --out, so a mistyped
option fails in one line (a CurateError) and leaves --out as it was: the
corrected command can use it. `check_cluster_options` refuses contradictory
cluster options before a cluster starts. Checks that need the data itself
(null uids, invalid UTF-8, DataComp uid values) run in pass 1, per partition.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from .config import AUTO, UID, CurateConfig
from .errors import InputError, MetadataError, OptionError
from .fs import one_line, open_stream, quote_path
from .pool import PoolFile
from .readers import arrow_stream, is_empty_file, delimited_header, parquet_file
from .worldwide import load_cached

MAX_SEED = 2**64  # the sampling hash takes the seed as an unsigned 64-bit integer
_JSONL_HEAD = 1 << 20  # bytes of a jsonl file whose records name its columns (pyarrow's first block)


def check_run(cfg: CurateConfig, files: list[PoolFile], sampling: bool = True) -> None:
    """Raise one CurateError naming the option, file or entry at fault; return
    None when the run can start. Reads only the schema or header of the pool's
    first file, and the metadata. `sampling` False (gpu-curate match): what
    only sampling needs is not asked for."""
    check_numbers(cfg)
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise OptionError(f"--out {out}: exists and is not a directory")
    path, columns = first_columns(files, cfg.text_column)
    if columns is not None:
        check_columns(cfg, path, columns)
    mdset = load_cached(cfg.metadata_ref)  # a bad entry fails here, naming its line
    if mdset.worldwide:
        if not cfg.lang_column:
            raise OptionError(f"{cfg.metadata}: per-language metadata needs the pool's language column (--lang-column)")
        if sampling and "en" not in mdset.lists:
            raise MetadataError(
                f"{cfg.metadata}: per-language metadata needs an 'en' list "
                f"(--t-en sets English's threshold, and every other language's follows from it)"
            )


def check_numbers(cfg: CurateConfig) -> None:
    for option, value in (("--t", cfg.t), ("--t-en", cfg.t_en)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise OptionError(f"{option} must be a finite number above 0, got {value!r}")
    if not 0 <= cfg.seed < MAX_SEED:
        raise OptionError(f"--seed must be in [0, 2**64), got {cfg.seed}")
    if cfg.partition_rows < 1:
        raise OptionError(f"--partition-size must be at least one row, got {cfg.partition_rows}")


def first_columns(files: list[PoolFile], text_column: str) -> tuple[str | None, dict[str, pa.DataType | None] | None]:
    """The first pool file that has columns, and its columns (None: no file has any)."""
    for f in files:
        columns = pool_columns(f.path, f.format, text_column)
        if columns:
            return f.path, columns
    return None, None


def pool_columns(path: str, fmt: str, text_column: str) -> dict[str, pa.DataType | None]:
    """Column name -> type of one pool file, read from its schema or header
    only. The type is None where the format leaves it to inference over the
    whole file (csv, tsv). The one place that knows each format's columns:
    a new pool format adds its case here."""
    if fmt == "parquet":
        return {field.name: field.type for field in parquet_file(path).schema_arrow}
    if fmt == "txt":  # one column, named by --text-column
        return {text_column: pa.large_binary()}
    if fmt == "tar":  # webdataset.read_tar's columns
        return {UID: pa.string(), "key": pa.string(), text_column: pa.large_binary()}
    try:
        if fmt == "jsonl":
            return _jsonl_columns(path)
        if is_empty_file(path):
            return {}
        if fmt == "csv":  # quoted names too: pyarrow's parser reads the header
            with arrow_stream(path) as stream:
                parse = pacsv.ParseOptions(newlines_in_values=True)
                with pacsv.open_csv(
                    stream, read_options=pacsv.ReadOptions(block_size=1 << 20), parse_options=parse
                ) as r:
                    return {name: None for name in r.schema.names}
        names, _ = delimited_header(path, fmt, text_column)  # tsv: CC3M's headerless text<TAB>url is named text, url
    except (pa.ArrowInvalid, OSError, EOFError) as e:
        raise InputError(f"{quote_path(path)}: cannot read {fmt} ({one_line(e)})") from None
    return {name: None for name in names}


def _jsonl_columns(path: str) -> dict[str, pa.DataType | None]:
    """The columns pyarrow infers from the first records (about 1 MB), as it does for its first block."""
    head, size = [], 0
    with open_stream(path) as f:
        for line in f:
            head.append(line)
            size += len(line)
            if size >= _JSONL_HEAD:
                break
    if not b"".join(head).strip():
        return {}
    table = pajson.read_json(pa.BufferReader(b"".join(head)))
    return {field.name: field.type for field in table.schema}


def check_columns(cfg: CurateConfig, path: str, columns: dict[str, pa.DataType | None]) -> None:
    """Every column an option names exists in `path` (the pool's first file)."""
    named = [("--text-column", cfg.text_column)]
    named += [
        (option, name)
        for option, name in (("--lang-column", cfg.lang_column), ("--image-column", cfg.image_column))
        if name
    ]
    if cfg.id_column != AUTO:
        named.append(("--id-column", cfg.id_column))
    named += [("--columns", name) for name in cfg.columns or ()]
    for option, name in named:
        if name not in columns:
            raise InputError(
                f"{quote_path(path)}: no column {name!r} for {option} (columns: {', '.join(columns)}){_suggestion(name, columns)}"
            )
    if cfg.id_column not in (AUTO, UID) and UID in columns:  # the outputs' uid column would be ambiguous
        raise InputError(
            f"{quote_path(path)}: has a column {UID!r} but --id-column is {cfg.id_column!r}; use --id-column uid"
        )
    if cfg.datacomp_subset:
        _check_datacomp_uids(cfg, path, columns)


def _suggestion(name: str, columns) -> str:
    """'; did you mean X?' for the column the user most likely meant: same
    name in another case first, else the closest by difflib."""
    same = [c for c in columns if c.lower() == name.lower()]
    close = same or difflib.get_close_matches(name, list(columns), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_datacomp_uids(cfg: CurateConfig, path: str, columns: dict[str, pa.DataType | None]) -> None:
    """DataComp's format holds 128-bit uids: the pool needs a string uid
    column. Its values (32 hex digits) are checked in pass 1, per partition."""
    id_column = cfg.id_column if cfg.id_column != AUTO else (UID if UID in columns else None)
    if id_column is None:
        raise OptionError(
            f"--datacomp-subset needs DataComp uids (32 hex digits), but {quote_path(path)} has no {UID!r} column: its uids "
            f"would be derived as <file>:<row>; name the uid column with --id-column"
        )
    kind = columns[id_column]
    if kind is not None and not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise OptionError(
            f"--datacomp-subset needs DataComp uids (32 hex digits), but {quote_path(path)} column {id_column!r} holds {kind}"
        )


def check_cluster_options(
    in_process: bool,
    workers: int | None,
    threads_per_worker: int | None,
    memory_limit: str | None,
    scheduler_address: str | None,
    dashboard: bool,
    rmm_pool_size: str | None = None,
    protocol: str | None = None,
) -> None:
    """Options that cannot hold together, refused before a cluster starts."""
    for option, value in (("--workers", workers), ("--threads-per-worker", threads_per_worker)):
        if value is not None and value < 1:
            raise OptionError(f"{option} must be at least 1, got {value}")
    local = {
        "--workers": workers is not None,
        "--threads-per-worker": threads_per_worker is not None,
        "--memory-limit": memory_limit is not None,
        "--rmm-pool-size": rmm_pool_size is not None,
        "--protocol": protocol is not None,
    }
    if in_process:
        given = [
            o
            for o, on in {**local, "--scheduler-address": bool(scheduler_address), "--dashboard": dashboard}.items()
            if on
        ]
        if given:
            raise OptionError(f"--in-process runs no cluster; drop {given[0]} (or --in-process)")
    if scheduler_address:
        given = [o for o, on in {**local, "--dashboard": dashboard}.items() if on]
        if given:
            raise OptionError(
                f"--scheduler-address uses a running cluster, whose workers and dashboard are already set; drop {given[0]}"
            )
    if memory_limit is not None and memory_limit != "auto":
        import dask.utils

        try:
            dask.utils.parse_bytes(memory_limit)
        except ValueError:
            raise OptionError(f"--memory-limit: {memory_limit!r} is not a size like 8GB (or auto)") from None
