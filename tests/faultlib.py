"""Helpers of the fault-injection suite (test_faults*.py): runs of the real
command line, what a reader of an output directory sees, and the write
points of a clean run (gpu_curate/faults.py explains the hook)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from gpu_curate import demo_data

POOL = demo_data.POOL  # 3,000 real alt-texts, one parquet file
METADATA = demo_data.METADATA  # 86,554 WordNet synset heads
ROWS_PER_PART = 1000  # three partitions: enough for "some done, some not"
SEED = 7
TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # storage.py's temporary names


def cli(*args, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`gpu-curate ARGS` in a fresh process (so that a kill is a real kill -9)."""
    return subprocess.run(
        [sys.executable, "-m", "gpu_curate", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def curate_args(out, t, *extra) -> list:
    return [
        "curate",
        POOL,
        "--metadata",
        METADATA,
        "--text-column",
        "TEXT",
        "--partition-size",
        ROWS_PER_PART,
        "--t",
        t,
        "--seed",
        SEED,
        "--out",
        out,
        "--in-process",
        "--quiet",
        *extra,
    ]


def config(out, t):
    """The CurateConfig of curate_args(out, t)."""
    from gpu_curate.pipeline import CurateConfig

    return CurateConfig(
        inputs=(str(POOL),),
        metadata=str(METADATA),
        out=str(out),
        text_column="TEXT",
        partition_rows=ROWS_PER_PART,
        t=t,
        seed=SEED,
    )


def clean_run(out, t, write_log: Path | None = None) -> dict:
    """What `gpu-curate curate` (curate_args) or, where `out` holds a run,
    `gpu-curate balance` makes, through the API (no process to start), and
    what a reader then sees. `write_log`: the run's write points go there."""
    from gpu_curate.pipeline import balance, curate

    old = os.environ.get("GPU_CURATE_WRITE_LOG")
    if write_log is not None:
        os.environ["GPU_CURATE_WRITE_LOG"] = str(write_log)
    try:
        if (Path(out) / "summary.json").exists():
            balance(out, t=t, progress=False)
        else:
            curate(config(out, t), progress=False)
    finally:
        if write_log is not None:
            if old is None:
                del os.environ["GPU_CURATE_WRITE_LOG"]
            else:
                os.environ["GPU_CURATE_WRITE_LOG"] = old
    return visible(Path(out))


def balance_args(out, t, *extra) -> list:
    return ["balance", out, "--t", t, "--in-process", "--quiet", *extra]


def fault(action: str, pattern: str, phase: str, once: Path | None = None, nth: int = 1) -> dict:
    env = {"GPU_CURATE_FAULT": f"{action}:{pattern}:{phase}:{nth}"}
    if once is not None:
        env["GPU_CURATE_FAULT_ONCE"] = str(once)
    return env


def visible(out: Path) -> dict | None:
    """What a reader of `out` sees: None while no run is complete there (no
    summary.json), else the kept rows, entry counts and summary, after
    checking that they describe one another."""
    if not (out / "summary.json").exists():
        return None
    summary = json.loads((out / "summary.json").read_text())
    kept = pq.read_table(out / "kept").sort_by("uid")
    counts = pq.read_table(out / "entry_counts.parquet")
    assert summary["rows_kept"] == kept.num_rows, "summary.json and kept/ describe different runs"
    assert summary["entries"] == counts.num_rows
    per_file = {k: v for k, v in summary.items() if k not in ("timings", "versions", "command", "curate_command")}
    return {"summary": per_file, "kept": kept, "counts": counts}


def same(a: dict | None, b: dict | None) -> bool:
    if a is None or b is None:
        return a is b
    return a["summary"] == b["summary"] and a["kept"].equals(b["kept"]) and a["counts"].equals(b["counts"])


def temporaries(out: Path) -> list[Path]:
    return [p for p in Path(out).rglob("*") if TEMPORARY.match(p.name)]


def generations(out: Path) -> list[str]:
    root = Path(out) / "generations"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def write_points(log: Path, out: Path) -> list[tuple[str, str, int]]:
    """(pattern, phase, n) of every write a logged run made, relative to
    `out`: the n-th checkpoint of that pattern and phase (run.json, say, is
    written at the start and after the switch). Generation directories are
    given as `generations/*`, so that a pattern fits any balance."""
    points, seen = [], {}
    for line in log.read_text().splitlines():
        phase, path = line.split("\t")
        rel = os.path.relpath(path, out)
        if rel.startswith(".."):
            continue  # outside --out (the automaton cache)
        key = (re.sub(r"^generations/[^/]+", "generations/*", rel), phase)
        seen[key] = seen.get(key, 0) + 1
        points.append((*key, seen[key]))
    return points


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    """The run failed with exit status 2 and one line naming what went wrong."""
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-curate: error: "), res.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]
