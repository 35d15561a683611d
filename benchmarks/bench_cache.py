"""What verifying the automaton cache costs: loading a cached entry with and
without its checks, beside building the automaton anew.

    python benchmarks/bench_cache.py                 # en_500k.json, and 10M generated entries
    python benchmarks/bench_cache.py --sizes ""      # en_500k.json only

Per case (the metadata of bench_automaton.py): the tables are built once and
saved as a cache entry (automaton_cache.save), then, median of --repeat runs
in this process (the file is in the page cache after the first):
  np.load          reading the .npz alone (what loading cost before checks)
  checksum         SHA-256 of every table
  bounds           automaton_cache.check_tables
  verified load    automaton_cache.load: all three
  build            Automaton.build (once), what a rejected entry costs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> int:
    import gpu_curate as gc
    from gpu_curate import automaton_cache
    from gpu_curate.automaton import Automaton

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000000", help="generated sizes, comma-separated (may be empty)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", help="append the results as JSON lines to this file")
    args = ap.parse_args(argv)

    info = common.machine_info()
    common.print_machine(info)
    cases = [("en_500k.json", lambda: gc.Metadata.load(common.DATA / "metadata" / "en_500k.json"))]
    for size in (int(s) for s in args.sizes.split(",") if s):
        cases.append(
            (
                f"{size // 1_000_000}M generated",
                lambda size=size: gc.Metadata(common.generated_entries(size, args.seed), padding="worldwide"),
            )
        )
    print()
    print("| case | tables MiB | np.load s | checksum s | bounds s | verified load s | build s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for case, make in cases:
            md = make()
            start = time.perf_counter()
            automaton = Automaton.build(md)
            build = time.perf_counter() - start
            path = Path(tmp) / "entry.npz"
            automaton_cache.save(automaton.tables, path)

            def plain_load():
                with np.load(path, allow_pickle=False) as npz:
                    return {k: npz[k] for k in npz.files}

            tables = plain_load()
            tables.pop(automaton_cache.CHECKSUM)
            r = {
                "case": case,
                "entries": len(md),
                "tables_mib": automaton.nbytes / 2**20,
                "np_load_s": median_s(plain_load, args.repeat),
                "checksum_s": median_s(lambda: automaton_cache.checksum(tables), args.repeat),
                "bounds_s": median_s(lambda: automaton_cache.check_tables(tables, len(md)), args.repeat),
                "verified_load_s": median_s(lambda: automaton_cache.load(path, len(md)), args.repeat),
                "build_s": build,
            }
            assert automaton_cache.load(path, len(md)) is not None, "a fresh entry failed its checks"
            print(
                f"| {case} | {r['tables_mib']:.0f} | {r['np_load_s']:.3f} | {r['checksum_s']:.3f} | "
                f"{r['bounds_s']:.3f} | {r['verified_load_s']:.3f} | {r['build_s']:.2f} |"
            )
            common.append_json(args.json, {"benchmark": "cache", "machine": info, "seed": args.seed, **r})
    return 0


if __name__ == "__main__":
    sys.exit(main())
