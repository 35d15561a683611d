"""The curation run (SPEC.md sections 5-8): pass 1 matches and counts, pass 2 samples.

    out/
      run.json              what produced this directory (refuses a different run)
      matches/part-N.parquet  row, uid, matched_entry_ids of every matched row
      matches/_part-N.json    pass-1 stats: written last, so it marks the shard complete
      entry_counts.parquet  entry_id, entry, count (uint64) [, lang]
      kept/part-N.parquet     kept rows: the pool's columns + uid
      kept/_part-N.json       pass-2 stats, tagged with the balance parameters
      summary.json          written last: the run is complete when it exists

One task per partition, on a Dask cluster (or in this process). A task whose
marker exists is skipped, so rerunning a killed run resumes it, and the
outputs depend only on (pool, metadata, t, seed): sampling is a hash of
(seed, uid, entry), never of partitioning or order.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import __version__, _core
from .balance import entry_probabilities, keep_mask, uid_keys, worldwide_probabilities, worldwide_thresholds
from .count import CountAccumulator, sparse_counts
from .errors import InputError
from .io import (
    Partition,
    expand_inputs,
    plan_partitions,
    read_json,
    read_partition,
    write_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from .match import MatchResult, resolve_device
from .worldwide import MetadataRef, load_cached

UID = "uid"
AUTO = "auto"  # --id-column default: the pool's `uid` column if it has one, else derived


@dataclass(frozen=True)
class CurateConfig:
    inputs: tuple[str, ...]
    metadata: str
    out: str
    text_column: str = "text"
    id_column: str = AUTO
    lang_column: str | None = None
    columns: tuple[str, ...] | None = None  # passed through to kept/; None: all
    padding: str | None = None  # None: metaclip1, or worldwide for per-language metadata
    t: float = 20_000
    t_en: float = 170_000
    seed: int = 0
    partition_rows: int = 100_000
    device: str = "cpu"
    strict_utf8: bool = False
    keep_matched_ids: bool = False  # also write matched_entry_ids into kept/
    datacomp_subset: str | None = None
    image_column: str | None = None  # several texts per image: keep one per image (SPEC section 7)
    threads: int = 1  # walk threads per task; parallelism comes from Dask

    def pass1_identity(self, files: list[Path]) -> dict:
        """What pass 1's outputs depend on: a run in the same --out must agree."""
        return {
            "inputs": [[str(f.resolve()), f.stat().st_size] for f in files],
            "metadata": load_cached(self.metadata_ref).fingerprint,
            "text_column": self.text_column,
            "id_column": self.id_column,
            "lang_column": self.lang_column,
            "padding": load_cached(self.metadata_ref).padding,
            "partition_rows": self.partition_rows,
            "image_column": self.image_column,
        }

    @property
    def metadata_ref(self) -> MetadataRef:
        return MetadataRef(str(Path(self.metadata).resolve()), self.padding)

    @property
    def balance_id(self) -> str:
        """Tags kept/ shards: a rerun with other parameters rewrites them."""
        key = repr((self.t, self.t_en, self.seed, self.columns, self.keep_matched_ids))
        return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass
class Layout:
    out: Path

    def __post_init__(self):
        self.out = Path(self.out)

    run = property(lambda self: self.out / "run.json")
    counts = property(lambda self: self.out / "entry_counts.parquet")
    summary = property(lambda self: self.out / "summary.json")

    def shard(self, stage: str, part: Partition) -> Path:
        return self.out / stage / f"{part.shard}.parquet"

    def marker(self, stage: str, part: Partition) -> Path:
        """Stats of a finished shard; the leading _ hides it from parquet dataset readers."""
        return self.out / stage / f"_{part.shard}.json"


# -- pass 1: read, match, write the match index --------------------------------------
def _read_pass1(cfg: CurateConfig, part: Partition) -> tuple[pa.Table, str | None]:
    """The partition's columns that pass 1 needs, and its uid column (None: derived uids)."""
    if part.format != "parquet":  # text formats are read whole anyway
        table = read_partition(part, None, cfg.text_column)
        return table, _id_column(cfg, part, table.column_names)
    id_column = _id_column(cfg, part, pq.read_schema(part.path).names)
    wanted = [cfg.text_column] + [c for c in (id_column, cfg.lang_column, cfg.image_column) if c]
    return read_partition(part, list(dict.fromkeys(wanted)), cfg.text_column), id_column


def _id_column(cfg: CurateConfig, part: Partition, names: list[str]) -> str | None:
    if cfg.id_column == AUTO:
        return UID if UID in names else None
    if cfg.id_column != UID and UID in names:  # the outputs' uid column would be ambiguous
        raise InputError(f"{part.path}: has a column {UID!r} but --id-column is {cfg.id_column!r}; use --id-column uid")
    return cfg.id_column


def _column(table: pa.Table, part: Partition, name: str) -> pa.Array:
    if name not in table.column_names:
        raise InputError(f"{part.path}: no column {name!r} (columns: {', '.join(table.column_names)})")
    return table.column(name).combine_chunks()


def _uids(table: pa.Table, part: Partition, id_column: str | None) -> pa.Array:
    if id_column is None:  # "<file relative to the pool root>:<row number in the file>"
        rows = pa.array(np.arange(part.first_row, part.first_row + table.num_rows))
        return pc.binary_join_element_wise(f"{part.name}:", rows.cast(pa.string()), "")
    uids = _column(table, part, id_column)
    if uids.null_count:
        row = part.first_row + int(pc.index(pc.is_null(uids), True).as_py())
        raise InputError(f"{part.path} row {row}: null uid in column {id_column!r}")
    if not (pa.types.is_integer(uids.type) or pa.types.is_string(uids.type) or pa.types.is_large_string(uids.type)):
        raise InputError(f"{part.path}: uid column {id_column!r} must hold integers or strings, not {uids.type}")
    return uids


def _checked_texts(table: pa.Table, part: Partition, cfg: CurateConfig) -> tuple[pa.Array, int]:
    """The text column as binary with invalid UTF-8 rows nulled (they match
    nothing and are counted), or an error naming the row with --strict-utf8."""
    texts = _column(table, part, cfg.text_column)
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


def _lang_stats(langs: pa.Array | None, **masks: np.ndarray) -> dict[str, dict[str, int]]:
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
    lay = Layout(cfg.out)
    marker, shard = lay.marker("matches", part), lay.shard("matches", part)
    if marker.exists():  # done before: recount from the shard
        ids = pq.read_table(shard, columns=["matched_entry_ids"]).column(0).combine_chunks().values
        return read_json(marker), *sparse_counts(ids.to_numpy(), load_cached(cfg.metadata_ref).n_entries)
    table, id_column = _read_pass1(cfg, part)
    texts, n_invalid = _checked_texts(table, part, cfg)
    uids = _uids(table, part, id_column)
    langs = _column(table, part, cfg.lang_column).cast(pa.string()) if cfg.lang_column else None
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
        images = _column(table, part, cfg.image_column).take(pa.array(rows))
        index = index.append_column("part", pa.array(np.full(len(rows), part.index, np.int32)))
        index = index.append_column(
            "image_key",
            pa.array(_image_keys(images), pa.uint64(), mask=images.is_null().to_numpy(zero_copy_only=False)),
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
        "languages": _lang_stats(langs, rows_in=np.ones(table.num_rows, bool), rows_matched=matched),
    }
    write_json_atomic(stats, marker)  # last: marks the partition complete
    return stats, *sparse_counts(res.entry_ids, load_cached(cfg.metadata_ref).n_entries)


# -- one text per image (SPEC section 7) ------------------------------------------------
IMAGE_ENTRY = -1  # a row's image score is u(seed, uid, -1): no entry has that id


def _image_keys(images: pa.Array) -> np.ndarray:
    """64-bit image keys by the uid rule: integers as they are, strings and bytes hashed."""
    if pa.types.is_binary(images.type) or pa.types.is_large_binary(images.type):
        images = images.cast(pa.large_string(), safe=False)  # hashing reads the bytes; no decoding
    return uid_keys(images)


def _scored_images(shard: str, seed: int):
    """part, row, image_key, score of a match shard's rows that have an image."""
    table = pq.read_table(shard, columns=["part", "row", UID, "image_key"]).filter(pc.is_valid(pc.field("image_key")))
    keys = uid_keys(table.column(UID))
    score = _core.uniforms(np.uint64(seed), keys, np.full(len(keys), IMAGE_ENTRY, np.int32))
    return table.drop_columns([UID]).append_column("score", pa.array(score)).to_pandas()


def select_one_text_per_image(cfg: CurateConfig, parts: list[Partition]) -> None:
    """Among matched rows sharing an image key, only the one with the smallest
    image score competes in sampling; write the others to
    image_dropped/part=K/ for pass 2. A Dask group-by and merge (a shuffle of
    four small columns of matched rows), so memory stays bounded by partitions."""
    import shutil

    import dask.dataframe as dd

    lay = Layout(cfg.out)
    target, tmp = lay.out / "image_dropped", lay.out / ".image_dropped.tmp"
    done = target / f"_{cfg.balance_id}"
    if done.exists():
        return
    shards = [str(lay.shard("matches", part)) for part in parts]
    rows = dd.from_map(_scored_images, shards, seed=cfg.seed)
    best = rows.groupby("image_key")["score"].min(split_out=max(1, rows.npartitions // 8)).rename("best").reset_index()
    merged = rows.merge(best, on="image_key", how="inner")
    losers = merged[merged["score"] > merged["best"]][["part", "row"]]
    shutil.rmtree(tmp, ignore_errors=True)
    losers.to_parquet(tmp, partition_on=["part"], write_index=False)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # whole directory at once: pass 2 never sees half of it
    done.write_text("")


def _lost_image(cfg: CurateConfig, part: Partition, rows: np.ndarray) -> np.ndarray:
    """Which of these matched rows gave their image to another row."""
    where = Layout(cfg.out).out / "image_dropped" / f"part={part.index}"
    if not cfg.image_column or not where.exists():
        return np.zeros(len(rows), bool)
    return np.isin(rows, pq.read_table(where, columns=["row"]).column(0).to_numpy())


# -- pass 2: sample from the match index, write the kept rows ------------------------
def balance_partition(part: Partition, cfg: CurateConfig, p: np.ndarray) -> dict:
    """Pass 2 for one partition: the kept rows, with every passed-through column."""
    lay = Layout(cfg.out)
    marker, shard = lay.marker("kept", part), lay.shard("kept", part)
    if marker.exists():
        stats = read_json(marker)
        if stats.get("balance_id") == cfg.balance_id:
            return stats
    index = pq.read_table(lay.shard("matches", part))
    ids = index.column("matched_entry_ids").combine_chunks()
    result = MatchResult(ids.offsets.to_numpy().astype(np.int64), ids.values.to_numpy().astype(np.int32))
    uids = index.column(UID).combine_chunks()
    if cfg.device == "gpu":
        from .gpu_engine import keep_rows_gpu, uid_keys_gpu

        keep = keep_rows_gpu(result.offsets, result.entry_ids, uid_keys_gpu(uids), p, cfg.seed).get()
    else:
        keep = keep_mask(result, uid_keys(uids), p, cfg.seed, cfg.threads)
    rows = index.column("row").to_numpy()
    lost_image = _lost_image(cfg, part, rows)
    keep &= ~lost_image
    kept_rows = rows[keep] - part.first_row
    table = read_partition(part, _kept_columns(cfg, part), cfg.text_column).take(pa.array(kept_rows))
    table = _with_text_as_string(table, cfg.text_column)
    if UID not in table.column_names:
        table = table.append_column(UID, uids.filter(pa.array(keep)))
    if cfg.keep_matched_ids:
        table = table.append_column("matched_entry_ids", ids.filter(pa.array(keep)))
    write_parquet_atomic(table, shard)
    langs = table.column(cfg.lang_column).combine_chunks() if cfg.lang_column else None
    stats = {
        "file": part.name,
        "rows_kept": table.num_rows,
        "rows_same_image_dropped": int(lost_image.sum()),
        "balance_id": cfg.balance_id,
        "languages": _lang_stats(langs, rows_kept=np.ones(table.num_rows, bool)),
    }
    write_json_atomic(stats, marker)
    return stats


def _kept_columns(cfg: CurateConfig, part: Partition) -> list[str] | None:
    if cfg.columns is None:
        return None
    wanted = [cfg.text_column, *cfg.columns] + [c for c in (cfg.lang_column,) if c]
    return list(dict.fromkeys(wanted))


def _with_text_as_string(table: pa.Table, column: str) -> pa.Table:
    """Kept texts are valid UTF-8 (invalid rows match nothing): store them as strings."""
    i = table.column_names.index(column)
    if pa.types.is_binary(table.schema.field(i).type) or pa.types.is_large_binary(table.schema.field(i).type):
        table = table.set_column(i, column, table.column(i).cast(pa.large_string()))
    return table


# -- execution ------------------------------------------------------------------------
class Executor:
    """Runs one task per partition on a Dask cluster, or here when client is None."""

    def __init__(self, client=None, progress: bool = True):
        self.client = client
        self.progress = progress

    def map(self, fn: Callable, parts: list[Partition], label: str, **kwargs) -> Iterator:
        with _progress(label, len(parts), self.progress) as advance:
            if self.client is None:
                for part in parts:
                    yield fn(part, **kwargs)
                    advance()
                return
            from distributed import as_completed

            scattered = {
                k: self.client.scatter(v, broadcast=True) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()
            }
            futures = self.client.map(
                fn, parts, **scattered, key=[f"{label}-{p.shard}-{time.time_ns()}" for p in parts]
            )
            try:
                for future in as_completed(futures):
                    yield future.result()  # re-raises the task's error here, with its message
                    advance()
            finally:
                self.client.cancel(futures)


class _progress:
    def __init__(self, label: str, total: int, enabled: bool):
        self.label, self.total, self.enabled = label, total, enabled

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(
            "[bold]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.bar.__enter__()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.__exit__(*exc)


# -- the run --------------------------------------------------------------------------
@dataclass
class Totals:
    """Stats summed over partitions, overall, per file and per language."""

    overall: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    languages: dict = field(default_factory=dict)

    def add(self, stats: dict) -> None:
        for key, value in stats.items():
            if key.startswith(("rows_", "pairs_")):
                self.overall[key] = self.overall.get(key, 0) + value
                per_file = self.files.setdefault(stats["file"], {})
                per_file[key] = per_file.get(key, 0) + value
        for lang, counts in stats.get("languages", {}).items():
            mine = self.languages.setdefault(lang, {})
            for key, value in counts.items():
                mine[key] = mine.get(key, 0) + value


def curate(cfg: CurateConfig, client=None, progress: bool = True, log: Callable[[str], None] = lambda s: None) -> dict:
    """Run passes 1 and 2 (resuming whatever a previous run of the same
    command finished) and return the summary."""
    cfg = replace(cfg, device=resolve_device(cfg.device))  # a one-line error before any work
    files = expand_inputs(list(cfg.inputs))
    lay = Layout(cfg.out)
    mdset = load_cached(cfg.metadata_ref)
    identity = cfg.pass1_identity(files)
    if lay.run.exists() and read_json(lay.run)["pass1"] != identity:
        raise InputError(
            f"{lay.out}: holds the outputs of a different run (other pool, metadata or options); use a new --out"
        )
    lay.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic({"pass1": identity, "config": _jsonable(cfg)}, lay.run)
    parts = plan_partitions(files, cfg.partition_rows, cfg.text_column)
    lists = ", ".join(lang or "one list" for lang in mdset.lists)
    log(f"{len(files)} files, {len(parts)} partitions, {mdset.n_entries:,} entries ({lists})")
    started = time.perf_counter()
    for lang in mdset.lists:  # built once here, so local workers load it from the disk cache
        mdset.automaton(lang)
    log(f"automata ready in {time.perf_counter() - started:.1f} s")

    executor = Executor(client, progress)
    started = time.perf_counter()
    counts, pass1 = CountAccumulator(mdset.n_entries), Totals()
    for stats, ids, n in executor.map(match_partition, parts, "pass 1: match", cfg=cfg):
        pass1.add(stats)
        counts.add(ids, n)
    table = mdset.entry_table().append_column("count", pa.array(counts.counts, pa.uint64()))
    write_parquet_atomic(table, lay.counts)
    timings = {"pass1_s": time.perf_counter() - started}
    return _balance(cfg, parts, table, pass1, timings, executor, log)


def balance(
    out: str | Path,
    t: float | None = None,
    t_en: float | None = None,
    seed: int | None = None,
    client=None,
    progress: bool = True,
    log=lambda s: None,
) -> dict:
    """Redo pass 2 of a finished run with other parameters (no matching)."""
    lay = Layout(out)
    if not lay.counts.exists() or not lay.run.exists():
        raise InputError(f"{lay.out}: no finished pass 1 here (run `gpu-curate curate` first)")
    saved = read_json(lay.run)["config"]
    cfg = CurateConfig(
        **{**saved, "inputs": tuple(saved["inputs"]), "columns": tuple(saved["columns"]) if saved["columns"] else None}
    )
    cfg = replace(
        cfg, out=str(lay.out), **{k: v for k, v in (("t", t), ("t_en", t_en), ("seed", seed)) if v is not None}
    )
    parts = plan_partitions(expand_inputs(list(cfg.inputs)), cfg.partition_rows, cfg.text_column)
    pass1 = Totals()
    for part in parts:
        marker = lay.marker("matches", part)
        if not marker.exists():
            raise InputError(f"{marker}: missing; pass 1 did not finish (rerun `gpu-curate curate`)")
        pass1.add(read_json(marker))
    write_json_atomic({**read_json(lay.run), "config": _jsonable(cfg)}, lay.run)
    return _balance(cfg, parts, pq.read_table(lay.counts), pass1, {}, Executor(client, progress), log)


def _balance(cfg, parts, counts_table: pa.Table, pass1: Totals, timings: dict, executor: Executor, log) -> dict:
    lay = Layout(cfg.out)
    lay.summary.unlink(missing_ok=True)  # kept/ is about to change: the run is incomplete until rewritten
    counts = counts_table.column("count").to_numpy()
    thresholds = None
    if "lang" in counts_table.column_names:
        langs = counts_table.column("lang").to_numpy(zero_copy_only=False)
        names, starts = np.unique(langs, return_index=True)
        ranges = {str(n): (int(s), int(s + (langs == n).sum())) for n, s in zip(names, starts)}
        thresholds = worldwide_thresholds(counts, ranges, cfg.t_en)
        p = worldwide_probabilities(counts, ranges, thresholds)
    else:
        p = entry_probabilities(counts, cfg.t)
    if cfg.image_column:
        started = time.perf_counter()
        log("choosing one text per image")
        select_one_text_per_image(cfg, parts)
        timings["image_selection_s"] = time.perf_counter() - started
    started = time.perf_counter()
    pass2 = Totals()
    for stats in executor.map(balance_partition, parts, "pass 2: sample", cfg=cfg, p=p):
        pass2.add(stats)
    timings["pass2_s"] = time.perf_counter() - started
    if cfg.datacomp_subset:
        write_datacomp_subset(lay.out / "kept", cfg.datacomp_subset)
    summary = _summary(cfg, pass1, pass2, thresholds, timings, counts_table)
    write_json_atomic(summary, lay.summary)
    log(format_summary(summary))
    return summary


def _summary(cfg, pass1: Totals, pass2: Totals, thresholds, timings, counts_table) -> dict:
    mdset_padding = read_json(Layout(cfg.out).run)["pass1"]["padding"]
    overall = {**pass1.overall, **pass2.overall}
    files = {name: {**stats, **pass2.files.get(name, {})} for name, stats in pass1.files.items()}
    for stats in files.values():
        stats["rows_dropped"] = stats["rows_in"] - stats.get("rows_kept", 0)
    languages = {lang: {**stats, **pass2.languages.get(lang, {})} for lang, stats in pass1.languages.items()}
    if thresholds is not None:
        for lang in sorted(set(thresholds) | set(languages)):
            languages.setdefault(lang, {})["t"] = thresholds.get(lang)
    total_s = sum(timings.values())
    return {
        **{
            k: overall.get(k, 0)
            for k in (
                "rows_in",
                "rows_null_text",
                "rows_invalid_utf8",
                "rows_no_metadata_lang",
                "rows_matched",
                "rows_same_image_dropped",
                "rows_kept",
                "pairs_matched",
            )
        },
        "t": cfg.t if thresholds is None else None,
        "t_en": cfg.t_en if thresholds is not None else None,
        "thresholds": thresholds,
        "seed": cfg.seed,
        "padding": mdset_padding,
        "device": cfg.device,
        "entries": counts_table.num_rows,
        "entries_matched": int(pc.sum(pc.greater(counts_table.column("count"), 0)).as_py() or 0),
        "timings": {
            **timings,
            "rows_per_s": overall.get("rows_in", 0) / total_s if "pass1_s" in timings and total_s else None,
        },
        "files": files,
        "languages": languages,
        "versions": _versions(),
    }


def format_summary(s: dict) -> str:
    def share(k):
        return f"{s[k]:,} ({100 * s[k] / s['rows_in']:.1f}%)" if s["rows_in"] else "0"

    lines = [
        f"rows in       {s['rows_in']:,}   (null text {s['rows_null_text']:,}, invalid UTF-8 {s['rows_invalid_utf8']:,}, no metadata for language {s['rows_no_metadata_lang']:,})",
        f"rows matched  {share('rows_matched')}   pairs {s['pairs_matched']:,}, entries hit {s['entries_matched']:,} of {s['entries']:,}",
        *(
            [f"same image    {s['rows_same_image_dropped']:,} matched rows left to another text of their image"]
            if s["rows_same_image_dropped"]
            else []
        ),
        f"rows kept     {share('rows_kept')}   "
        + (f"t={s['t']:g}" if s["t"] is not None else f"t_en={s['t_en']:g}")
        + f", seed={s['seed']}",
    ]
    if s["timings"].get("rows_per_s"):
        lines.append(
            f"time          pass 1 {s['timings']['pass1_s']:.1f} s, pass 2 {s['timings']['pass2_s']:.1f} s, {s['timings']['rows_per_s']:,.0f} rows/s"
        )
    return "\n".join(lines)


def _jsonable(cfg: CurateConfig) -> dict:
    d = asdict(cfg)
    d["inputs"] = [str(Path(x).resolve()) if Path(x).exists() else x for x in cfg.inputs]
    d["metadata"] = str(Path(cfg.metadata).resolve())
    d["columns"] = list(cfg.columns) if cfg.columns is not None else None
    return d


def _versions() -> dict:
    import dask
    import distributed

    return {
        "gpu_curate": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "platform": platform.platform(),
    }


# -- DataComp subset ------------------------------------------------------------------
DATACOMP_DTYPE = np.dtype("u8,u8")  # a 128-bit uid as (high, low) 64-bit halves


def datacomp_uids(uids: Iterable[str]) -> np.ndarray:
    """DataComp's subset format: 32-hex-digit uids as sorted (high, low) pairs."""
    uids = list(uids)
    bad = next((u for u in uids if not (isinstance(u, str) and len(u) == 32 and _is_hex(u))), None)
    if bad is not None:
        raise InputError(f"--datacomp-subset needs DataComp uids (32 hex digits); got {bad!r}")
    out = np.array([(int(u[:16], 16), int(u[16:], 16)) for u in uids], DATACOMP_DTYPE)
    out.sort()
    return out


def _is_hex(s: str) -> bool:
    try:
        int(s, 16)
        return True
    except ValueError:
        return False


def write_datacomp_subset(kept_dir: Path, path: str) -> None:
    uids = []
    for shard in sorted(Path(kept_dir).glob("part-*.parquet")):
        uids.extend(pq.read_table(shard, columns=[UID]).column(0).to_pylist())
    subset = datacomp_uids(uids)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a name
            np.save(f, subset, allow_pickle=False)

    write_atomic(path, write)


# -- clusters -------------------------------------------------------------------------
def make_client(
    device: str,
    workers: int | None,
    threads_per_worker: int | None,
    memory_limit: str,
    scheduler_address: str | None,
    **cuda_options,
):
    """A distributed Client: on an existing scheduler, or on a new local cluster."""
    from distributed import Client, LocalCluster

    if scheduler_address:
        return Client(scheduler_address)
    if device == "gpu":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise InputError("--device gpu needs dask-cuda for its cluster: pip install 'gpu_curate[gpu]'") from None
        return Client(
            LocalCUDACluster(
                memory_limit=memory_limit,
                silence_logs=logging.CRITICAL,
                **{k: v for k, v in cuda_options.items() if v is not None},
            )
        )
    from .match import default_threads

    cores = default_threads()
    workers = workers or 1
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=threads_per_worker or max(1, cores // workers),
        memory_limit=memory_limit,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.CRITICAL,  # a failed task's error reaches the user once, from the client
    )
    return Client(cluster)
