"""GPU: the walk with the text already on the device, and end to end, beside the CPU.

    python benchmarks/bench_gpu.py                      # 100M texts, sized for ~6 minutes on one H100
    python benchmarks/bench_gpu.py --texts 1000000 --end-to-end-rows 1000000 --cpu-texts 100000
    benchmarks/gpu/run.sh                               # the whole thing on a fresh GPU machine (see there)

Data: the English texts of ../shared/data (GPU_CURATE_SHARED_DATA) resampled
with replacement (--seed) to --texts texts, built as Arrow chunks of 10M.
- exactness: GPU and CPU engine match sets compared on the first 1M texts
  (exit 1 on any difference, before any figure is printed);
- walk: each chunk copied to the device once, outside the timing; then the
  two walks, the scans and the compaction (gpu_engine.match_groups) timed
  with the device synchronized: GB/s of text and texts/s, best of --repeats;
- beside it, on the same texts: the CPU engine on every host core
  (--cpu-texts of them) and MetaCLIP's pyahocorasick loop on one core
  (--baseline-texts), as texts/s, and the ratios;
- end to end (--end-to-end-rows, 0 to skip): `gpu-curate curate --device gpu`
  from a parquet pool on local disk (files of 10M rows, row groups of 1M) to
  every output, in a child process: wall clock and rows/s. It reads parquet
  with cuDF where cuDF is installed and says `pyarrow` where it is not
  (--gpu-reader pyarrow: read on the host, the text copied to the GPU).
Needs CuPy and a CUDA device, or GPU_CURATE_EMULATE=1 for a dry run of the
script itself on the emulated device (its figures are not a GPU's; the
output says "emulated" on every line).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

import gpu_curate as gc  # noqa: E402
from gpu_curate import gpu_backend, gpu_engine, gpu_strings  # noqa: E402
from gpu_curate.match import default_threads, match_cpu  # noqa: E402

CHUNK = 10_000_000


def resampled(n: int, seed: int) -> list[pa.Array]:
    texts = pa.array([t for path, col in common.ENGLISH_POOLS for t in common.read_texts(path, col)], pa.large_string())
    rng = np.random.default_rng(seed)
    return [texts.take(pa.array(rng.integers(0, len(texts), min(CHUNK, n - s)))) for s in range(0, n, CHUNK)]


def device_name(cp) -> str:
    if gpu_backend.emulated():
        return "emulated device (the host; not a GPU)"
    return cp.cuda.runtime.getDeviceProperties(cp.cuda.runtime.getDevice())["name"].decode()


def time_walk(chunks: list[pa.Array], automaton: gc.Automaton, repeats: int) -> tuple[float, int]:
    cp = gpu_backend.cupy()
    groups = [gpu_engine.MatchGroup(gpu_engine.device_tables(automaton))]
    on_device = [gpu_strings.strings_from_arrow(c) for c in chunks]  # uploaded once, outside the timing
    best, pairs = float("inf"), 0
    for _ in range(repeats):
        cp.cuda.Device().synchronize()
        start = time.perf_counter()
        results = [gpu_engine.match_groups(s, groups) for s in on_device]
        cp.cuda.Device().synchronize()
        best = min(best, time.perf_counter() - start)
        pairs = sum(len(r.entry_ids) for r in results)
        del results
    return best, pairs


def pyahocorasick_rate(texts: list[str], md: gc.Metadata) -> float | None:
    if importlib.util.find_spec("ahocorasick") is None:
        return None
    from bench_match import aho_automaton, metaclip_match

    aho = aho_automaton(md)
    start = time.perf_counter()
    metaclip_match(texts, aho)
    return len(texts) / (time.perf_counter() - start)


def end_to_end(args, reader: str) -> dict:
    pool = common.REPO / "benchmarks" / "out" / f"gpu_pool_{args.end_to_end_rows}_{args.seed}"
    if not (pool / "_done").exists():
        shutil.rmtree(pool, ignore_errors=True)
        pool.mkdir(parents=True)
        for k, c in enumerate(resampled(args.end_to_end_rows, args.seed)):
            pq.write_table(pa.table({"text": c}), pool / f"pool-{k:04d}.parquet", row_group_size=1_000_000)
        (pool / "_done").write_text("")
    out = common.REPO / "benchmarks" / "out" / "gpu_curated"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "gpu_curate", "curate", str(pool), "--metadata", str(args.metadata)]
    cmd += ["--out", str(out), "--device", "gpu", "--gpu-reader", reader, "--t", str(args.t)]
    cmd += ["--partition-size", str(args.partition_rows), "--quiet"]
    cmd += ["--workers", "1", "--threads-per-worker", str(default_threads())]
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - start
    summary = json.loads((out / "summary.json").read_text())
    return {
        "rows": summary["rows_in"],
        "seconds": seconds,
        "rows_per_s": summary["rows_in"] / seconds,
        **summary["timings"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=100_000_000)
    ap.add_argument("--cpu-texts", type=int, default=10_000_000)
    ap.add_argument("--baseline-texts", type=int, default=500_000)
    ap.add_argument("--end-to-end-rows", type=int, default=100_000_000)
    ap.add_argument("--partition-rows", type=int, default=5_000_000)
    ap.add_argument("--t", type=float, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--metadata", type=Path, default=common.DATA / "metadata" / "en_500k.json")
    ap.add_argument("--json", help="append the results as one JSON line to this file")
    args = ap.parse_args(argv)

    absent = gpu_backend.missing(need_cudf=False)
    if absent:
        print("no GPU engine here: " + ", ".join(absent), file=sys.stderr)
        return 2
    cp = gpu_backend.cupy()
    info = common.machine_info()
    info["gpu"] = device_name(cp)
    common.print_machine(info)
    print(f"# device: {info['gpu']}")
    label = " (emulated)" if gpu_backend.emulated() else ""
    md = gc.Metadata.load(args.metadata)
    automaton = gc.Automaton.for_metadata(md)
    chunks = resampled(args.texts, args.seed)
    n_bytes = sum(c.nbytes - 8 * (len(c) + 1) for c in chunks)  # text bytes, without the offsets

    first = chunks[0].slice(0, 1_000_000)
    on_gpu, on_cpu = gpu_engine.match_gpu(first, automaton), match_cpu(first, automaton)
    if not (np.array_equal(on_gpu.offsets, on_cpu.offsets) and np.array_equal(on_gpu.entry_ids, on_cpu.entry_ids)):
        print("GPU and CPU match sets differ on the first 1M texts", file=sys.stderr)
        return 1

    seconds, pairs = time_walk(chunks, automaton, args.repeats)
    record = {"machine": info, "texts": args.texts, "text_gb": n_bytes / 1e9, "pairs": pairs}
    record["gpu_walk"] = {"seconds": seconds, "gb_per_s": n_bytes / 1e9 / seconds, "texts_per_s": args.texts / seconds}
    cpu_texts = (
        pa.concat_arrays(chunks).slice(0, args.cpu_texts) if args.cpu_texts > CHUNK else chunks[0][: args.cpu_texts]
    )
    start = time.perf_counter()
    match_cpu(cpu_texts, automaton, default_threads())
    record["cpu_engine"] = {"threads": default_threads(), "texts_per_s": len(cpu_texts) / (time.perf_counter() - start)}
    record["pyahocorasick_1_core"] = {
        "texts_per_s": pyahocorasick_rate(chunks[0][: args.baseline_texts].to_pylist(), md)
    }

    w, c, b = record["gpu_walk"], record["cpu_engine"], record["pyahocorasick_1_core"]["texts_per_s"]
    print(
        f"GPU walk{label:11} {w['gb_per_s']:8.2f} GB/s {w['texts_per_s']:>15,.0f} texts/s  "
        f"({args.texts:,} texts, {n_bytes / 1e9:.2f} GB, {pairs / args.texts:.1f} pairs/text, best of {args.repeats})"
    )
    print(f"CPU engine        {'':13} {c['texts_per_s']:>15,.0f} texts/s  ({c['threads']} threads)")
    if b:
        print(f"pyahocorasick     {'':13} {b:>15,.0f} texts/s  (1 core)")
        print(
            f"GPU walk{label} / CPU engine {w['texts_per_s'] / c['texts_per_s']:.1f}x, / pyahocorasick {w['texts_per_s'] / b:.0f}x"
        )
    else:
        print("pyahocorasick: not installed (carry its wheel: benchmarks/gpu/wheels.sh); no baseline ratio")

    if args.end_to_end_rows:
        reader = "cudf" if not gpu_backend.missing(need_cudf=True) else "pyarrow"
        record["end_to_end"] = e = end_to_end(args, reader)
        e["gpu_reader"] = reader
        print(
            f"end to end{label:9} {e['rows_per_s']:>29,.0f} rows/s  ({e['rows']:,} rows in {e['seconds']:.1f} s: "
            f"pass 1 {e.get('pass1_s', 0):.1f} s, pass 2 {e.get('pass2_s', 0):.1f} s; parquet read with {reader}"
            f"{'' if reader == 'cudf' else ' on the host: cuDF is not installed here'})"
        )
    common.append_json(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
