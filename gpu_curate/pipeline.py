"""The curation run (docs/semantics.md sections 5-8): pass 1 matches and counts, pass 2 samples.

    curate   pass 1 over every partition (resuming), the global counts, then balance
    balance  pass 2 alone, from a finished run, with new t / seed (in place, or into another --out)

One task per partition (pass1.match_partition, pass2.balance_partition), on a
Dask cluster or in this process (executor.Executor). A task whose marker
exists is skipped, so rerunning a killed run resumes it, and the outputs
depend only on (pool, metadata, t, seed): sampling is a hash of
(seed, uid, entry), never of partitioning or order. Each balance writes a
generation of its own and switches it in at the end (outdir.py), so a kill
at any point leaves the previous complete run or the new one, and a failed
balance leaves the previous run as it was. A run holds the lock of its
--out throughout (lock.py).
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Callable, ContextManager

import pyarrow as pa
import pyarrow.parquet as pq

from .balance import balancing, lang_ranges
from .checks import check_numbers, check_run
from .config import CurateConfig
from .count import CountAccumulator
from .datacomp import kept_subset
from .engines import resolve_reader
from .errors import CurateError, InputError, OptionError, OutputError
from .executor import Executor
from .fs import local_path, quote_path
from .gpu_backend import device_label
from .images import select_one_text_per_image
from .lock import OutLock
from .match import resolve_device
from .outdir import OutDir
from .pass1 import match_partition
from .pass2 import balance_partition
from .identity import changed_input, input_identity
from .pool import Pool, find_pool, plan_partitions
from .publish import Store, fetch, publish, resolve_out
from .storage import (
    read_json,
    remove_temporaries,
    temporaries,
    write_json_atomic,
    write_npy_atomic,
    write_parquet_atomic,
)
from .summary import Totals, build_summary, format_summary
from .worldwide import load_cached

__all__ = ["CurateConfig", "curate", "balance"]


def curate(
    cfg: CurateConfig,
    client=None,
    progress: bool = True,
    log: Callable[[str], None] = lambda s: None,
    cluster: Callable[[], ContextManager] | None = None,
    work_dir: str | Path | None = None,
) -> dict:
    """Run passes 1 and 2 (resuming whatever a previous run of the same
    command finished) and return the summary.

    An --out on object storage (a URL) is staged in `work_dir` (default:
    publish.default_work_dir) and published there once complete (publish.py).

    Every check (checks.check_run) passes before anything is written to
    --out. `cluster`, if given, makes a context manager yielding the Dask
    client (cluster.LocalOrRemoteClient); it is entered only once the checks
    passed and work remains, so a bad option or a finished run starts no cluster.
    """
    device = resolve_device(cfg.device)
    out, store = resolve_out(cfg.out, work_dir)  # an unreachable store fails here
    cfg = replace(cfg, out=out, device=device, gpu_reader=resolve_reader(device, cfg.gpu_reader))
    pool = find_pool(list(cfg.inputs), exclude=cfg.out)
    check_run(cfg, pool.files)
    lay = OutDir(cfg.out)
    identity = cfg.pass1_identity(input_identity(pool.files, cfg.verify_inputs))
    if store is not None:
        _refuse_other_store_run(store, identity)
        log(f"--out {quote_path(store.url)}: staged in {quote_path(lay.out)} (--work-dir), published when complete")
    previous, same = _previous_run(lay, identity)  # a different run is refused before a cluster starts
    if same and _complete(cfg, previous, lay):  # only reads: outputs change by atomic renames alone
        if temporaries(lay.out) or store is not None:  # a kill after the switch left some; or an upload to finish
            with OutLock(lay.out), _one_line_errors(lay.out):
                _remove_temporaries(lay.out, log)
                if store is not None:
                    log(f"{quote_path(lay.out)}: already complete (the same command finished before)")
                    publish(store, lay, log, progress)  # uploads only what the store lacks
                    summary = read_json(lay.summary)
                    log(format_summary(summary, timings=False))
                    return summary
        summary = read_json(lay.summary)
        log(f"{quote_path(lay.out)}: already complete (the same command finished before); nothing to do")
        log(format_summary(summary, timings=False))
        return summary

    with (
        cluster() if cluster is not None else nullcontext(client) as client,  # an unreachable one fails here
        OutLock(lay.out),  # from here to the end; --out is created here, once the cluster is up
        _one_line_errors(lay.out),
    ):
        previous, same = _previous_run(lay, identity)  # again, now that no other run can change it
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

        _remove_temporaries(lay.out, log)
        # run.json's config stays the visible balance's until this run's is switched in (_balance)
        config = previous["config"] if same and lay.current_generation() else cfg.to_json()
        write_json_atomic({"pass1": identity, "config": config, "curate_command": cfg.command}, lay.run)
        executor = Executor(client, progress)
        resumed = sum(lay.marker("matches", part).exists() for part in parts)
        started = time.perf_counter()
        counts, pass1 = CountAccumulator(mdset.n_entries), Totals()
        for stats, ids, n in executor.map(match_partition, parts, "pass 1: match", cfg=cfg):
            pass1.add(stats)
            counts.add(ids, n)
        _written_here([lay.marker("matches", part) for part in parts])
        table = mdset.entry_table().append_column("count", pa.array(counts.counts, pa.uint64()))
        timings = {"pass1_s": time.perf_counter() - started}
        if resumed:  # rows/s over a resumed run would count rows matched before
            timings["pass1_partitions_done_before"] = resumed
        summary = _balance(cfg, pool, parts, table, pass1, timings, executor, log)
        if store is not None:
            publish(store, lay, log, progress)
        return summary


def _refuse_other_store_run(store: Store, identity: dict) -> None:
    """A URL whose run.json holds another pass 1 is refused, before any work
    (the store has no lock: this is what keeps two runs apart there)."""
    held = store.held_run()
    if held is not None:
        _same_run(store.url, held["pass1"], identity, refuse=True)


def _previous_run(lay: OutDir, identity: dict) -> tuple[dict | None, bool]:
    """run.json of --out (None if there is none) and whether it was made by this very pass 1."""
    previous = read_json(lay.run) if lay.run.exists() else None
    return previous, previous is not None and _same_run(lay.out, previous["pass1"], identity, refuse=lay.has_shards())


def _same_run(where, old: dict, new: dict, refuse: bool) -> bool:
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
            f"{quote_path(where)}: holds the outputs of a different run (other pool, metadata or options); "
            "use a new --out"
        )
    return old == new


def _complete(cfg: CurateConfig, previous: dict, lay: OutDir) -> bool:
    """Whether --out holds the finished outputs of exactly this command."""
    current = lay.current_generation()
    return (
        current is not None
        and current.name == cfg.balance_id
        and lay.summary.exists()
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
    into: str | Path | None = None,
    work_dir: str | Path | None = None,
) -> dict:
    """Redo pass 2 of a finished run with other parameters (no matching).
    Parameters not given keep the values of the run's visible balance.
    With `into`, the new balance goes to that directory (its own kept/,
    counts and summary, reading `out`'s match index), and `out` is untouched;
    `into` may be a URL (staged in `work_dir`, or its default, and published).
    `command`: the command line that asked for it (recorded in summary.json).
    A run published to object storage (`out` a URL) is rebalanced in its
    work directory (`work_dir`, as for curate; fetched from the store where
    it holds no run, as on another machine) and published again."""
    out_url, into_url = _on_store(out), _on_store(into)
    if work_dir is not None and out_url and into_url:
        raise OptionError("--work-dir: OUT and --out are both URLs; each is staged in its own default work dir")
    out, store = resolve_out(out, None if into_url else work_dir, "balance")
    into, into_store = resolve_out(into, work_dir if into_url else None, "balance --out") if into else (None, None)
    source = OutDir(out)
    separate = into is not None and Path(into).resolve() != source.out.resolve()
    target = OutDir(into) if separate else source
    if not source.run.exists() and store is not None:  # a run published from another machine
        with OutLock(source.out), _one_line_errors(source.out):
            if not source.run.exists():
                fetch(store, source, log)
    if not source.run.exists():  # checked before the lock, which would create the directory
        raise InputError(f"{quote_path(source.out)}: no finished pass 1 here (run `gpu-curate curate` first)")
    with ExitStack() as stack:
        stack.enter_context(OutLock(source.out, shared=separate))  # shared: several rebalancings may read it
        stack.enter_context(_one_line_errors(source.out))
        current = source.current_generation()
        if current is None or not current.summary.exists():
            raise InputError(f"{quote_path(source.out)}: no finished run here (rerun its `gpu-curate curate`)")
        run, visible = read_json(source.run), read_json(current.summary)
        for held in (store, into_store):
            if held is not None:
                _refuse_other_store_run(held, run["pass1"])
        cfg = CurateConfig.from_json(run["config"])
        cfg = replace(
            cfg,
            out=str(source.out),  # where it is now (run.json says where it was made)
            command=command,
            t=t if t is not None else visible.get("t") or cfg.t,
            t_en=t_en if t_en is not None else visible.get("t_en") or cfg.t_en,
            seed=seed if seed is not None else visible.get("seed", cfg.seed),
        )
        check_numbers(cfg)  # before anything is written: a bad value must not cost the previous run
        device = resolve_device(cfg.device)  # the run's device: it must still be here
        cfg = replace(cfg, device=device, gpu_reader=resolve_reader(device, cfg.gpu_reader))
        pool = find_pool(list(cfg.inputs), exclude=cfg.out)
        # pass 2 re-reads the kept rows from the pool: it must be the pool that pass 1 matched
        _refuse_changed_pool(run["pass1"]["inputs"], input_identity(pool.files))
        if separate:
            # --datacomp-subset's file belongs to OUT's visible balance: another directory's balance leaves it
            cfg = replace(
                cfg, out=str(target.out), match_index=str(OutDir.of(cfg).matches.resolve()), datacomp_subset=None
            )
            stack.enter_context(OutLock(target.out))
            stack.enter_context(_one_line_errors(target.out))
            _claim(target, run, cfg)
        _remove_temporaries(target.out, log)
        parts = plan_partitions(pool.files, cfg.partition_rows, cfg.text_column, cfg.tar_text)
        pass1, index = Totals(), OutDir.of(cfg)
        for part in parts:
            marker = index.marker("matches", part)
            if not marker.exists():
                raise InputError(f"{quote_path(marker)}: missing; pass 1 did not finish (rerun `gpu-curate curate`)")
            pass1.add(read_json(marker))
        counts = pq.read_table(current.counts)
        summary = _balance(cfg, pool, parts, counts, pass1, {}, Executor(client, progress), log)
        if store is not None and not separate:
            publish(store, source, log, progress)
        if into_store is not None and separate:
            publish(into_store, target, log, progress)
        return summary


def _written_here(markers: list[Path]) -> None:
    """Every task's marker, seen from this process: workers of an existing
    cluster on other machines write into their own file system when --out is
    not shared, and the run must not switch to (or publish) outputs it lacks."""
    missing = next((m for m in markers if not m.exists()), None)
    if missing is not None:
        raise OutputError(
            f"{quote_path(missing)}: a task finished but its output is not here; --out (or --work-dir, for a URL) "
            "must be on a file system shared by this machine and every Dask worker"
        )


def _on_store(value) -> bool:
    """Whether an output option names object storage (a URL, not file://)."""
    return value is not None and local_path(str(value)) is None


def _claim(target: OutDir, run: dict, cfg: CurateConfig) -> None:
    """Make `target` the --out of a `balance --out` (or check that it is one of the same run)."""
    if target.run.exists():
        held = read_json(target.run)
        if held["pass1"] != run["pass1"] or held["config"].get("match_index") != cfg.match_index:
            raise InputError(
                f"{quote_path(target.out)}: holds the outputs of a different run; give `balance --out` a new directory"
            )
        return
    write_json_atomic({**run, "config": cfg.to_json()}, target.run)


def _balance(
    cfg, pool: Pool, parts, counts_table: pa.Table, pass1: Totals, timings: dict, executor: Executor, log
) -> dict:
    """Pass 2 into the generation of cfg's balance parameters, then switch it
    in. Nothing visible changes before the switch: a failure leaves the
    previous complete run as it was."""
    lay = OutDir.of(cfg)
    generation = lay.generation(cfg.balance_id)
    counts = counts_table.column("count").to_numpy()
    bal = balancing(counts, cfg.t, cfg.t_en, lang_ranges(counts_table))
    write_npy_atomic(bal.p, generation.probabilities)  # tasks read p from here, never from a worker's memory
    write_npy_atomic(bal.head_only(), generation.head_probabilities)
    if cfg.image_column:
        started = time.perf_counter()
        log("choosing one text per image")
        select_one_text_per_image(cfg, parts, generation)
        timings["image_selection_s"] = time.perf_counter() - started
    started = time.perf_counter()
    pass2, kept = Totals(), CountAccumulator(len(counts))
    for stats, ids, n in executor.map(balance_partition, parts, "pass 2: sample", cfg=cfg, p_key=bal.fingerprint()):
        pass2.add(stats)
        kept.add(ids, n)
    timings["pass2_s"] = time.perf_counter() - started
    _written_here([generation.marker(part) for part in parts])
    if "kept_count" in counts_table.column_names:  # from an earlier balance of this run
        counts_table = counts_table.drop_columns(["kept_count"])
    counts_table = counts_table.append_column("kept_count", pa.array(kept.counts, pa.uint64()))
    subset = kept_subset(generation.kept) if cfg.datacomp_subset else None  # a bad uid fails before the switch
    write_parquet_atomic(counts_table, generation.counts)
    run = read_json(lay.run)
    summary = build_summary(cfg, pass1, pass2, bal, timings, counts_table, run, pool.skipped)
    write_json_atomic(summary, generation.summary)  # last: the generation is complete
    lay.switch(generation)
    write_json_atomic({**run, "config": cfg.to_json()}, lay.run)  # the visible balance's config (balance's defaults)
    lay.remove_superseded()
    if subset is not None:  # outside --out: follows the switch (a kill in between leaves the previous file)
        write_npy_atomic(subset, cfg.datacomp_subset)
    log(format_summary(summary))
    return summary


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
        inside = Path(e.filename).resolve().is_relative_to(Path(out).resolve())
        kind = OutputError if inside else InputError
        raise kind(f"{quote_path(e.filename)}: {e.strerror or e}") from e
