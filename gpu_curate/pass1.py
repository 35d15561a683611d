"""Pass 1 for one partition: read, check, match, write the match index shard.

Returns the partition's stats and its sparse counts; the caller sums counts
over partitions (count.CountAccumulator).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import matchindex
from .config import AUTO, UID, CurateConfig
from .count import sparse_counts
from .datacomp import first_non_datacomp_uid
from .errors import InputError
from .fs import quote_path
from .outdir import OutDir
from .images import image_key_column
from .partition import Partition
from .engines import CpuEngine, engine_for, text_column
from .readers import parquet_columns
from .storage import read_json, write_json_atomic
from .worldwide import load_cached


def _read_pass1(cfg: CurateConfig, part: Partition, eng: CpuEngine) -> tuple[pa.Table, object, str | None]:
    """(the columns pass 1 needs but the text, the text where the engine walks
    it, the uid column or None for derived uids)."""
    if part.format != "parquet":  # text formats are read whole anyway
        table, texts = eng.read(part, None, cfg.text_column)
        return table, texts, id_column_of(cfg, part, table.column_names)
    id_column = id_column_of(cfg, part, parquet_columns(part.path))
    wanted = [cfg.text_column] + [c for c in (id_column, cfg.lang_column, cfg.image_column) if c]
    return *eng.read(part, list(dict.fromkeys(wanted)), cfg.text_column), id_column


def id_column_of(cfg: CurateConfig, part: Partition, names: list[str]) -> str | None:
    if cfg.id_column == AUTO:
        return UID if UID in names else None
    if cfg.id_column != UID and UID in names:  # the outputs' uid column would be ambiguous
        raise InputError(
            f"{quote_path(part.path)}: has a column {UID!r} but --id-column is {cfg.id_column!r}; use --id-column uid"
        )
    return cfg.id_column


def column_of(table: pa.Table, part: Partition, name: str) -> pa.Array:
    if name not in table.column_names:
        raise InputError(f"{quote_path(part.path)}: no column {name!r} (columns: {', '.join(table.column_names)})")
    return table.column(name).combine_chunks()


def pool_uids(table: pa.Table, part: Partition, id_column: str | None) -> pa.Array | None:
    """The pool's uid column, checked; None where uids are derived (`<file>:<row>`)."""
    if id_column is None:
        return None
    uids = column_of(table, part, id_column)
    if uids.null_count:
        row = part.first_row + int(pc.index(pc.is_null(uids), True).as_py())
        raise InputError(f"{quote_path(part.path)} row {row}: null uid in column {id_column!r}")
    if not (pa.types.is_integer(uids.type) or pa.types.is_string(uids.type) or pa.types.is_large_string(uids.type)):
        raise InputError(
            f"{quote_path(part.path)}: uid column {id_column!r} must hold integers or strings, not {uids.type}"
        )
    return uids


def row_uids(table: pa.Table, part: Partition, id_column: str | None) -> pa.Array:
    """Every row's uid: the pool's, or derived as `<file relative to the pool root>:<row in the file>`."""
    uids = pool_uids(table, part, id_column)
    if uids is not None:
        return uids
    rows = pa.array(np.arange(part.first_row, part.first_row + table.num_rows))
    return pc.binary_join_element_wise(f"{part.name}:", rows.cast(pa.string()), "")


def _check_datacomp_uids(uids: pa.Array | None, part: Partition, id_column: str | None) -> None:
    bad = first_non_datacomp_uid(uids) if uids is not None else 0  # derived uids are never 32 hex digits
    if bad is not None:
        what = f"uid {uids[bad].as_py()!r} (column {id_column!r})" if uids is not None else "derived uids"
        raise InputError(
            f"{quote_path(part.path)} row {part.first_row + bad}: {what} is not 32 hex digits, "
            "which --datacomp-subset needs"
        )


def checked_texts(table: pa.Table, part: Partition, cfg: CurateConfig) -> tuple[pa.Array, int]:
    """The text column of a host table and its number of rows that are not
    valid UTF-8 (`gpu-curate match`). Those rows still match on their bytes
    (docs/semantics.md section 2); --strict-utf8 makes the first an error."""
    texts = text_column(table, part, cfg.text_column)
    return texts, _invalid_utf8(CpuEngine(), texts, part, cfg)


def _invalid_utf8(eng: CpuEngine, texts, part: Partition, cfg: CurateConfig) -> int:
    n, first = eng.invalid_utf8(texts)
    if cfg.strict_utf8 and n:
        raise InputError(f"{quote_path(part.path)} row {part.first_row + first}: text is not valid UTF-8")
    return n


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
    mdset = load_cached(cfg.metadata_ref)
    if marker.exists():  # done before: recount from the shard
        ids = matchindex.match_result(matchindex.read(shard)).entry_ids
        return read_json(marker), *sparse_counts(ids, mdset.n_entries)
    eng = engine_for(cfg.device, cfg.gpu_reader, cfg.threads)
    table, texts, id_column = _read_pass1(cfg, part, eng)
    n_invalid = _invalid_utf8(eng, texts, part, cfg)
    uids = pool_uids(table, part, id_column)
    if cfg.datacomp_subset:
        _check_datacomp_uids(uids, part, id_column)
    langs = column_of(table, part, cfg.lang_column).cast(pa.string()) if cfg.lang_column else None
    found = eng.match(mdset, texts, langs)
    taken = pa.array(found.rows)
    images = column_of(table, part, cfg.image_column).take(taken) if cfg.image_column else None
    index = matchindex.build(
        found.rows + part.first_row,
        found.result,
        uids=uids.take(taken) if uids is not None else None,
        uid_prefix=f"{part.name}:" if uids is None else None,
        image_keys=image_key_column(images) if images is not None else None,
    )
    matchindex.write(index, shard)
    n_rows = eng.n_rows(texts)
    matched = np.zeros(n_rows, bool)
    matched[found.rows] = True
    stats = {
        "file": part.name,
        "rows_in": n_rows,
        "rows_null_text": eng.null_count(texts),
        "rows_invalid_utf8": n_invalid,
        "rows_no_metadata_lang": found.no_list,
        "rows_matched": len(found.rows),
        "pairs_matched": len(found.result.entry_ids),
        "languages": lang_stats(langs, rows_in=np.ones(n_rows, bool), rows_matched=matched),
    }
    write_json_atomic(stats, marker)  # last: marks the partition complete
    return stats, *found.counts
