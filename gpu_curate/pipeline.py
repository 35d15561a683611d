"""The curation run (SPEC sections 5-8): pass 1 matches and counts, pass 2 samples.

    curate   pass 1 over every partition (resuming), the global counts, then balance
    balance  pass 2 alone, from a finished run, with new t / seed (in place, or into another --out)

One task per partition (pass1.match_partition, pass2.balance_partition), on a
Dask cluster or in this process (executor.Executor). A task whose marker
exists is skipped, so rerunning a killed run resumes it, and the outputs
depend only on (pool, metadata, t, seed): sampling is a hash of
(seed, uid, entry), never of partitioning or order. Each balance writes a
generation of its own and switches it in at the end (outdir.py), so a kill
at any point leaves the previous complete run or the new one. A run holds
the lock of its --out throughout (lock.py).
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .balance import entry_probabilities, worldwide_probabilities, worldwide_thresholds
from .config import CurateConfig
from .count import CountAccumulator
from .datacomp import kept_subset
from .errors import CurateError, InputError, OutputError, quote
from .executor import Executor
from .images import select_one_text_per_image
from .lock import OutLock
from .match import resolve_device
from .outdir import OutDir
from .pass1 import match_partition
from .pass2 import balance_partition
from .pool import expand_inputs, plan_partitions
from .storage import read_json, remove_temporaries, write_json_atomic, write_npy_atomic, write_parquet_atomic
from .summary import Totals, build_summary, format_summary
from .worldwide import load_cached

__all__ = ["CurateConfig", "curate", "balance"]


def curate(cfg: CurateConfig, client=None, progress: bool = True, log: Callable[[str], None] = lambda s: None) -> dict:
    """Run passes 1 and 2 (resuming whatever a previous run of the same
    command finished) and return the summary."""
    cfg = replace(cfg, device=resolve_device(cfg.device))  # a one-line error before any work
    _check_balance_parameters(cfg.t, cfg.t_en, cfg.seed)
    files = expand_inputs(list(cfg.inputs))
    lay = OutDir(cfg.out)
    mdset = load_cached(cfg.metadata_ref)
    identity = cfg.pass1_identity(files)
    with OutLock(lay.out), _one_line_errors(lay.out):
        if lay.run.exists() and read_json(lay.run)["pass1"] != identity:
            raise InputError(
                f"{quote(lay.out)}: holds the outputs of a different run (other pool, metadata or options); "
                "use a new --out"
            )
        _remove_temporaries(lay.out, log)
        write_json_atomic({"pass1": identity, "config": cfg.to_json()}, lay.run)
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
    into: str | Path | None = None,
) -> dict:
    """Redo pass 2 of a finished run with other parameters (no matching).
    Parameters not given keep the values of the run's current balance.
    With `into`, the new balance goes to that directory (its own kept/,
    counts and summary, reading `out`'s match index), and `out` is untouched."""
    _check_balance_parameters(t, t_en, seed)
    source = OutDir(out)
    separate = into is not None and Path(into).resolve() != source.out.resolve()
    target = OutDir(into) if separate else source
    with ExitStack() as stack:
        stack.enter_context(OutLock(source.out, shared=separate))  # shared: several rebalancings may read it
        if separate:
            stack.enter_context(OutLock(target.out))
        stack.enter_context(_one_line_errors(target.out))
        if not source.run.exists():
            raise InputError(f"{quote(source.out)}: no finished pass 1 here (run `gpu-curate curate` first)")
        run = read_json(source.run)
        cfg = CurateConfig.from_json(run["config"])
        current = source.current_generation()
        if current is None or not current.summary.exists():
            raise InputError(f"{quote(source.out)}: no finished run here (rerun its `gpu-curate curate` to finish it)")
        before = read_json(current.summary)
        cfg = replace(
            cfg,
            out=str(source.out),  # where it is now (run.json says where it was made)
            t=t if t is not None else before.get("t") or cfg.t,
            t_en=t_en if t_en is not None else before.get("t_en") or cfg.t_en,
            seed=seed if seed is not None else before.get("seed", cfg.seed),
        )
        if separate:
            cfg = replace(cfg, out=str(target.out), match_index=str(OutDir.of(cfg).matches.resolve()))
            _claim(target, run["pass1"], cfg)
        _remove_temporaries(target.out, log)
        parts = plan_partitions(expand_inputs(list(cfg.inputs)), cfg.partition_rows, cfg.text_column)
        pass1, index = Totals(), OutDir.of(cfg)
        for part in parts:
            marker = index.marker("matches", part)
            if not marker.exists():
                raise InputError(f"{quote(marker)}: missing; pass 1 did not finish (rerun `gpu-curate curate`)")
            pass1.add(read_json(marker))
        counts = pq.read_table(current.counts)
        return _balance(cfg, parts, counts, pass1, {}, Executor(client, progress), log)


def _claim(target: OutDir, pass1: dict, cfg: CurateConfig) -> None:
    """Make `target` the --out of a `balance --out` (or check that it is one of the same run)."""
    if target.run.exists():
        held = read_json(target.run)
        if held["pass1"] != pass1 or held["config"].get("match_index") != cfg.match_index:
            raise InputError(
                f"{quote(target.out)}: holds the outputs of a different run; give `balance --out` a new directory"
            )
    write_json_atomic({"pass1": pass1, "config": cfg.to_json()}, target.run)


def _balance(cfg, parts, counts_table: pa.Table, pass1: Totals, timings: dict, executor: Executor, log) -> dict:
    """Pass 2 into the generation of cfg's balance parameters, then switch it in.
    Nothing visible changes until the switch: a failure before it leaves the
    previous complete run as it was."""
    lay = OutDir.of(cfg)
    generation = lay.generation(cfg.balance_id)
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
    write_npy_atomic(p, generation.probabilities)  # tasks read p from here, never from a worker's memory
    if cfg.image_column:
        started = time.perf_counter()
        log("choosing one text per image")
        select_one_text_per_image(cfg, parts, generation)
        timings["image_selection_s"] = time.perf_counter() - started
    started = time.perf_counter()
    pass2 = Totals()
    for stats in executor.map(balance_partition, parts, "pass 2: sample", cfg=cfg):
        pass2.add(stats)
    timings["pass2_s"] = time.perf_counter() - started
    subset = kept_subset(generation.kept) if cfg.datacomp_subset else None  # a bad uid fails before the switch
    write_parquet_atomic(counts_table, generation.counts)
    padding = read_json(lay.run)["pass1"]["padding"]
    summary = build_summary(cfg, pass1, pass2, thresholds, timings, counts_table, padding)
    write_json_atomic(summary, generation.summary)  # last: the generation is complete
    lay.switch(generation)
    lay.remove_superseded()
    if subset is not None:  # outside --out: follows the switch (a kill in between leaves the previous file)
        write_npy_atomic(subset, cfg.datacomp_subset)
    log(format_summary(summary))
    return summary


def _check_balance_parameters(t, t_en, seed) -> None:
    """Before anything is written: a bad value must not cost the previous run."""
    for name, value in (("--t", t), ("--t-en", t_en)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InputError(f"{name} must be a number > 0, got {value!r}")
    if seed is not None and not (isinstance(seed, int) and 0 <= seed < 2**64):
        raise InputError(f"--seed must be an integer in [0, 2^64), got {seed!r}")


def _remove_temporaries(out: Path, log) -> None:
    """Temporaries of writes that a killed run left (with the lock held: none is in use)."""
    removed = remove_temporaries(out)
    if removed:
        log(f"removed {removed} temporary files left by an interrupted run")


@contextmanager
def _one_line_errors(out: Path):
    """An OSError that escaped a stage (one of the client's own file
    operations) becomes one line naming its file, like the stages' own errors."""
    try:
        yield
    except CurateError:
        raise
    except OSError as e:
        if e.filename is None:
            raise
        inside = Path(e.filename).resolve().is_relative_to(out.resolve())
        kind = OutputError if inside else InputError
        raise kind(f"{quote(e.filename)}: {e.strerror or e}") from e
