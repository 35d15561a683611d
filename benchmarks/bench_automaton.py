"""Automaton build time and peak memory, from real and generated metadata.

    python benchmarks/bench_automaton.py                  # en_500k.json, 10M and 30M generated entries
    python benchmarks/bench_automaton.py --sizes 10000000 --json results.jsonl

Cases:
  * en_500k.json: ../shared/data/metadata/en_500k.json, MetaCLIP 1 padding;
  * N generated: N distinct entries (benchmarks/common.generated_entries,
    --seed): the 500k real entries, then English/Dutch 1-4 word combinations
    and Chinese 2-3 word compounds drawn from the real word lists, built
    with the worldwide padding rule (the Chinese ones go to the byte automaton).

Each case runs in a fresh process, so that its peak RSS (VmHWM) is its own: the entries are generated once into an Arrow file (not timed), the
child loads them, builds Metadata (validation, padding flags) and then
Automaton.build, each timed. A size whose estimated peak exceeds the
memory available is skipped, and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
from pyarrow import feather

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# Peak RSS per million entries, measured on 10M (0.52 GiB), plus margin: the estimate
# that decides whether a size is attempted.
GB_PER_MILLION = 0.6


def rss_gib(field: str = "VmRSS") -> float:
    """This process's resident set (VmRSS) or its peak so far (VmHWM), in GiB.
    (Not getrusage: Linux carries ru_maxrss over from the parent across exec.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("inf")


def run_one(case: str, entries_file: str | None) -> dict:
    """In the child: build one case and measure it."""
    import gpu_curate as gc
    from gpu_curate.automaton import Automaton

    if entries_file is None:
        start = time.perf_counter()
        md = gc.Metadata.load(common.DATA / "metadata" / "en_500k.json")
    else:
        entries = feather.read_table(entries_file).column(0).combine_chunks()
        start = time.perf_counter()
        md = gc.Metadata(entries, padding="worldwide", source=case)
    t_metadata = time.perf_counter() - start
    before = rss_gib()
    start = time.perf_counter()
    automaton = Automaton.build(md)
    t_build = time.perf_counter() - start
    peak = rss_gib("VmHWM")
    return {
        "case": case,
        "entries": len(md),
        "padding": "metaclip1" if entries_file is None else "worldwide",
        "metadata_s": t_metadata,
        "build_s": t_build,
        "rss_before_build_gib": before,
        "peak_rss_gib": peak,
        "tables_mib": automaton.nbytes / 2**20,
        "automaton": repr(automaton),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000000,30000000", help="generated sizes, comma-separated")
    ap.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    ap.add_argument("--cache", default=os.environ.get("TMPDIR", "/tmp"), help="where generated entries are kept")
    ap.add_argument("--json", help="append the results as JSON lines to this file")
    ap.add_argument("--one", nargs=2, metavar=("CASE", "ENTRIES"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.one:  # child process
        print(json.dumps(run_one(args.one[0], None if args.one[1] == "-" else args.one[1])))
        return 0

    info = common.machine_info()
    common.print_machine(info)
    cases = [("en_500k.json", "-")]
    for size in (int(s) for s in args.sizes.split(",") if s):
        need = GB_PER_MILLION * size / 1e6
        if need > 0.9 * available_gib():
            print(f"# skipped {size:,} generated: needs about {need:.0f} GiB, {available_gib():.0f} GiB available")
            continue
        path = Path(args.cache) / f"gpu_curate_bench_entries_{size}_seed{args.seed}.arrow"
        if not path.is_file():
            start = time.perf_counter()
            table = pa.table({"entry": common.generated_entries(size, args.seed)})
            feather.write_feather(table, str(path) + ".tmp", compression="uncompressed")
            os.replace(str(path) + ".tmp", path)
            print(f"# generated {size:,} entries (seed {args.seed}) in {time.perf_counter() - start:.1f} s -> {path}")
        cases.append((f"{size // 1_000_000}M generated", str(path)))

    print()
    print(
        "| case | entries | padding | Metadata() s | Automaton.build s | peak RSS GiB | RSS before build GiB"
        " | tables MiB |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    failed = False
    for case, entries in cases:
        cmd = [sys.executable, __file__, "--one", case, entries]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            print(f"| {case} | failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode} |")
            failed = True
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"| {case} | {r['entries']:,} | {r['padding']} | {r['metadata_s']:.2f} | {r['build_s']:.2f} | "
            f"{r['peak_rss_gib']:.2f} | {r['rss_before_build_gib']:.2f} | {r['tables_mib']:.0f} |"
        )
        common.append_json(args.json, {"benchmark": "automaton", "machine": info, "seed": args.seed, **r})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
