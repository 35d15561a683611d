"""Calls of the CPU engine on one thread, for profilers (callgrind, perf) and A/B timings.

    python benchmarks/profile_match.py --case dense --texts 200000
    python benchmarks/profile_match.py --case worldwide --lang zh
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*::match(pybind11::dict*' \\
        --branch-sim=yes --cache-sim=yes python benchmarks/profile_match.py --repeats 1
    perf record -e cpu-clock -g python benchmarks/profile_match.py --repeats 5

Same data as bench_match.py (the English pools resampled to --texts with
--seed; sparse: --metadata, dense: plus the pool's 2- and 3-grams; long:
sparse on the texts joined --long-join at a time; worldwide: the rows of
bench_match's --mix whose language is --lang, against that language's list).
The automaton and the Arrow column are built first; then --repeats calls of
match_cpu, each timed in CPU time (steadier than wall time on a shared
machine), and the best is printed with pairs per text and a checksum of the
answers (equal checksums: equal answers, to compare two builds).
"""

from __future__ import annotations

import argparse
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
from bench_match import dense_metadata, worldwide_metadata  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=("sparse", "dense", "long", "worldwide"), default="sparse")
    ap.add_argument("--texts", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--metadata", default=str(common.DATA / "metadata" / "en_500k.json"))
    ap.add_argument("--long-join", type=int, default=37)
    ap.add_argument("--mix", default="zh=0.8,en=0.15,nl=0.05")
    ap.add_argument("--lang", default="zh", help="worldwide: the language whose rows are matched")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--per-row", action="store_true", help="the per-row walk a GPU thread runs, instead of batches")
    args = ap.parse_args(argv)

    if args.case == "worldwide":
        md = worldwide_metadata(args.metadata)[args.lang]
        texts, langs = common.worldwide_texts(args.texts, common.parse_mix(args.mix), args.seed)
        texts = [t for t, lang in zip(texts, langs) if lang == args.lang]
    else:
        md = gc.Metadata.load(args.metadata)
        md = dense_metadata(md, None) if args.case == "dense" else md
        texts = common.english_texts(args.texts, args.seed)
        texts = common.long_texts(texts, args.long_join) if args.case == "long" else texts
    automaton = Automaton.build(md)
    column = pa.array(texts, pa.large_string())
    best = float("inf")
    for _ in range(args.repeats):
        start = time.process_time()
        res = match_cpu(column, automaton, threads=1, per_row=args.per_row)
        best = min(best, time.process_time() - start)
    checksum = int(res.offsets[-1]), int(res.entry_ids.astype(np.int64).sum())
    print(
        f"{args.case}: {len(texts) / best:,.0f} texts/s (best of {args.repeats}, CPU time), "
        f"{res.offsets[-1] / len(texts):.2f} pairs/text, checksum {checksum}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
