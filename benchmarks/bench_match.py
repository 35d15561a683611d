"""Matching throughput: gpu_curate's CPU engine against MetaCLIP's matching loop.

    python benchmarks/bench_match.py                      # 1M texts, seed 0, both cases
    python benchmarks/bench_match.py --texts 2000000 --cases sparse --json results.jsonl

One process, one data set: the English pools of ../shared/data (COCO
captions, LAION-style alt-text, CC3M captions) resampled with replacement to
--texts texts (--seed), matched (MetaCLIP 1 padding) in two cases:
  * sparse: --metadata as it is (en_500k.json: words, bigrams, WordNet);
  * dense: the same entries plus the pool's own word 2- and 3-grams, most
    frequent first (--dense-ngrams of them; default all), the nested
    multi-word entries that Wikipedia bigrams and titles bring to real
    metadata: about twice the (text, entry) pairs per text.

The baseline is MetaCLIP's loop, rewritten here: its spacing (wrap
,.;:?!` in spaces, turn TAB/LF/CR into spaces, pad with one space), then
pyahocorasick's iter over an automaton of " entry " keys with integer
values (STORE_INTS: the fastest form of the loop), the ids collected in a
set per text. It runs single-threaded, as in MetaCLIP (which scales out with
processes), and again on all CPUs with a fork pool. Python's cyclic GC is
off during every timed run (it would slow the baseline down as results pile
up, by over 1.5x at 1M texts). gpu_curate reads the texts as an Arrow
large_string column (its native input; the list -> Arrow conversion is timed
separately) and runs on 1 thread and on all CPUs.

The benchmark checks itself: every engine's match sets must equal the
baseline's, or it exits with status 1 after printing the table (the exact
column says which row differs).
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
    """pyahocorasick over " entry " keys, each mapped to its entry id (an
    integer value, STORE_INTS), as MetaCLIP builds it (a duplicated entry
    keeps its first id here; the others are added back when the answers are
    compared)."""
    import ahocorasick

    automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
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


def dense_metadata(md: gc.Metadata, n_grams: int | None) -> gc.Metadata:
    """`md` plus the pool's most frequent word 2- and 3-grams that are not entries yet."""
    have = set(md.entries.to_pylist())
    grams = [g for g in common.pool_ngrams(common.english_pool()) if g not in have][:n_grams]
    return gc.Metadata(md.entries.to_pylist() + grams, padding=md.padding)


def run_case(case: str, md: gc.Metadata, texts: list[str], column: pa.Array, args, n_cpus: int) -> dict:
    """Every engine on one metadata list; their rows and whether all were exact."""
    t_build, _, automaton = best_of(1, lambda: Automaton.build(md))
    t_aho_build, _, aho = best_of(1, lambda: aho_automaton(md))
    print(
        f"# {case}: {len(md):,} entries; build: gpu_curate {t_build:.2f} s ({automaton}), pyahocorasick {t_aho_build:.2f} s"
    )

    t_base, base_runs, base_sets = best_of(args.baseline_repeats, lambda: metaclip_match(texts, aho))
    duplicates = duplicate_ids(md)
    ref_offsets, ref_ids = as_csr(base_sets, duplicates)
    del base_sets
    rows = [("MetaCLIP loop (pyahocorasick)", 1, t_base, base_runs, ref_offsets[-1], True)]
    if not args.no_pool and n_cpus > 1:
        t_pool, pool_runs, pool_sets = best_of(1, lambda: metaclip_match_pool(texts, aho, n_cpus))
        pool_offsets, pool_ids = as_csr(pool_sets, duplicates)
        del pool_sets
        ok = np.array_equal(pool_offsets, ref_offsets) and np.array_equal(pool_ids, ref_ids)
        rows.append(("MetaCLIP loop, fork pool", n_cpus, t_pool, pool_runs, pool_offsets[-1], ok))
    for threads in sorted({1, n_cpus}):
        t, runs, res = best_of(args.repeats, lambda threads=threads: match_cpu(column, automaton, threads))
        ok = np.array_equal(res.offsets, ref_offsets) and np.array_equal(res.entry_ids, ref_ids)
        rows.append(("gpu_curate CPU engine", threads, t, runs, res.offsets[-1], ok))
        del res
    return {
        "case": case,
        "entries": len(md),
        "pairs": int(ref_offsets[-1]),
        "build_s": t_build,
        "aho_build_s": t_aho_build,
        "rows": [
            {
                "engine": name,
                "threads": threads,
                "best_s": t,
                "runs_s": runs,
                "texts_per_s": len(texts) / t,
                "pairs_per_text": int(pairs) / len(texts),
                "ratio": t_base / t,
                "exact": ok,
            }
            for name, threads, t, runs, pairs, ok in rows
        ],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=1_000_000, help="number of texts (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=0, help="resampling seed (default 0)")
    ap.add_argument("--metadata", default=str(common.DATA / "metadata" / "en_500k.json"))
    ap.add_argument("--cases", default="sparse,dense", help="comma-separated: sparse, dense (default both)")
    ap.add_argument("--dense-ngrams", type=int, help="n-grams added in the dense case (default: all of them)")
    ap.add_argument("--repeats", type=int, default=3, help="gpu_curate runs per setting; the best counts")
    ap.add_argument("--baseline-repeats", type=int, default=1, help="baseline runs; the best counts")
    ap.add_argument("--no-pool", action="store_true", help="skip the all-CPU baseline (fork pool)")
    ap.add_argument("--json", help="append the result as one JSON line to this file")
    args = ap.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or set(cases) - {"sparse", "dense"}:
        ap.error(f"--cases takes sparse and/or dense, not {args.cases!r}")

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
    t_arrow, _, column = best_of(1, lambda: pa.array(texts, pa.large_string()))
    print(f"# list -> Arrow conversion {t_arrow:.2f} s (not in gpu_curate's times below)")

    md = gc.Metadata.load(args.metadata)
    results = []
    for case in cases:
        case_md = md if case == "sparse" else dense_metadata(md, args.dense_ngrams)
        results.append(run_case(case, case_md, texts, column, args, n_cpus))

    print()
    print(
        "| case | engine | threads | best s | texts/s | MB/s | pairs/text | vs baseline | per core vs baseline | exact |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for result in results:
        for r in result["rows"]:
            print(
                f"| {result['case']} | {r['engine']} | {r['threads']} | {r['best_s']:.3f} | {r['texts_per_s']:,.0f} | "
                f"{mb / r['best_s']:.1f} | {r['pairs_per_text']:.2f} | {r['ratio']:.1f}x | "
                f"{r['ratio'] / r['threads']:.1f}x | {'yes' if r['exact'] else 'NO'} |"
            )
    exact = all(r["exact"] for result in results for r in result["rows"])
    common.append_json(
        args.json,
        {
            "benchmark": "match",
            "machine": info,
            "texts": len(texts),
            "bytes": n_bytes,
            "seed": args.seed,
            "metadata": Path(args.metadata).name,
            "dense_ngrams": args.dense_ngrams,
            "list_to_arrow_s": t_arrow,
            "cases": results,
            "exact": exact,
        },
    )
    if not exact:
        print("\nMISMATCH: an engine's match sets differ from the baseline's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
