"""Online rebalancing: one data-loader batch decided by `Rebalancer.keep`, on one core.

    python benchmarks/bench_rebalance.py                 # 100k-row batches, 1M-text pool, t=50, 300 runs
    python benchmarks/bench_rebalance.py --batch 10000 --json results.jsonl

- Counts: the English texts of ../shared/data resampled with replacement to
  --pool texts (--seed), matched against en_500k.json (MetaCLIP 1 padding);
  p from those counts at --t (50 for 1M texts is MetaCLIP's t = 20,000 at
  400M texts, scaled to the pool).
- Batch: --batch matched rows drawn from that pool, as a loader gets them
  from the match index: uids as an Arrow string column and entry ids as a
  large_list<int32> column. Three uid forms: 32-hex DataComp uids, derived
  uids `pool-0001.parquet:<row>` (strings), int64 uids. Also Python lists
  (uids list[str], ids list[list[int]]), to show what conversion costs.
- Time: the whole `rb.keep(uids, entry_ids, epoch=e)` call (uid hashing,
  checks, keep kernel), a new epoch every run, this process pinned to one
  core (--cpu), GC off during the timed runs; median and 10th/90th
  percentiles of --runs runs after 5 warm-up runs, wall clock, and the
  median CPU time of this process (which leaves out time spent descheduled
  on a shared machine).
- Check: every form's decision equals the docs/semantics.md section 7 rule spelled out
  with the elementwise uniform u(seed, uid, i) (`_core.uniforms`) and NumPy;
  exit 1 otherwise.
"""

from __future__ import annotations

import argparse
import gc as python_gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import gpu_curate as gc  # noqa: E402
from gpu_curate import _core  # noqa: E402
from gpu_curate.balance import uid_keys  # noqa: E402


def reference_keep(rb: gc.Rebalancer, keys: np.ndarray, ids: pa.Array, epoch: int) -> np.ndarray:
    """docs/semantics.md section 7 with the elementwise uniform: keep when u < p[i] for some i."""
    offsets = ids.offsets.to_numpy()
    values = ids.values.to_numpy()
    row_of = np.repeat(np.arange(len(keys)), np.diff(offsets))
    u = _core.uniforms(np.uint64(rb.epoch_seed(epoch)), keys[row_of], values)
    passed = np.zeros(len(keys), bool)
    np.logical_or.at(passed, row_of, u < rb.p[values])
    return passed


def time_calls(call, runs: int) -> tuple[np.ndarray, np.ndarray]:
    """Wall and CPU seconds of each run. On a shared machine the CPU time
    (this process's, from the kernel) leaves out the time spent descheduled."""
    for e in range(5):
        call(10_000 + e)
    python_gc.disable()
    try:
        wall, cpu = [], []
        for e in range(runs):
            start, start_cpu = time.perf_counter(), time.process_time()
            call(e)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    finally:
        python_gc.enable()
    return np.array(wall), np.array(cpu)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=1_000_000, help="texts whose counts give p")
    ap.add_argument("--batch", type=int, default=100_000, help="rows per decided batch")
    ap.add_argument("--t", type=float, default=50)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cpu", type=int, default=0, help="the core this process is pinned to")
    ap.add_argument("--json", help="append the results to this JSON-lines file")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    info = common.machine_info()
    common.print_machine(info)

    md = gc.Metadata.load(common.DATA / "metadata" / "en_500k.json")
    texts = pa.array(common.english_texts(args.pool, args.seed), pa.large_string())
    res = gc.match(texts, md, threads=1)
    counts = res.counts(len(md))
    with tempfile.TemporaryDirectory() as out:  # the constructor's `out` is only where kept_uids would read
        rb = gc.Rebalancer(Path(out), counts, None, args.t, 170_000, args.seed, None)
    matched = np.flatnonzero(np.diff(res.offsets) > 0)
    rows = np.random.default_rng(args.seed + 1).choice(matched, args.batch, replace=False)
    ids = res.to_arrow().take(pa.array(rows)).cast(pa.large_list(pa.int32()))
    rng = np.random.default_rng(args.seed + 2)
    hex_uids = pa.array([f"{a:016x}{b:016x}" for a, b in rng.integers(0, 2**63, (args.batch, 2)).tolist()])
    forms = {
        "Arrow: DataComp uids (32 hex) + large_list ids": (hex_uids, ids),
        "Arrow: derived uids (file:row) + large_list ids": (
            pa.array([f"pool-0001.parquet:{r}" for r in rows.tolist()]),
            ids,
        ),
        "Arrow: int64 uids + large_list ids": (pa.array(rows.astype(np.int64)), ids),
        "Python: list[str] uids + list[list[int]] ids": (hex_uids.to_pylist(), ids.to_pylist()),
    }
    n_pairs = len(ids.values)
    print(
        f"# pool {args.pool:,} texts, {int((counts > 0).sum()):,} entries hit, {int((counts >= args.t).sum()):,} "
        f"over t={args.t:g}; batch {args.batch:,} matched rows, {n_pairs:,} (row, entry) pairs; "
        f"one core (cpu {args.cpu}), {args.runs} runs"
    )
    print("| batch form | median ms | p10 ms | p90 ms | CPU ms (median) | rows/s (median) | kept | exact |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    ok = True
    for name, (uids, entry_ids) in forms.items():
        keys = uid_keys(uids if isinstance(uids, pa.Array) else pa.array(uids))
        exact = all(np.array_equal(rb.keep(uids, entry_ids, epoch=e), reference_keep(rb, keys, ids, e)) for e in (0, 7))
        ok &= exact
        s, cpu = time_calls(lambda e: rb.keep(uids, entry_ids, epoch=e), args.runs)
        med, p10, p90 = (1e3 * np.percentile(s, q) for q in (50, 10, 90))
        cpu_med = 1e3 * np.median(cpu)
        kept = int(rb.keep(uids, entry_ids, epoch=0).sum())
        print(
            f"| {name} | {med:.2f} | {p10:.2f} | {p90:.2f} | {cpu_med:.2f} | {args.batch / (med / 1e3):,.0f} | {kept:,} | "
            f"{'yes' if exact else 'NO'} |"
        )
        common.append_json(
            args.json,
            {
                "bench": "rebalance",
                "form": name,
                "batch": args.batch,
                "pairs": n_pairs,
                "median_ms": med,
                "p10_ms": p10,
                "p90_ms": p90,
                "cpu_median_ms": cpu_med,
                "exact": exact,
                "machine": info,
            },
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
