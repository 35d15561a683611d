"""The curation run (docs/semantics.md sections 5-8): pass 1 matches and counts, pass 2 samples.

    curate   pass 1 over every partition (resuming), the global counts, then balance
    balance  pass 2 alone, from a finished pass 1, with new t / seed

One task per partition (pass1.match_partition, pass2.balance_partition), on a
Dask cluster or in this process (executor.Executor). A task whose marker
exists is skipped, so rerunning a killed run resumes it, and the outputs
depend only on (pool, metadata, t, seed): sampling is a hash of
(seed, uid, entry), never of partitioning or order. Output layout: outdir.py.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from contextlib import nullcontext
from typing import Callable, ContextManager

import pyarrow as pa
import pyarrow.parquet as pq

from .balance import balancing, lang_ranges
from .checks import check_numbers, check_run
from .config import CurateConfig
from .count import CountAccumulator
from .datacomp import write_datacomp_subset
from .engines import resolve_reader
from .errors import InputError
from .executor import Executor
from .fs import quote_path
from .gpu_backend import device_label
from .images import select_one_text_per_image
from .match import resolve_device
from .outdir import OutDir
from .pass1 import match_partition
from .pass2 import balance_partition
from .identity import changed_input, input_identity
from .pool import Pool, find_pool, plan_partitions
from .storage import read_json, write_json_atomic, write_parquet_atomic
from .summary import Totals, build_summary, format_summary
from .worldwide import load_cached

__all__ = ["CurateConfig", "curate", "balance"]


def curate(
    cfg: CurateConfig,
    client=None,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: None,
    cluster: Callable[[], ContextManager] | None = None,
) -> dict:
    """Run passes 1 and 2 (resuming whatever a previous run of the same
    command finished) and return the summary.

    Every check (checks.check_run) passes before anything is written to
    --out. `cluster`, if given, makes a context manager yielding the Dask
    client (cluster.LocalOrRemoteClient); it is entered only once the checks
    passed and work remains, so a bad option or a finished run starts no cluster.
    """
    device = resolve_device(cfg.device)
    cfg = replace(cfg, device=device, gpu_reader=resolve_reader(device, cfg.gpu_reader))
    pool = find_pool(list(cfg.inputs), exclude=cfg.out)
    check_run(cfg, pool.files)
    lay = OutDir(cfg.out)
    identity = cfg.pass1_identity(input_identity(pool.files, cfg.verify_inputs))
    previous = read_json(lay.run) if lay.run.exists() else None
    same = previous is not None and _same_run(lay, previous["pass1"], identity, refuse=lay.has_shards())
    if same and _complete(cfg, previous, lay):
        summary = read_json(lay.summary)
        log(f"{quote_path(lay.out)}: already complete (the same command finished before); nothing to do")
        log(format_summary(summary, timings=False))
        return summary

    with cluster() if cluster is not None else nullcontext(client) as client:  # an unreachable one fails here
        parts = plan_partitions(pool.files, cfg.partition_rows, cfg.text_column, cfg.tar_text)
        mdset = load_cached(cfg.metadata_ref)
        lists = ", ".join(lang or "one list" for lang in mdset.lists)
        skipped = f", {len(pool.skipped)} skipped (listed in summary.json)" if pool.skipped else ""
        log(
            f"{len(pool.files)} files{skipped}, {len(parts)} partitions, {mdset.n_entries:,} entries ({lists}), "
            f"on {device_label(cfg.device)}"
        )
        started = time.perf_counter()
        for lang in mdset.lists:  # built once here, so local workers load it from the disk cache
            mdset.automaton(lang)
        log(f"automata ready in {time.perf_counter() - started:.1f} s")

        lay.summary.unlink(missing_ok=True)  # from here on, the outputs are those of this command
        lay.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic({"pass1": identity, "config": cfg.to_json(), "curate_command": cfg.command}, lay.run)
        executor = Executor(client, progress)
        resumed = sum(lay.marker("matches", part).exists() for part in parts)
        started = time.perf_counter()
        counts, pass1 = CountAccumulator(mdset.n_entries), Totals()
        for stats, ids, n in executor.map(match_partition, parts, "pass 1: match", cfg=cfg):
            pass1.add(stats)
            counts.add(ids, n)
        table = mdset.entry_table().append_column("count", pa.array(counts.counts, pa.uint64()))
        write_parquet_atomic(table, lay.counts)
        timings = {"pass1_s": time.perf_counter() - started}
        if resumed:  # rows/s over a resumed run would count rows matched before
            timings["pass1_partitions_done_before"] = resumed
        return _balance(cfg, pool, parts, table, pass1, timings, executor, log)


def _same_run(lay: OutDir, old: dict, new: dict, refuse: bool) -> bool:
    """Whether --out was made by this very pass 1 (same pool, metadata and
    options). Where it holds pass-1 shards, a different run is refused in one
    line (naming the pool file that changed); without shards it is harmless
    and simply replaced."""
    try:
        if _refuse_changed_pool(old["inputs"], new["inputs"]):
            old = {**old, "inputs": new["inputs"]}  # the same files (with --verify-inputs, perhaps touched)
    except InputError:
        if refuse:
            raise
        return False
    if old != new and refuse:
        raise InputError(
            f"{quote_path(lay.out)}: holds the outputs of a different run (other pool, metadata or options); "
            "use a new --out"
        )
    return old == new


def _complete(cfg: CurateConfig, previous: dict, lay: OutDir) -> bool:
    """Whether --out holds the finished outputs of exactly this command."""
    return (
        lay.summary.exists()
        and _options(previous["config"]) == _options(cfg.to_json())
        and (not cfg.datacomp_subset or Path(cfg.datacomp_subset).exists())
    )


def _options(config: dict) -> dict:
    """A run's options, without how they were typed (the recorded command line)."""
    return {k: v for k, v in config.items() if k != "command"}


def _refuse_changed_pool(recorded: list, inputs: list[dict]) -> bool:
    """One line naming the first pool file that is not as recorded. False where
    the record is an older version's ([path, size] pairs), which is not compared here."""
    if not all(isinstance(d, dict) for d in recorded):
        return False
    if why := changed_input(recorded, inputs):
        raise InputError(why)
    return True


def balance(
    out: str | Path,
    t: float | None = None,
    t_en: float | None = None,
    seed: int | None = None,
    client=None,
    progress: bool = True,
    log=lambda s: None,
    command: str | None = None,
) -> dict:
    """Redo pass 2 of a finished run with other parameters (no matching).
    `command`: the command line that asked for it (recorded in summary.json)."""
    lay = OutDir(out)
    if not lay.counts.exists() or not lay.run.exists():
        raise InputError(f"{lay.out}: no finished pass 1 here (run `gpu-curate curate` first)")
    cfg = CurateConfig.from_json(read_json(lay.run)["config"])
    cfg = replace(
        cfg,
        out=str(lay.out),
        command=command,
        **{k: v for k, v in (("t", t), ("t_en", t_en), ("seed", seed)) if v is not None},
    )
    check_numbers(cfg)
    device = resolve_device(cfg.device)  # the run's device: it must still be here
    cfg = replace(cfg, device=device, gpu_reader=resolve_reader(device, cfg.gpu_reader))
    pool = find_pool(list(cfg.inputs), exclude=cfg.out)
    # pass 2 re-reads the kept rows from the pool: it must be the pool that pass 1 matched
    _refuse_changed_pool(read_json(lay.run)["pass1"]["inputs"], input_identity(pool.files))
    parts = plan_partitions(pool.files, cfg.partition_rows, cfg.text_column, cfg.tar_text)
    pass1 = Totals()
    for part in parts:
        marker = lay.marker("matches", part)
        if not marker.exists():
            raise InputError(f"{marker}: missing; pass 1 did not finish (rerun `gpu-curate curate`)")
        pass1.add(read_json(marker))
    write_json_atomic({**read_json(lay.run), "config": cfg.to_json()}, lay.run)
    return _balance(cfg, pool, parts, pq.read_table(lay.counts), pass1, {}, Executor(client, progress), log)


def _balance(
    cfg, pool: Pool, parts, counts_table: pa.Table, pass1: Totals, timings: dict, executor: Executor, log
) -> dict:
    lay = OutDir(cfg.out)
    lay.summary.unlink(missing_ok=True)  # kept/ is about to change: the run is incomplete until rewritten
    counts = counts_table.column("count").to_numpy()
    bal = balancing(counts, cfg.t, cfg.t_en, lang_ranges(counts_table))
    if cfg.image_column:
        started = time.perf_counter()
        log("choosing one text per image")
        select_one_text_per_image(cfg, parts)
        timings["image_selection_s"] = time.perf_counter() - started
    started = time.perf_counter()
    pass2, kept = Totals(), CountAccumulator(len(counts))
    for stats, ids, n in executor.map(
        balance_partition, parts, "pass 2: sample", cfg=cfg, p=bal.p, p_head=bal.head_only(), p_key=bal.fingerprint()
    ):
        pass2.add(stats)
        kept.add(ids, n)
    timings["pass2_s"] = time.perf_counter() - started
    if "kept_count" in counts_table.column_names:  # from an earlier balance of this run
        counts_table = counts_table.drop_columns(["kept_count"])
    counts_table = counts_table.append_column("kept_count", pa.array(kept.counts, pa.uint64()))
    write_parquet_atomic(counts_table, lay.counts)
    if cfg.datacomp_subset:
        write_datacomp_subset(lay.out / "kept", cfg.datacomp_subset)
    run = read_json(lay.run)
    summary = build_summary(cfg, pass1, pass2, bal, timings, counts_table, run, pool.skipped)
    write_json_atomic(summary, lay.summary)
    log(format_summary(summary))
    return summary
