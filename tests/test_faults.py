"""Fault injection: kill -9 at every write point, random kills, lost workers.

Every case ends in one of two ways: outputs identical to a clean run (after
rerunning the command), or one clear line with nothing wrong trusted. While
a killed run's directory is inspected, a reader must see either no complete
run (no summary.json) or a complete one that equals a clean run: never
shards of two balances, never a summary of other shards.

The hook (gpu_curate/faults.py) sits in every publishing rename of
gpu_curate/storage.py, before and after it:

    GPU_CURATE_FAULT="kill:generations/*/kept/part-000001.parquet:after-rename"
    GPU_CURATE_FAULT="enospc:matches/_part-000000.json:before-rename"
    GPU_CURATE_FAULT_ONCE=/tmp/flag       fire in one process only (a restarted worker passes)
    GPU_CURATE_WRITE_LOG=/tmp/writes      list every write point of a run

The write points are read from a clean run's log, so a write added later is
covered without editing this file. Cases marked `slow` (every point in both
phases, random kills, every worker case) run in CI (`.ci/run`) and with
`python -m pytest -m slow`; the default command runs one case per mechanism.
Corrupt inputs and metadata, full disks, damaged outputs, concurrent runs,
in-place edits: test_faults_inputs.py; the automaton cache: test_automaton_cache.py.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import threading

import pytest

from faultlib import (
    balance_args,
    clean_run,
    cli,
    config,
    curate_args,
    fault,
    generations,
    same,
    temporaries,
    visible,
    write_points,
)

T_A, T_B = 5, 50  # two balances of the same match index with different kept sets
KILLED = -signal.SIGKILL


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Clean runs: at T_A and T_B (the references), and a complete T_A run to
    copy for rebalancing cases; plus the write points of a curate and of a balance."""
    base = tmp_path_factory.mktemp("clean")
    clean_run(base / "a", T_A, write_log=base / "curate.log")
    ref_b = clean_run(base / "a", T_B, write_log=base / "balance.log")
    ref_a = clean_run(base / "a", T_A)
    assert ref_a is not None and ref_b is not None and not same(ref_a, ref_b)
    return {
        "a": ref_a,
        "b": ref_b,
        "template": base / "a",
        "curate": write_points(base / "curate.log", base / "a"),
        "balance": write_points(base / "balance.log", base / "a"),
    }


def test_the_write_log_lists_every_kind_of_output(runs):
    kinds = {pattern for pattern, _, _ in runs["curate"]}
    for expected in (
        "run.json",
        "matches/part-000002.arrow",
        "matches/_part-000002.json",
        "generations/*/probabilities.npy",
        "generations/*/kept/part-000002.parquet",
        "generations/*/kept/_part-000002.json",
        "generations/*/entry_counts.parquet",
        "generations/*/summary.json",
        "kept",
        "summary.json",
        "current",
    ):
        assert expected in kinds
    assert ("generations/*", "after-rename", 1) in runs["balance"]  # the superseded generation's removal
    assert ("run.json", "after-rename", 2) in runs["curate"]  # run.json's config, after the switch
    assert all(phase in ("before-rename", "after-rename") for _, phase, _ in runs["curate"] + runs["balance"])


def kill_curate(tmp_path, runs, pattern: str, phase: str, nth: int = 1) -> None:
    """curate killed at one write point, then rerun: identical to a clean run."""
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
    res = cli(*curate_args(out, T_A), env=fault("kill", pattern, phase, nth=nth))
    assert res.returncode == KILLED, f"the kill at {pattern} {phase} #{nth} never fired: {res.stderr[-500:]}"
    seen = visible(out)
    assert seen is None or same(seen, runs["a"]), f"killed at {pattern} {phase}: a wrong run is visible"
    res = cli(*curate_args(out, T_A))
    assert res.returncode == 0, res.stderr
    assert same(visible(out), runs["a"]), f"rerun after a kill at {pattern} {phase}"
    assert temporaries(out) == [] and len(generations(out)) == 1


def kill_balance(tmp_path, runs, pattern: str, phase: str, nth: int = 1) -> None:
    """The issue's case: a finished T_A run, `balance --t T_B` killed at one
    write point; the directory shows T_A or T_B, complete; going back to
    T_A and forward to T_B again give clean runs' outputs."""
    out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}"
    shutil.copytree(runs["template"], out, symlinks=True)
    res = cli(*balance_args(out, T_B), env=fault("kill", pattern, phase, nth=nth))
    assert res.returncode == KILLED, f"the kill at {pattern} {phase} #{nth} never fired: {res.stderr[-500:]}"
    seen = visible(out)
    assert same(seen, runs["a"]) or same(seen, runs["b"]), f"killed at {pattern} {phase}: a mix is visible"
    for t, ref in ((T_A, runs["a"]), (T_B, runs["b"])):
        res = cli(*balance_args(out, t))
        assert res.returncode == 0, res.stderr
        assert same(visible(out), ref), f"balance --t {t} after a kill at {pattern} {phase}"
    assert temporaries(out) == [] and len(generations(out)) == 1


# By default: a marker's write, a kept shard renamed before its marker (the
# issue's case), each side of the switch; every other point is in the slow cases.
@pytest.mark.parametrize(
    "pattern, phase, nth",
    [
        ("matches/_part-000001.json", "before-rename", 1),
        ("current", "before-rename", 1),
        ("run.json", "before-rename", 2),  # after the switch: the rerun finds it complete, and cleans up
    ],
)
def test_kill_during_curate(tmp_path, runs, pattern, phase, nth):
    kill_curate(tmp_path, runs, pattern, phase, nth)


@pytest.mark.parametrize(
    "pattern, phase",
    [
        ("generations/*/kept/part-000002.parquet", "after-rename"),
        ("current", "after-rename"),
    ],
)
def test_kill_during_balance(tmp_path, runs, pattern, phase):
    kill_balance(tmp_path, runs, pattern, phase)


@pytest.mark.slow
def test_kill_at_every_write_point_of_curate(tmp_path, runs):
    points = runs["curate"]
    for pattern, phase, nth in points:
        kill_curate(tmp_path, runs, pattern, phase, nth)
    print(f"{len(points)} kill points of curate")


@pytest.mark.slow
def test_kill_at_every_write_point_of_balance(tmp_path, runs):
    points = runs["balance"]
    for pattern, phase, nth in points:
        kill_balance(tmp_path, runs, pattern, phase, nth)
    print(f"{len(points)} kill points of balance")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
def test_random_kills_then_resume(tmp_path, runs, seed):
    """kill -9 at three random moments of a run with many small partitions
    (curate, then a balance), then let it finish: every state in between is
    a clean run or none, and the end equals a clean run."""
    rng = random.Random(seed)
    out = tmp_path / "out"
    for args, ref in ((curate_args(out, T_A, "--partition-size", 100), runs["a"]), (balance_args(out, T_B), runs["b"])):
        cmd = [sys.executable, "-m", "gpu_curate", *map(str, args)]
        for _ in range(3):
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                proc.wait(timeout=rng.uniform(0.5, 4.0))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            assert proc.returncode in (0, KILLED), proc.stderr.read()
            seen = visible(out)
            assert seen is None or same(seen, runs["a"]) or same(seen, runs["b"])
        assert subprocess.run(cmd, capture_output=True).returncode == 0
        assert same(visible(out), ref)
    assert temporaries(out) == [] and len(generations(out)) == 1


# -- lost workers ------------------------------------------------------------------
def curate_on_cluster(out, t, workers: int, **env):
    """curate through the API on a LocalCluster of worker processes (nannies
    restart a killed worker); env reaches the workers, which inherit it."""
    distributed = pytest.importorskip("distributed")
    from gpu_curate.pipeline import curate

    cfg = config(out, t)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        with (
            distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address="127.0.0.1:0",
                silence_logs=50,
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            return curate(cfg, client=client, progress=False)


def _worker_kill(tmp_path, runs, workers, pattern):
    flag = tmp_path / "fired"
    curate_on_cluster(tmp_path / "out", T_A, workers, **fault("kill", pattern, "before-rename", once=flag))
    assert flag.exists(), "no worker was killed"
    assert same(visible(tmp_path / "out"), runs["a"])


def test_the_only_worker_killed_in_pass_2(tmp_path, runs):
    """The issue's case: p was scattered to the workers and died with the only one."""
    _worker_kill(tmp_path, runs, 1, "generations/*/kept/part-000001.parquet")


@pytest.mark.slow
@pytest.mark.parametrize(
    "workers, pattern",
    [
        (1, "matches/part-000001.arrow"),
        (2, "matches/part-000001.arrow"),
        (2, "generations/*/kept/part-000001.parquet"),
        (2, "generations/*/kept/_part-000002.json"),
    ],
)
def test_a_worker_killed_mid_task(tmp_path, runs, workers, pattern):
    _worker_kill(tmp_path, runs, workers, pattern)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_workers_killed_at_random(tmp_path, runs, seed):
    """A thread kills a random worker process at a random point of each pass
    (after a random number of partitions finished), while the run goes on."""
    distributed = pytest.importorskip("distributed")
    import os
    from dataclasses import replace

    from gpu_curate.pipeline import curate

    rng = random.Random(seed)
    out = tmp_path / "out"
    cfg = replace(config(out, T_A), partition_rows=20)
    n_parts = 3000 // 20
    kill_after = [
        ("matches/_part-*.json", rng.randint(1, n_parts // 2)),
        ("generations/*/kept/_part-*.json", rng.randint(1, n_parts // 2)),
    ]
    kills, done = [], threading.Event()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0", silence_logs=50
        ) as cluster,
        distributed.Client(cluster) as client,
    ):

        def killer():
            for pattern, n in kill_after:
                while len(list(out.glob(pattern))) < n:
                    if done.wait(0.02):
                        return
                pids = []
                while not pids and not done.is_set():
                    try:
                        pids = sorted(client.run(os.getpid).values())
                    except (OSError, distributed.comm.CommClosedError):
                        pass  # a worker died while asked
                if done.is_set():
                    return
                os.kill(rng.choice(pids), signal.SIGKILL)
                kills.append(pattern)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            curate(cfg, client=client, progress=False)
        finally:
            done.set()
            thread.join()
    assert len(kills) == 2, f"only {kills} were killed: the run outran the killer"
    assert same(visible(out), runs["a"])


def test_a_cluster_that_gives_up_is_one_line_and_a_rerun_resumes(tmp_path, runs):
    """With no failure allowed, a killed worker fails the task (KilledWorker):
    one line saying that a rerun resumes; and the rerun does."""
    import dask

    from gpu_curate.errors import RunInterrupted

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with pytest.raises(RunInterrupted, match="rerun the same command to resume") as err:
            curate_on_cluster(
                tmp_path / "out",
                T_A,
                1,
                **fault("kill", "generations/*/kept/part-000001.parquet", "before-rename", once=tmp_path / "f"),
            )
    assert "\n" not in str(err.value)
    assert visible(tmp_path / "out") is None  # the first balance never finished: nothing to trust yet
    curate_on_cluster(tmp_path / "out", T_A, 1)
    assert same(visible(tmp_path / "out"), runs["a"])


def test_the_hook_fires_on_its_pattern_and_phase_only(tmp_path, monkeypatch):
    """enospc on one path: other paths and the other phase pass; the matching
    write fails as a full disk would, naming the file, and leaves no temporary."""
    from gpu_curate import faults
    from gpu_curate.errors import OutputError
    from gpu_curate.storage import write_json_atomic

    monkeypatch.setattr(faults, "_seen", {})  # counts of matching checkpoints, per process
    monkeypatch.setenv("GPU_CURATE_FAULT", "enospc:kept/_part-*.json:before-rename")
    write_json_atomic({}, tmp_path / "kept" / "part-000001.json")  # another name
    write_json_atomic({}, tmp_path / "other" / "_part-000001.json")  # another directory
    with pytest.raises(OutputError, match=r"kept/_part-000001.json: cannot write \(No space left on device\)"):
        write_json_atomic({}, tmp_path / "kept" / "_part-000001.json")
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["part-000001.json"]
    monkeypatch.setenv("GPU_CURATE_FAULT", "enospc:kept/_part-*.json:after-rename")
    with pytest.raises(OutputError):
        write_json_atomic({}, tmp_path / "kept" / "_part-000001.json")
    assert (tmp_path / "kept" / "_part-000001.json").exists()  # failed after its rename: the file is whole
    monkeypatch.setenv("GPU_CURATE_FAULT", "enospc:other/*.json:before-rename:2")  # the second match only
    write_json_atomic({}, tmp_path / "other" / "a.json")
    with pytest.raises(OutputError, match="b.json"):
        write_json_atomic({}, tmp_path / "other" / "b.json")
    write_json_atomic({}, tmp_path / "other" / "c.json")
