"""Matching throughput: gpu_curate's CPU engine against MetaCLIP's matching loop.

    python benchmarks/bench_match.py                      # 1M texts, seed 0, sparse and dense
    python benchmarks/bench_match.py --cases long,worldwide
    python benchmarks/bench_match.py --texts 2000000 --cases sparse --json results.jsonl

One process, one data set: the English pools of ../shared/data (COCO
captions, LAION-style alt-text, CC3M captions) resampled with replacement to
--texts texts (--seed), matched (MetaCLIP 1 padding) in up to four cases:
  * sparse: --metadata as it is (en_500k.json: words, bigrams, WordNet);
  * dense: the same entries plus the pool's own word 2- and 3-grams, most
    frequent first (--dense-ngrams of them; default all), the nested
    multi-word entries that Wikipedia bigrams and titles bring to real
    metadata: about twice the (text, entry) pairs per text;
  * long: the sparse case on long documents: the same resampled texts joined
    --long-join at a time by one space (default 37: about 2 KB per
    document), so the same bytes in --texts / --long-join texts;
  * worldwide: MetaCLIP 2's per-language matching on a skewed language mix
    (--mix, default 80 % zh, 15 % en, 5 % nl: each row's language drawn with
    these shares, its text drawn from that language's pool: COCO-CN, the
    English pools, DutchDescriptions), one list per language (--metadata for
    en, zh_wordfreq_100k.txt, nl_wordfreq_100k.txt) in one global id space
    (gpu_curate.worldwide.MetadataSet), the worldwide padding rule
    (docs/semantics.md section 3: no space beside a CJK-like character, so
    nearly every zh entry is a bare substring, the costly path).

The baseline is MetaCLIP's loop, rewritten here: its spacing (wrap
,.;:?!` in spaces, turn TAB/LF/CR into spaces, pad with one space), then
pyahocorasick's iter over an automaton of padded entry keys with integer
values (STORE_INTS: the fastest form of the loop), the ids collected in a
set per text. Worldwide: one automaton per language, each entry keyed as
the worldwide rule pads it and valued with its global id, and each text run
through its own language's automaton. It runs single-threaded, as in
MetaCLIP (which scales out with processes), and again on all CPUs with a
fork pool. Python's cyclic GC is off during every timed run (it would slow
the baseline down as results pile up, by over 1.5x at 1M texts).
gpu_curate reads the texts as an Arrow large_string column (its native
input; the list -> Arrow conversion is timed separately) and runs on 1
thread and on all CPUs (worldwide: MetadataSet.match, which groups the rows
by language, matches each group and scatters the ids back).

The benchmark checks itself: every engine's match sets must equal the
baseline's, or it exits with status 1 after printing the table (the exact
column says which row differs).
"""

from __future__ import annotations

import argparse
import contextlib
import gc as python_gc
import multiprocessing as mp
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

import gpu_curate as gc
from gpu_curate.automaton import Automaton
from gpu_curate.match import match_cpu
from gpu_curate.metadata import CJK_LIKE_CHARS, CJK_LIKE_RANGES
from gpu_curate.worldwide import MetadataSet

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

WRAPPED = ",.;:?!`"
CASES = ("sparse", "dense", "long", "worldwide")


# -- the baseline: MetaCLIP's matching loop -------------------------------------
def metaclip_spacing(text: str) -> str:
    text = f" {text} "
    for mark in WRAPPED:
        text = text.replace(mark, f" {mark} ")
    for ch in "\t\n\r":
        text = text.replace(ch, " ")
    return text


def cjk_like(ch: str) -> bool:
    """docs/semantics.md section 3's table (the spec's ranges and characters)."""
    cp = ord(ch)
    return ch in CJK_LIKE_CHARS or any(lo <= cp <= hi for lo, hi in CJK_LIKE_RANGES)


def padded_key(entry: str, padding: str) -> str:
    """The entry as it is searched for: " entry " (metaclip1), or a space on
    each side whose end character is not CJK-like (worldwide)."""
    if padding == "metaclip1":
        return f" {entry} "
    return ("" if cjk_like(entry[0]) else " ") + entry + ("" if cjk_like(entry[-1]) else " ")


def aho_automaton(md: gc.Metadata, base: int = 0):
    """pyahocorasick over the padded keys of `md`, each mapped to its id
    base + i (an integer value, STORE_INTS), as MetaCLIP builds it (a
    duplicated key keeps its first id here; duplicate_ids gives the others,
    added back when the answers are compared)."""
    import ahocorasick

    automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
    for i, entry in enumerate(md.entries.to_pylist(), start=base):
        key = padded_key(entry, md.padding)
        if key not in automaton:
            automaton.add_word(key, i)
    automaton.make_automaton()
    return automaton


def duplicate_ids(md: gc.Metadata, base: int = 0) -> dict[int, list[int]]:
    """{the id aho_automaton keeps for a duplicated key: the ids of its other copies}."""
    first: dict[str, int] = {}
    extra: dict[int, list[int]] = {}
    for i, entry in enumerate(md.entries.to_pylist(), start=base):
        key = padded_key(entry, md.padding)
        if key in first:
            extra.setdefault(first[key], []).append(i)
        else:
            first[key] = i
    return extra


def metaclip_match(texts: list[str], automaton) -> list[set[int]]:
    out = []
    for text in texts:
        found = set()
        for _end, entry_id in automaton.iter(metaclip_spacing(text)):
            found.add(entry_id)
        out.append(found)
    return out


def metaclip_match_langs(texts: list[str], langs: list[str], automata: dict) -> list[set[int]]:
    """MetaCLIP 2's loop: each text through its language's automaton (none: no match)."""
    out = []
    for text, lang in zip(texts, langs):
        found = set()
        automaton = automata.get(lang)
        if automaton is not None:
            for _end, entry_id in automaton.iter(metaclip_spacing(text)):
                found.add(entry_id)
        out.append(found)
    return out


_POOL_JOB = None  # (function, row-aligned lists, other arguments), inherited by forked workers


def _pool_chunk(bounds: tuple[int, int]) -> list[set[int]]:
    fn, rows, extra = _POOL_JOB
    lo, hi = bounds
    return fn(*(r[lo:hi] for r in rows), *extra)


def metaclip_pool(fn, rows: tuple[list, ...], extra: tuple, procs: int) -> list[set[int]]:
    """fn over chunks of the rows on `procs` forked processes (chunks of 10,000
    rows, fewer where that would leave under 16 chunks per process)."""
    global _POOL_JOB
    _POOL_JOB = (fn, rows, extra)
    n = len(rows[0])
    step = max(1, min(10_000, -(-n // (16 * procs))))
    with mp.get_context("fork").Pool(procs) as pool:
        parts = pool.map(_pool_chunk, [(i, min(n, i + step)) for i in range(0, n, step)])
    return [s for part in parts for s in part]


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


@contextlib.contextmanager
def fresh_automaton_cache():
    """An empty GPU_CURATE_CACHE, so MetadataSet builds its automata instead of loading them."""
    old = os.environ.get("GPU_CURATE_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["GPU_CURATE_CACHE"] = cache
        try:
            yield
        finally:
            if old is None:
                del os.environ["GPU_CURATE_CACHE"]
            else:
                os.environ["GPU_CURATE_CACHE"] = old


# -- the cases ---------------------------------------------------------------------
@dataclass
class Case:
    name: str
    about: str  # the texts, in words
    texts: list[str]
    lists: dict[str | None, gc.Metadata]  # {None: md}: one list for every row; else per language
    langs: list[str] | None = None  # per-language lists: each row's language


def dense_metadata(md: gc.Metadata, n_grams: int | None) -> gc.Metadata:
    """`md` plus the pool's most frequent word 2- and 3-grams that are not entries yet."""
    have = set(md.entries.to_pylist())
    grams = [g for g in common.pool_ngrams(common.english_pool()) if g not in have][:n_grams]
    return gc.Metadata(md.entries.to_pylist() + grams, padding=md.padding)


def worldwide_metadata(en_path: str) -> dict[str, gc.Metadata]:
    paths = {**{lang: common.DATA / rel for lang, rel in common.LANGUAGE_METADATA.items()}, "en": Path(en_path)}
    return {lang: gc.Metadata.load(path, "worldwide") for lang, path in paths.items()}


def make_case(name: str, args, english: list[str], md: gc.Metadata) -> Case:
    pools = f"English pools resampled with seed {args.seed}"
    if name == "sparse":
        return Case(name, pools, english, {None: md})
    if name == "dense":
        return Case(name, pools, english, {None: dense_metadata(md, args.dense_ngrams)})
    if name == "long":
        about = f"{pools}, joined {args.long_join} at a time by ' '"
        return Case(name, about, common.long_texts(english, args.long_join), {None: md})
    mix = common.parse_mix(args.mix)
    texts, langs = common.worldwide_texts(args.texts, mix, args.seed)
    shares = ", ".join(f"{lang} {share:.0%}" for lang, share in mix.items())
    about = f"per-language pools ({shares}) resampled with seed {args.seed}"
    return Case(name, about, texts, worldwide_metadata(args.metadata), langs)


def run_case(case: Case, args, n_cpus: int) -> dict:
    """Every engine on one case; their rows and whether all were exact."""
    n_bytes = sum(len(t.encode("utf-8")) for t in case.texts)
    n = len(case.texts)
    t_arrow, _, column = best_of(1, lambda: pa.array(case.texts, pa.large_string()))
    print(
        f"# {case.name}: {n:,} texts ({n_bytes / 1e6:.1f} MB UTF-8, {n_bytes / n:.1f} B/text), {case.about}; "
        f"list -> Arrow {t_arrow:.2f} s (not in gpu_curate's times)"
    )
    if case.langs is None:
        md = case.lists[None]
        t_build, _, automaton = best_of(1, lambda: Automaton.build(md))
        t_aho_build, _, aho = best_of(1, lambda: aho_automaton(md))
        duplicates = duplicate_ids(md)
        baseline = (metaclip_match, (case.texts,), (aho,))

        def engine(threads):
            return match_cpu(column, automaton, threads)

        entries = f"{len(md):,} entries ({md.padding} padding); gpu_curate {automaton}"
    else:
        mds = MetadataSet(case.lists)
        langs = pa.array(case.langs, pa.string())
        with fresh_automaton_cache():
            t_build, _, _ = best_of(1, lambda: [mds.automaton(lang) for lang in mds.lists])
        t_aho_build, _, built = best_of(
            1, lambda: {lang: aho_automaton(md, mds.bases[lang]) for lang, md in mds.lists.items()}
        )
        duplicates = {i: d for lang, md in mds.lists.items() for i, d in duplicate_ids(md, mds.bases[lang]).items()}
        baseline = (metaclip_match_langs, (case.texts, case.langs), (built,))

        def engine(threads):
            return mds.match(column, langs, "cpu", threads)[0]

        entries = ", ".join(f"{lang} {len(md):,}" for lang, md in mds.lists.items()) + " entries (worldwide padding)"
    print(f"#   {entries}; build: gpu_curate {t_build:.2f} s, pyahocorasick {t_aho_build:.2f} s")

    fn, rows_args, extra = baseline
    t_base, base_runs, base_sets = best_of(args.baseline_repeats, lambda: fn(*rows_args, *extra))
    ref_offsets, ref_ids = as_csr(base_sets, duplicates)
    del base_sets
    rows = [("MetaCLIP loop (pyahocorasick)", 1, t_base, base_runs, ref_offsets[-1], True)]
    if not args.no_pool and n_cpus > 1:
        t_pool, pool_runs, pool_sets = best_of(1, lambda: metaclip_pool(fn, rows_args, extra, n_cpus))
        pool_offsets, pool_ids = as_csr(pool_sets, duplicates)
        del pool_sets
        ok = np.array_equal(pool_offsets, ref_offsets) and np.array_equal(pool_ids, ref_ids)
        rows.append(("MetaCLIP loop, fork pool", n_cpus, t_pool, pool_runs, pool_offsets[-1], ok))
    for threads in sorted({1, n_cpus}):
        t, runs, res = best_of(args.repeats, lambda threads=threads: engine(threads))
        ok = np.array_equal(res.offsets, ref_offsets) and np.array_equal(res.entry_ids, ref_ids)
        rows.append(("gpu_curate CPU engine", threads, t, runs, res.offsets[-1], ok))
        del res
    return {
        "case": case.name,
        "about": case.about,
        "texts": n,
        "bytes": n_bytes,
        "entries": {str(lang): len(md) for lang, md in case.lists.items()},
        "pairs": int(ref_offsets[-1]),
        "list_to_arrow_s": t_arrow,
        "build_s": t_build,
        "aho_build_s": t_aho_build,
        "rows": [
            {
                "engine": name,
                "threads": threads,
                "best_s": t,
                "runs_s": runs,
                "texts_per_s": n / t,
                "mb_per_s": n_bytes / 1e6 / t,
                "pairs_per_text": int(pairs) / n,
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
    ap.add_argument("--metadata", default=str(common.DATA / "metadata" / "en_500k.json"), help="(worldwide: en's list)")
    ap.add_argument(
        "--cases", default="sparse,dense", help=f"comma-separated: {', '.join(CASES)} (default %(default)s)"
    )
    ap.add_argument("--dense-ngrams", type=int, help="n-grams added in the dense case (default: all of them)")
    ap.add_argument("--long-join", type=int, default=37, help="texts per long document (default 37: about 2 KB)")
    ap.add_argument("--mix", default="zh=0.8,en=0.15,nl=0.05", help="worldwide language shares (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="gpu_curate runs per setting; the best counts")
    ap.add_argument("--baseline-repeats", type=int, default=1, help="baseline runs; the best counts")
    ap.add_argument("--no-pool", action="store_true", help="skip the all-CPU baseline (fork pool)")
    ap.add_argument("--json", help="append the result as one JSON line to this file")
    args = ap.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or set(cases) - set(CASES):
        ap.error(f"--cases takes {', '.join(CASES)}, not {args.cases!r}")
    if args.long_join < 1:
        ap.error("--long-join must be at least 1")
    try:
        common.parse_mix(args.mix)
    except ValueError as e:
        ap.error(f"--mix: {e}")

    info = common.machine_info()
    common.print_machine(info)
    n_cpus = info["usable_cpus"]
    print(f"# --texts {args.texts:,}; metadata {Path(args.metadata).name}")

    english = common.english_texts(args.texts, args.seed) if set(cases) - {"worldwide"} else []
    md = gc.Metadata.load(args.metadata)
    results = []
    for name in cases:
        results.append(run_case(make_case(name, args, english, md), args, n_cpus))

    print()
    print(
        "| case | engine | threads | best s | texts/s | MB/s | B/text | pairs/text | vs baseline "
        "| per core vs baseline | exact |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for result in results:
        for r in result["rows"]:
            print(
                f"| {result['case']} | {r['engine']} | {r['threads']} | {r['best_s']:.3f} | {r['texts_per_s']:,.0f} | "
                f"{r['mb_per_s']:.1f} | {result['bytes'] / result['texts']:,.0f} | {r['pairs_per_text']:.2f} | "
                f"{r['ratio']:.1f}x | {r['ratio'] / r['threads']:.1f}x | {'yes' if r['exact'] else 'NO'} |"
            )
    exact = all(r["exact"] for result in results for r in result["rows"])
    common.append_json(
        args.json,
        {
            "benchmark": "match",
            "machine": info,
            "texts": args.texts,
            "seed": args.seed,
            "metadata": Path(args.metadata).name,
            "dense_ngrams": args.dense_ngrams,
            "long_join": args.long_join,
            "mix": common.parse_mix(args.mix),
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
