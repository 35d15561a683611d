"""cuDF's parquet reader and writer for the GPU engine: the only module that calls cuDF.

    read_parquet   a parquet partition read on the GPU: its text column stays
                   there (read in place by the kernels); the few other columns
                   pass 1 needs (uid, language, image) come to the host
    write_kept     pass 2's kept rows: read on the GPU, gathered there, given
                   their uids and written by cuDF's parquet writer

The engine reads every other format, and parquet when the run asks for the
pyarrow reader (`--gpu-reader pyarrow`, or the emulated device, which has no
cuDF), with the CPU's readers and copies the text column to the device once
(engines.GpuEngine). Both readers hand the rest of the GPU path the same
things: a host table of the small columns and device strings of the text.

Not run on a GPU yet: no GPU or cuDF was reachable where this was written.
The emulated device runs everything around it (engines.GpuEngine with the
pyarrow reader); what is here is kept to a few cuDF calls for that reason.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .errors import InputError
from .fs import quote_path
from .gpu_strings import DeviceStrings, strings_from_cudf
from .partition import Partition
from .readers import parquet_file, row_group_span
from .storage import write_atomic


def _read(part: Partition, columns: list[str] | None):
    """The partition's rows of `columns` as a cuDF DataFrame (row groups read, then sliced)."""
    import cudf

    groups, skip, num = row_group_span(part, parquet_file(part.path).metadata)
    if not groups:
        return None
    try:
        df = cudf.read_parquet(part.path, columns=columns, row_groups=[groups])
    except (OSError, ValueError, RuntimeError) as e:  # cuDF raises RuntimeError for libcudf errors
        raise InputError(f"{quote_path(part.path)}: cuDF cannot read it ({str(e).splitlines()[0]})") from None
    return df.iloc[skip : skip + num]


def read_parquet(part: Partition, columns: list[str], text_column: str) -> tuple[pa.Table, DeviceStrings, object]:
    """(host table of `columns` other than the text, the text on the device, the
    cuDF column that owns the text's buffers: keep it alive while kernels read them)."""
    import cudf

    df = _read(part, columns)
    if df is None:  # a file without rows
        empty = parquet_file(part.path).schema_arrow.empty_table().select(columns)
        return empty.drop_columns([text_column]), strings_from_cudf(cudf.Series([], dtype="str")), None
    text = df[text_column]
    if text.dtype != "object" and str(text.dtype) not in ("str", "string"):
        raise InputError(f"{quote_path(part.path)}: text column {text_column!r} holds {text.dtype}, not strings")
    others = df.drop(columns=[text_column]).to_arrow(preserve_index=False)
    return others, strings_from_cudf(text), text


def write_kept(
    part: Partition,
    columns: list[str] | None,
    kept_rows: np.ndarray,
    extra: dict[str, pa.Array],
    path: str,
    text_column: str,
    lang_column: str | None,
) -> tuple[int, DeviceStrings | None, pa.Array | None]:
    """Writes the kept rows (row numbers from the partition's first row) with
    the `extra` columns appended (uids, matched ids: small, from the host),
    gathered and written on the GPU. Returns (rows written, the kept texts on
    the device for the caller's UTF-8 count, the kept rows' languages)."""
    import cudf

    df = _read(part, columns)
    if df is None:
        df = cudf.DataFrame.from_arrow(parquet_file(part.path).schema_arrow.empty_table().select(columns or []))
    df = df.take(cudf.Series(kept_rows)).reset_index(drop=True)
    for name, values in extra.items():
        if name not in df.columns:
            df[name] = cudf.Series.from_arrow(values)
    write_atomic(path, lambda tmp: df.to_parquet(tmp, index=False))
    texts = strings_from_cudf(df[text_column]) if len(df) else None
    langs = df[lang_column].to_arrow() if lang_column else None
    return len(df), texts, langs
