"""The run summary (docs/semantics.md section 8): stats summed over partitions, per file
and per language, and the lines printed at the end of a run."""

from __future__ import annotations

import platform
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import __version__
from .gpu_backend import device_label
from .balance_stats import balance_statistics


@dataclass
class Totals:
    """Stats summed over partitions, overall, per file and per language."""

    overall: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    languages: dict = field(default_factory=dict)

    def add(self, stats: dict) -> None:
        for key, value in stats.items():
            if key.startswith(("rows_", "pairs_")):
                self.overall[key] = self.overall.get(key, 0) + value
                per_file = self.files.setdefault(stats["file"], {})
                per_file[key] = per_file.get(key, 0) + value
        for lang, counts in stats.get("languages", {}).items():
            mine = self.languages.setdefault(lang, {})
            for key, value in counts.items():
                mine[key] = mine.get(key, 0) + value


# The summary lists at most this many skipped pool paths (all are counted, by reason).
SKIPPED_LISTED = 1000


def build_summary(
    cfg, pass1: Totals, pass2: Totals, bal, timings, counts_table: pa.Table, run: dict, skipped=()
) -> dict:
    """`bal`: the run's balance.Balancing; `counts_table`: entry_counts with
    kept_count; `run`: run.json (padding, the curate command); `skipped`:
    the pool paths that discovery skipped."""
    thresholds = bal.thresholds
    overall = {**pass1.overall, **pass2.overall}
    files = {name: {**stats, **pass2.files.get(name, {})} for name, stats in pass1.files.items()}
    for stats in files.values():
        stats["rows_dropped"] = stats["rows_in"] - stats.get("rows_kept", 0)
    zero = {"rows_in": 0, "rows_matched": 0, "rows_kept": 0}  # every language has every key, kept or not
    languages = {lang: {**zero, **stats, **pass2.languages.get(lang, {})} for lang, stats in pass1.languages.items()}
    if thresholds is not None:
        thresholds = {lang: None if t is None else float(t) for lang, t in thresholds.items()}
        for lang in sorted(set(thresholds) | set(languages)):
            languages.setdefault(lang, dict(zero))["t"] = thresholds.get(lang)
    total_s = sum(timings.values())
    return {
        **{
            k: overall.get(k, 0)
            for k in (
                "rows_in",
                "rows_null_text",
                "rows_invalid_utf8",
                "rows_no_metadata_lang",
                "rows_matched",
                "rows_same_image_dropped",
                "rows_kept",
                "rows_kept_invalid_utf8",
                "rows_kept_only_through_tail",
                "pairs_matched",
            )
        },
        **balance_statistics(
            counts_table, bal.head, overall.get("rows_kept", 0), overall.get("rows_kept_only_through_tail", 0)
        ),
        "t": cfg.t if thresholds is None else None,
        "t_en": cfg.t_en if thresholds is not None else None,
        "thresholds": thresholds,
        "seed": cfg.seed,
        "padding": run["pass1"]["padding"],
        "metadata_fingerprint": run["pass1"]["metadata"],
        "command": cfg.command,
        "curate_command": run.get("curate_command"),
        "device": device_label(cfg.device),
        "gpu_reader": cfg.gpu_reader,
        "entries": counts_table.num_rows,
        "entries_matched": int(pc.sum(pc.greater(counts_table.column("count"), 0)).as_py() or 0),
        "timings": {
            **timings,
            # not over a resumed run: its rows were partly matched by an earlier run
            "rows_per_s": overall.get("rows_in", 0) / total_s
            if "pass1_s" in timings and total_s and not timings.get("pass1_partitions_done_before")
            else None,
        },
        "files": files,
        "files_empty": sorted(name for name, stats in files.items() if stats["rows_in"] == 0),
        "files_skipped": len(skipped),
        "skipped_by_reason": dict(Counter(s["reason"] for s in skipped)),
        "skipped": list(skipped[:SKIPPED_LISTED]),
        "languages": languages,
        "versions": _versions(),
    }


def percent(part: int, whole: int) -> str:
    """part/whole as a percentage with one decimal that never rounds a
    partial share to 100.0% or a non-zero one to 0.0%."""
    text = f"{100 * part / whole:.1f}%"
    if part != whole and text == "100.0%":
        return ">99.9%"
    if part != 0 and text == "0.0%":
        return "<0.1%"
    return text


def format_summary(s: dict, timings: bool = True) -> str:
    """The lines printed at the end of a run; `timings` False for a run
    that did nothing now (its timings belong to the run that did)."""

    def share(k):
        return f"{s[k]:,} ({percent(s[k], s['rows_in'])})" if s["rows_in"] else "0"

    lines = [
        f"rows in       {s['rows_in']:,}   (null text {s['rows_null_text']:,}, invalid UTF-8 {s['rows_invalid_utf8']:,}, no metadata for language {s['rows_no_metadata_lang']:,})",
        f"rows matched  {share('rows_matched')}   pairs {s['pairs_matched']:,}, entries hit {s['entries_matched']:,} of {s['entries']:,}",
        *(
            [f"same image    {s['rows_same_image_dropped']:,} matched rows left to another text of their image"]
            if s["rows_same_image_dropped"]
            else []
        ),
        f"rows kept     {share('rows_kept')}   "
        + (f"t={s['t']:g}" if s["t"] is not None else f"t_en={s['t_en']:g}")
        + f", seed={s['seed']}",
        f"head entries  {s['entries_over_t']:,} with count >= t hold "
        f"{100 * s['head_share_of_matches']['before']:.1f}% of matches before, "
        f"{100 * s['head_share_of_matches']['after']:.1f}% after; "
        f"{s['rows_kept_only_through_tail']:,} kept rows kept only through a tail entry",
    ]
    if s.get("files_empty"):
        lines.append(f"empty files   {len(s['files_empty']):,} (0 rows; listed in summary.json)")
    if s.get("files_skipped"):
        reasons = "; ".join(f"{reason} ({n:,})" for reason, n in s["skipped_by_reason"].items())
        lines.append(f"skipped       {s['files_skipped']:,} paths: {reasons}; listed in summary.json")
    times = s["timings"]
    if timings and "pass1_s" in times:
        line = f"time          pass 1 {times['pass1_s']:.1f} s, "
        if "image_selection_s" in times:
            line += f"one text per image {times['image_selection_s']:.1f} s, "
        line += f"pass 2 {times['pass2_s']:.1f} s"
        if times.get("rows_per_s"):
            line += f", {times['rows_per_s']:,.0f} rows/s"
        line += f" on {s['device']}"
        if times.get("pass1_partitions_done_before"):
            line += f" (resumed: {times['pass1_partitions_done_before']:,} partitions were matched by an earlier run)"
        lines.append(line)
    return "\n".join(lines)


def _versions() -> dict:
    import dask
    import distributed

    return {
        "gpu_curate": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "platform": platform.platform(),
    }
