"""Matching throughput: gpu_curate's CPU engine against MetaCLIP's matching loop.

    python benchmarks/bench_match.py                      # 1M texts, seed 0, en_500k.json
    python benchmarks/bench_match.py --texts 2000000 --json results.jsonl

One process, one data set: the English pools of ../shared/data (COCO
captions, LAION-style alt-text, CC3M captions) resampled with replacement to
--texts texts (--seed), matched against --metadata (MetaCLIP 1 padding).

The baseline is MetaCLIP's loop, rewritten here: its spacing (wrap
,.;:?!` in spaces, turn TAB/LF/CR into spaces, pad with one space), then
pyahocorasick's iter over an automaton of " entry " keys, collected in a set
per text. It runs single-threaded, as in MetaCLIP (which scales out with
processes), and again on all CPUs with a fork pool. Python's cyclic GC is
off during every timed run (it would slow the baseline down as results pile
up, by over 1.5x at 1M texts). gpu_curate reads the
texts as an Arrow large_string column (its native input; the list -> Arrow
conversion is timed separately) and runs on 1 thread and on all CPUs.

The benchmark checks itself: every engine's match sets must equal the
baseline's, or it exits with status 1 before printing any ratio.
"""

from __future__ import annotations

import argparse
import gc as python_gc
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

import gpu_curate as gc
from gpu_curate.automaton import Automaton
from gpu_curate.match import match_cpu

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

WRAPPED = ",.;:?!`"


# -- the baseline: MetaCLIP's matching loop -------------------------------------
def metaclip_spacing(text: str) -> str:
    text = f" {text} "
    for mark in WRAPPED:
        text = text.replace(mark, f" {mark} ")
    for ch in "\t\n\r":
        text = text.replace(ch, " ")
    return text


def aho_automaton(md: gc.Metadata):
    """pyahocorasick over " entry " keys, each mapped to its entry id, as
    MetaCLIP builds it (a duplicated entry keeps its first id here; the
    others are added back when the answers are compared)."""
    import ahocorasick

    automaton = ahocorasick.Automaton()
    for i, entry in enumerate(md.entries.to_pylist()):
        key = f" {entry} "
        if key not in automaton:
            automaton.add_word(key, i)
    automaton.make_automaton()
    return automaton


def metaclip_match(texts: list[str], automaton) -> list[set[int]]:
    out = []
    for text in texts:
        found = set()
        for _end, entry_id in automaton.iter(metaclip_spacing(text)):
            found.add(entry_id)
        out.append(found)
    return out


_POOL_AUTOMATON = None  # inherited by forked workers


def _pool_chunk(texts: list[str]) -> list[set[int]]:
    return metaclip_match(texts, _POOL_AUTOMATON)


def metaclip_match_pool(texts: list[str], automaton, procs: int) -> list[set[int]]:
    global _POOL_AUTOMATON
    _POOL_AUTOMATON = automaton
    step = 10_000
    chunks = [texts[i : i + step] for i in range(0, len(texts), step)]
    with mp.get_context("fork").Pool(procs) as pool:
        return [s for part in pool.map(_pool_chunk, chunks) for s in part]


# -- checks ----------------------------------------------------------------------
def as_csr(sets: list[set[int]], duplicates: dict[int, list[int]]) -> tuple[np.ndarray, np.ndarray]:
    rows = []
    for s in sets:
        ids = set(s)
        for i in s:
            ids.update(duplicates.get(i, ()))
        rows.append(sorted(ids))
    lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ids = np.fromiter((i for r in rows for i in r), np.int64, int(offsets[-1]))
    return offsets, ids


def duplicate_ids(md: gc.Metadata) -> dict[int, list[int]]:
    first: dict[str, int] = {}
    extra: dict[int, list[int]] = {}
    for i, entry in enumerate(md.entries.to_pylist()):
        if entry in first:
            extra.setdefault(first[entry], []).append(i)
        else:
            first[entry] = i
    return extra


def best_of(repeats: int, fn):
    """Best wall time of `repeats` calls, with Python's cyclic GC off: a million
    result sets would otherwise make the baseline pay for repeated GC passes."""
    times, result = [], None
    for _ in range(repeats):
        result = None
        python_gc.collect()
        python_gc.disable()
        try:
            start = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - start)
        finally:
            python_gc.enable()
    return min(times), times, result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=1_000_000, help="number of texts (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=0, help="resampling seed (default 0)")
    ap.add_argument("--metadata", default=str(common.DATA / "metadata" / "en_500k.json"))
    ap.add_argument("--repeats", type=int, default=3, help="gpu_curate runs per setting; the best counts")
    ap.add_argument("--baseline-repeats", type=int, default=1, help="baseline runs; the best counts")
    ap.add_argument("--no-pool", action="store_true", help="skip the all-CPU baseline (fork pool)")
    ap.add_argument("--json", help="append the result as one JSON line to this file")
    args = ap.parse_args(argv)

    info = common.machine_info()
    common.print_machine(info)
    n_cpus = info["usable_cpus"]

    texts = common.english_texts(args.texts, args.seed)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    mb = n_bytes / 1e6
    print(
        f"# {len(texts):,} texts ({mb:.1f} MB UTF-8, {n_bytes / len(texts):.1f} B/text), "
        f"English pools resampled with seed {args.seed}; metadata {Path(args.metadata).name}"
    )

    md = gc.Metadata.load(args.metadata)
    t_build, _, automaton = best_of(1, lambda: Automaton.build(md))
    t_aho_build, _, aho = best_of(1, lambda: aho_automaton(md))
    print(f"# build: gpu_curate {t_build:.2f} s ({automaton}), pyahocorasick {t_aho_build:.2f} s")

    t_base, base_runs, base_sets = best_of(args.baseline_repeats, lambda: metaclip_match(texts, aho))
    ref_offsets, ref_ids = as_csr(base_sets, duplicate_ids(md))
    del base_sets
    rows = [("MetaCLIP loop (pyahocorasick)", 1, t_base, base_runs, True)]
    if not args.no_pool and n_cpus > 1:
        t_pool, pool_runs, pool_sets = best_of(1, lambda: metaclip_match_pool(texts, aho, n_cpus))
        pool_offsets, pool_ids = as_csr(pool_sets, duplicate_ids(md))
        del pool_sets
        ok = np.array_equal(pool_offsets, ref_offsets) and np.array_equal(pool_ids, ref_ids)
        rows.append(("MetaCLIP loop, fork pool", n_cpus, t_pool, pool_runs, ok))

    t_arrow, _, column = best_of(1, lambda: pa.array(texts, pa.large_string()))
    for threads in sorted({1, n_cpus}):
        t, runs, res = best_of(args.repeats, lambda threads=threads: match_cpu(column, automaton, threads))
        ok = np.array_equal(res.offsets, ref_offsets) and np.array_equal(res.entry_ids, ref_ids)
        rows.append(("gpu_curate CPU engine", threads, t, runs, ok))
        del res

    pairs = int(ref_offsets[-1])
    print(
        f"# answers: {pairs:,} (text, entry) pairs; list -> Arrow conversion {t_arrow:.2f} s "
        f"(not in gpu_curate's times below)"
    )
    print()
    print("| engine | threads | best s | texts/s | MB/s | vs baseline | per core vs baseline | exact |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    record_rows = []
    for name, threads, t, runs, ok in rows:
        rate = len(texts) / t
        ratio = t_base / t
        print(
            f"| {name} | {threads} | {t:.3f} | {rate:,.0f} | {mb / t:.1f} | {ratio:.1f}x | "
            f"{ratio / threads:.1f}x | {'yes' if ok else 'NO'} |"
        )
        record_rows.append(
            {
                "engine": name,
                "threads": threads,
                "best_s": t,
                "runs_s": runs,
                "texts_per_s": rate,
                "mb_per_s": mb / t,
                "ratio": ratio,
                "exact": ok,
            }
        )
    exact = all(r[4] for r in rows)
    common.append_json(
        args.json,
        {
            "benchmark": "match",
            "machine": info,
            "texts": len(texts),
            "bytes": n_bytes,
            "seed": args.seed,
            "metadata": Path(args.metadata).name,
            "pairs": pairs,
            "build_s": t_build,
            "aho_build_s": t_aho_build,
            "list_to_arrow_s": t_arrow,
            "rows": record_rows,
            "exact": exact,
        },
    )
    if not exact:
        print("\nMISMATCH: an engine's match sets differ from the baseline's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
