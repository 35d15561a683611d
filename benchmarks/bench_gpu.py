"""GPU section: the walk with data already on the device, and end to end.

    python benchmarks/bench_gpu.py                       # 100M texts, seed 0, en_500k.json
    python benchmarks/bench_gpu.py --texts 10000000 --end-to-end-rows 0

Data: the English texts of ../shared/data resampled with replacement (--seed)
to --texts texts, built as Arrow chunks of 10M (never a Python list).
- walk: each chunk copied to the GPU once, then gpu_engine's count pass, scan
  and write pass timed with the device synchronized (GB/s of text bytes and
  texts/s), best of --repeats;
- beside it, in the same run and on the same texts: the CPU engine on all
  host cores (--cpu-texts of them) and MetaCLIP's pyahocorasick loop on one
  core (--baseline-texts), as texts/s;
- exactness: GPU and CPU match sets compared on the first 1M texts (exit 1 on
  any difference, before printing a ratio);
- end to end (--end-to-end-rows, 0 to skip): `gpu-curate curate --device gpu`
  on a parquet pool of that many rows, wall clock from the command.
Needs CuPy and a CUDA device (cuDF and dask-cuda for the end-to-end part).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_match import aho_automaton, metaclip_match  # noqa: E402

import gpu_curate as gc  # noqa: E402
from gpu_curate import gpu_engine, gpu_strings  # noqa: E402
from gpu_curate.match import default_threads, match_cpu  # noqa: E402

CHUNK = 10_000_000


def resampled(n: int, seed: int) -> list[pa.Array]:
    texts = pa.array([t for path, col in common.ENGLISH_POOLS for t in common.read_texts(path, col)], pa.large_string())
    rng = np.random.default_rng(seed)
    return [texts.take(pa.array(rng.integers(0, len(texts), min(CHUNK, n - s)))) for s in range(0, n, CHUNK)]


def time_walk(chunks: list[pa.Array], automaton: gc.Automaton, repeats: int) -> tuple[float, int]:
    import cupy

    tables = gpu_engine.device_tables(automaton)
    on_device = [gpu_strings.strings_from_arrow(c) for c in chunks]  # uploaded once, outside the timing
    best, pairs = float("inf"), 0
    for _ in range(repeats):
        cupy.cuda.Device().synchronize()
        start = time.perf_counter()
        results = [gpu_engine._match_strings(s, tables) for s in on_device]
        cupy.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - start)
        pairs = sum(len(r.entry_ids) for r in results)
        del results
    return best, pairs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=100_000_000)
    ap.add_argument("--cpu-texts", type=int, default=10_000_000)
    ap.add_argument("--baseline-texts", type=int, default=500_000)
    ap.add_argument("--end-to-end-rows", type=int, default=100_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--metadata", type=Path, default=common.DATA / "metadata" / "en_500k.json")
    ap.add_argument("--json", help="append the results as one JSON line to this file")
    args = ap.parse_args(argv)

    if not gpu_engine.available(need_cudf=False):
        print("no GPU engine here: " + ", ".join(gpu_engine.missing(need_cudf=False)), file=sys.stderr)
        return 2
    import cupy

    info = common.machine_info()
    info["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    common.print_machine(info)
    print(f"# GPU {info['gpu']}")
    md = gc.Metadata.load(args.metadata)
    automaton = gc.Automaton.for_metadata(md)
    chunks = resampled(args.texts, args.seed)
    n_bytes = sum(c.nbytes - 8 * (len(c) + 1) for c in chunks)  # text bytes, without the offsets

    first = chunks[0].slice(0, 1_000_000)
    if not np.array_equal(gpu_engine.match_gpu(first, automaton).entry_ids, match_cpu(first, automaton).entry_ids):
        print("GPU and CPU match sets differ on the first 1M texts", file=sys.stderr)
        return 1

    seconds, pairs = time_walk(chunks, automaton, args.repeats)
    record = {"machine": info, "texts": args.texts, "text_gb": n_bytes / 1e9, "pairs": pairs}
    record["gpu_walk"] = {"seconds": seconds, "gb_per_s": n_bytes / 1e9 / seconds, "texts_per_s": args.texts / seconds}

    cpu_texts = (
        pa.concat_arrays(chunks)[: args.cpu_texts] if args.cpu_texts > CHUNK else chunks[0].slice(0, args.cpu_texts)
    )
    start = time.perf_counter()
    match_cpu(cpu_texts, automaton, default_threads())
    record["cpu_engine"] = {"threads": default_threads(), "texts_per_s": len(cpu_texts) / (time.perf_counter() - start)}

    base = chunks[0].slice(0, args.baseline_texts).to_pylist()
    aho = aho_automaton(md)
    start = time.perf_counter()
    metaclip_match(base, aho)
    record["pyahocorasick_1_core"] = {"texts_per_s": len(base) / (time.perf_counter() - start)}

    w = record["gpu_walk"]
    print(
        f"GPU walk         {w['gb_per_s']:8.2f} GB/s  {w['texts_per_s']:>14,.0f} texts/s  ({args.texts:,} texts, {n_bytes / 1e9:.2f} GB, best of {args.repeats})"
    )
    print(
        f"CPU engine       {'':8}       {record['cpu_engine']['texts_per_s']:>14,.0f} texts/s  ({default_threads()} threads)"
    )
    print(f"pyahocorasick    {'':8}       {record['pyahocorasick_1_core']['texts_per_s']:>14,.0f} texts/s  (1 core)")

    if args.end_to_end_rows:
        pool = common.REPO / "benchmarks" / "out" / f"gpu_pool_{args.end_to_end_rows}_{args.seed}"
        if not (pool / "_done").exists():
            pool.mkdir(parents=True, exist_ok=True)
            for k, c in enumerate(resampled(args.end_to_end_rows, args.seed)):
                pq.write_table(pa.table({"text": c}), pool / f"pool-{k:04d}.parquet", row_group_size=1_000_000)
            (pool / "_done").write_text("")
        out = common.REPO / "benchmarks" / "out" / "gpu_curated"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gpu_curate",
                "curate",
                str(pool),
                "--metadata",
                str(args.metadata),
                "--out",
                str(out),
                "--device",
                "gpu",
                "--partition-size",
                "5000000",
                "--quiet",
            ],
            check=True,
        )
        seconds = time.perf_counter() - start
        summary = json.loads((out / "summary.json").read_text())
        record["end_to_end"] = {
            "rows": summary["rows_in"],
            "seconds": seconds,
            "rows_per_s": summary["rows_in"] / seconds,
            "timings": summary["timings"],
        }
        print(
            f"end to end       {summary['rows_in'] / seconds:>23,.0f} rows/s  ({summary['rows_in']:,} rows, {seconds:.1f} s)"
        )
    common.append_json(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
