"""Pass 1 for one partition: read, check, match, write the match index shard.

Returns the partition's stats and its sparse counts; the caller sums counts
over partitions (count.CountAccumulator).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .config import AUTO, UID, CurateConfig
from .count import sparse_counts
from .datacomp import first_non_datacomp_uid
from .errors import InputError
from .images import image_keys
from .outdir import OutDir
from .pool import Partition, read_partition
from .storage import read_json, write_json_atomic, write_parquet_atomic
from .worldwide import load_cached


def _read_pass1(cfg: CurateConfig, part: Partition) -> tuple[pa.Table, str | None]:
    """The partition's columns that pass 1 needs, and its uid column (None: derived uids)."""
    if part.format != "parquet":  # text formats are read whole anyway
        table = read_partition(part, None, cfg.text_column)
        return table, id_column_of(cfg, part, table.column_names)
    id_column = id_column_of(cfg, part, pq.read_schema(part.path).names)
    wanted = [cfg.text_column] + [c for c in (id_column, cfg.lang_column, cfg.image_column) if c]
    return read_partition(part, list(dict.fromkeys(wanted)), cfg.text_column), id_column


def id_column_of(cfg: CurateConfig, part: Partition, names: list[str]) -> str | None:
    if cfg.id_column == AUTO:
        return UID if UID in names else None
    if cfg.id_column != UID and UID in names:  # the outputs' uid column would be ambiguous
        raise InputError(f"{part.path}: has a column {UID!r} but --id-column is {cfg.id_column!r}; use --id-column uid")
    return cfg.id_column


def column_of(table: pa.Table, part: Partition, name: str) -> pa.Array:
    if name not in table.column_names:
        raise InputError(f"{part.path}: no column {name!r} (columns: {', '.join(table.column_names)})")
    return table.column(name).combine_chunks()


def row_uids(table: pa.Table, part: Partition, id_column: str | None) -> pa.Array:
    if id_column is None:  # "<file relative to the pool root>:<row number in the file>"
        rows = pa.array(np.arange(part.first_row, part.first_row + table.num_rows))
        return pc.binary_join_element_wise(f"{part.name}:", rows.cast(pa.string()), "")
    uids = column_of(table, part, id_column)
    if uids.null_count:
        row = part.first_row + int(pc.index(pc.is_null(uids), True).as_py())
        raise InputError(f"{part.path} row {row}: null uid in column {id_column!r}")
    if not (pa.types.is_integer(uids.type) or pa.types.is_string(uids.type) or pa.types.is_large_string(uids.type)):
        raise InputError(f"{part.path}: uid column {id_column!r} must hold integers or strings, not {uids.type}")
    return uids


def _check_datacomp_uids(uids: pa.Array, part: Partition, id_column: str | None) -> None:
    bad = first_non_datacomp_uid(uids)
    if bad is not None:
        raise InputError(
            f"{part.path} row {part.first_row + bad}: uid {uids[bad].as_py()!r} (column {id_column!r}) "
            "is not 32 hex digits, which --datacomp-subset needs"
        )


def checked_texts(table: pa.Table, part: Partition, cfg: CurateConfig) -> tuple[pa.Array, int]:
    """The text column as binary with invalid UTF-8 rows nulled (they match
    nothing and are counted), or an error naming the row with --strict-utf8."""
    texts = column_of(table, part, cfg.text_column)
    if not (
        pa.types.is_string(texts.type)
        or pa.types.is_large_string(texts.type)
        or pa.types.is_binary(texts.type)
        or pa.types.is_large_binary(texts.type)
        or pa.types.is_null(texts.type)
    ):
        raise InputError(f"{part.path}: text column {cfg.text_column!r} holds {texts.type}, not strings")
    texts = texts.cast(pa.large_binary())
    try:
        texts.cast(pa.large_string())  # validates all rows at C speed; the common case
        return texts, 0
    except pa.ArrowInvalid:
        pass
    invalid = np.zeros(len(texts), bool)
    for i, b in enumerate(texts.to_pylist()):  # rare: find the offending rows
        if b is not None:
            try:
                b.decode("utf-8")
            except UnicodeDecodeError:
                invalid[i] = True
    if cfg.strict_utf8:
        raise InputError(f"{part.path} row {part.first_row + int(np.argmax(invalid))}: text is not valid UTF-8")
    return pc.if_else(pa.array(invalid), pa.scalar(None, pa.large_binary()), texts), int(invalid.sum())


def lang_stats(langs: pa.Array | None, **masks: np.ndarray) -> dict[str, dict[str, int]]:
    """Per language code: how many rows each mask selects."""
    if langs is None:
        return {}
    codes = pc.fill_null(langs.cast(pa.string()), "(null)")
    out: dict[str, dict[str, int]] = {}
    for name, mask in masks.items():
        for item in pc.value_counts(codes.filter(pa.array(mask))).to_pylist():
            out.setdefault(item["values"], {})[name] = item["counts"]
    return out


def match_partition(part: Partition, cfg: CurateConfig) -> tuple[dict, np.ndarray, np.ndarray]:
    """Pass 1 for one partition: (stats, entry ids, their counts)."""
    lay = OutDir(cfg.out)
    marker, shard = lay.marker("matches", part), lay.shard("matches", part)
    if marker.exists():  # done before: recount from the shard
        ids = pq.read_table(shard, columns=["matched_entry_ids"]).column(0).combine_chunks().values
        return read_json(marker), *sparse_counts(ids.to_numpy(), load_cached(cfg.metadata_ref).n_entries)
    table, id_column = _read_pass1(cfg, part)
    texts, n_invalid = checked_texts(table, part, cfg)
    uids = row_uids(table, part, id_column)
    if cfg.datacomp_subset:
        _check_datacomp_uids(uids, part, id_column)
    langs = column_of(table, part, cfg.lang_column).cast(pa.string()) if cfg.lang_column else None
    res, no_list = load_cached(cfg.metadata_ref).match(texts, langs, cfg.device, cfg.threads)
    lengths = np.diff(res.offsets)
    matched = lengths > 0
    rows = np.flatnonzero(matched)
    index = pa.table(
        {
            "row": pa.array(rows + part.first_row, pa.int64()),
            UID: uids.take(pa.array(rows)),
            "matched_entry_ids": pa.ListArray.from_arrays(
                pa.array(np.concatenate([[0], np.cumsum(lengths[rows])]).astype(np.int32)), pa.array(res.entry_ids)
            ),
        }
    )
    if cfg.image_column:  # what one-text-per-image selection needs, for matched rows only
        images = column_of(table, part, cfg.image_column).take(pa.array(rows))
        index = index.append_column("part", pa.array(np.full(len(rows), part.index, np.int32)))
        index = index.append_column(
            "image_key",
            pa.array(image_keys(images), pa.uint64(), mask=images.is_null().to_numpy(zero_copy_only=False)),
        )
    write_parquet_atomic(index, shard)
    stats = {
        "file": part.name,
        "rows_in": table.num_rows,
        "rows_null_text": int(table.column(cfg.text_column).null_count),
        "rows_invalid_utf8": n_invalid,
        "rows_no_metadata_lang": no_list,
        "rows_matched": len(rows),
        "pairs_matched": len(res.entry_ids),
        "languages": lang_stats(langs, rows_in=np.ones(table.num_rows, bool), rows_matched=matched),
    }
    write_json_atomic(stats, marker)  # last: marks the partition complete
    return stats, *sparse_counts(res.entry_ids, load_cached(cfg.metadata_ref).n_entries)
