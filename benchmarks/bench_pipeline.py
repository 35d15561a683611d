"""End to end: `gpu-curate curate` against MetaCLIP's reference flow, and peak memory.

    python benchmarks/bench_pipeline.py                          # 10M rows, seed 0, en_500k.json
    python benchmarks/bench_pipeline.py --rows 1000000 --json results.jsonl

The pool: the English texts of ../shared/data (COCO captions, LAION-style
alt-text, CC3M captions; 50,847 texts) resampled with replacement to --rows
rows (--seed), written as parquet files of 1M rows (row groups of 100k) with
columns `text` and `url`, under benchmarks/out/. Both flows read that pool.

- gpu_curate: the `gpu-curate curate` command in a child process, from
  parquet to every output (match index, counts, kept rows, summary), run
  twice: on ONE core (the whole process tree pinned to --cpu with taskset:
  a LocalCluster of one worker with one thread) for the per-core figure,
  and on all cores (one worker, all threads) for throughput. Peak memory is
  the largest sum of RSS over the process tree, sampled every 50 ms.
- reference: MetaCLIP's flow rewritten in a few lines (bench_match.py's
  spacing + pyahocorasick loop per text, then np.bincount of the matched ids,
  p = t / count where count > t, and a per-text `random() < p[i]` over its
  ids), in this process pinned to the same core, reading the same parquet
  batch by batch and keeping the match results as compact arrays (MetaCLIP
  keeps them in per-shard files). It writes no output: its times flatter it.
- per core = reference seconds / gpu_curate seconds, both on the same one
  core: no division of a multi-core time by a core count, which would charge
  gpu_curate for a machine that scales badly.
The benchmark checks itself: the entry counts of both flows must be equal
(exit 1 otherwise). Their kept counts differ by sampling noise only
(MetaCLIP's sampling is not a hash of the uid).
"""

from __future__ import annotations

import argparse
import gc as python_gc
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_match import aho_automaton, duplicate_ids, metaclip_spacing  # noqa: E402

import gpu_curate as gc  # noqa: E402

FILE_ROWS = 1_000_000


def build_pool(rows: int, seed: int, where: Path) -> Path:
    """Parquet files of resampled English texts (cached by rows and seed)."""
    pool = where / f"pool_{rows}_{seed}"
    if (pool / "_done").exists():
        return pool
    shutil.rmtree(pool, ignore_errors=True)
    pool.mkdir(parents=True)
    texts = pa.array([t for path, col in common.ENGLISH_POOLS for t in common.read_texts(path, col)], pa.large_string())
    rng = np.random.default_rng(seed)
    for k, start in enumerate(range(0, rows, FILE_ROWS)):
        n = min(FILE_ROWS, rows - start)
        picks = rng.integers(0, len(texts), n)
        urls = pa.array([f"https://img.example/{seed}/{start + i}.jpg" for i in range(n)], pa.string())
        pq.write_table(
            pa.table({"text": texts.take(pa.array(picks)), "url": urls}),
            pool / f"pool-{k:04d}.parquet",
            row_group_size=100_000,
        )
    (pool / "_done").write_text("")
    return pool


def peak_rss_of(cmd: list[str]) -> tuple[float, int, str]:
    """(seconds, peak RSS bytes of the process tree, stdout) of a command."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak, root = 0, psutil.Process(proc.pid)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    reader.join()
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"gpu-curate failed:\n{''.join(output)}")
    return seconds, peak, "".join(output)


def run_gpu_curate(
    pool: Path, metadata: Path, out: Path, t: float, partition_rows: int, cpu: int | None, threads: int
) -> dict:
    """The CLI in a child process: pinned to one cpu (one worker, one thread), or on every core."""
    shutil.rmtree(out, ignore_errors=True)
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    cmd = [
        *pin,
        sys.executable,
        "-m",
        "gpu_curate",
        "curate",
        str(pool),
        "--metadata",
        str(metadata),
        "--out",
        str(out),
        "--t",
        str(t),
        "--workers",
        "1",
        "--threads-per-worker",
        str(threads),
        "--partition-size",
        str(partition_rows),
        "--quiet",
    ]
    seconds, peak, _ = peak_rss_of(cmd)
    summary = json.loads((out / "summary.json").read_text())
    return {
        "seconds": seconds,
        "peak_rss_gib": peak / 2**30,
        "rows_kept": summary["rows_kept"],
        "rows_in": summary["rows_in"],
        "pass1_s": summary["timings"]["pass1_s"],
        "pass2_s": summary["timings"]["pass2_s"],
    }


def run_reference(pool: Path, md: gc.Metadata, t: float, seed: int) -> dict:
    """MetaCLIP's flow: match (pyahocorasick), count, count_to_prob, sample."""
    import psutil

    python_gc.disable()
    start = time.perf_counter()
    automaton = aho_automaton(md)
    lengths, ids = [], []
    for f in sorted(pool.glob("*.parquet")):
        for batch in pq.ParquetFile(f).iter_batches(batch_size=100_000, columns=["text"]):
            for text in batch.column(0).to_pylist():
                found = {i for _end, i in automaton.iter(metaclip_spacing(text))}
                lengths.append(len(found))
                ids.append(np.fromiter(found, np.int32, len(found)))
    flat = np.concatenate(ids)
    count = np.bincount(flat, minlength=len(md))
    p = np.where(count > t, t / np.maximum(count, 1), 1.0)
    rnd = random.Random(seed)
    kept = sum(1 for row in ids if any(rnd.random() < p[i] for i in row))
    seconds = time.perf_counter() - start
    python_gc.enable()
    for first, others in duplicate_ids(md).items():  # the automaton holds a duplicated entry once
        count[others] = count[first]
    return {
        "seconds": seconds,
        "rows_in": len(lengths),
        "rows_kept": kept,
        "counts": count,
        "peak_rss_gib": psutil.Process().memory_info().rss / 2**30,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument(
        "--small-rows", type=int, default=1_000_000, help="second, smaller pool for the memory comparison (0: skip)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--t", type=float, default=20_000)
    ap.add_argument("--cpu", type=int, default=0, help="the core that the per-core runs are pinned to")
    ap.add_argument("--partition-rows", type=int, default=100_000)
    ap.add_argument("--metadata", type=Path, default=common.DATA / "metadata" / "en_500k.json")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--json", help="append the results as one JSON line to this file")
    args = ap.parse_args(argv)

    info = common.machine_info()
    common.print_machine(info)
    where = common.REPO / "benchmarks" / "out"
    record = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "runs": {}}
    cores = info["usable_cpus"]
    runs = [(rows, 1) for rows in (args.small_rows, args.rows) if rows] + [(args.rows, cores)]
    for rows, n_cores in runs:
        pool = build_pool(rows, args.seed, where)
        cpu = args.cpu if n_cores == 1 else None
        out = where / f"curated_{rows}_{n_cores}c"
        res = run_gpu_curate(pool, args.metadata, out, args.t, args.partition_rows, cpu, n_cores)
        record["runs"][f"gpu_curate_{rows}_{n_cores}c"] = res
        print(
            f"gpu_curate  {rows:>11,} rows  {n_cores} core{'s' if n_cores > 1 else ' '}  {res['seconds']:7.1f} s  "
            f"{rows / res['seconds']:>10,.0f} rows/s  peak RSS {res['peak_rss_gib']:.2f} GiB  kept {res['rows_kept']:,}"
            f"  [pass 1 {res['pass1_s']:.1f} s, pass 2 {res['pass2_s']:.1f} s]"
        )
    if not args.no_reference:
        pool = build_pool(args.rows, args.seed, where)
        os.sched_setaffinity(0, {args.cpu})
        ref = run_reference(pool, gc.Metadata.load(args.metadata), args.t, args.seed)
        counts = pq.read_table(where / f"curated_{args.rows}_1c" / "entry_counts.parquet").column("count").to_numpy()
        if not np.array_equal(counts, ref.pop("counts")):  # the benchmark checks its own answers
            print("gpu_curate's entry counts differ from the reference flow's", file=sys.stderr)
            return 1
        record["runs"]["reference"] = ref
        print(
            f"reference   {args.rows:>11,} rows  1 core   {ref['seconds']:7.1f} s  {args.rows / ref['seconds']:>10,.0f} rows/s"
            f"  RSS at end {ref['peak_rss_gib']:.2f} GiB  kept {ref['rows_kept']:,}  (entry counts: identical)"
        )
        one = record["runs"][f"gpu_curate_{args.rows}_1c"]["seconds"]
        every = record["runs"][f"gpu_curate_{args.rows}_{cores}c"]["seconds"]
        record["ratio_per_core"], record["ratio_all_cores"] = ref["seconds"] / one, ref["seconds"] / every
        print(
            f"end to end: per core (both on cpu {args.cpu}) gpu_curate is {record['ratio_per_core']:.1f}x the reference "
            f"flow; on all {cores} cores, {record['ratio_all_cores']:.1f}x one reference process"
        )
    common.append_json(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
