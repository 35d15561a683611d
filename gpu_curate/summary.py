"""The run summary (SPEC section 8): stats summed over partitions, per file
and per language, and the lines printed at the end of a run."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import __version__
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


def build_summary(cfg, pass1: Totals, pass2: Totals, bal, timings, counts_table: pa.Table, run: dict) -> dict:
    """`bal`: the run's balance.Balancing; `counts_table`: entry_counts with
    kept_count; `run`: run.json (padding, the curate command)."""
    thresholds = bal.thresholds
    overall = {**pass1.overall, **pass2.overall}
    files = {name: {**stats, **pass2.files.get(name, {})} for name, stats in pass1.files.items()}
    for stats in files.values():
        stats["rows_dropped"] = stats["rows_in"] - stats.get("rows_kept", 0)
    languages = {lang: {**stats, **pass2.languages.get(lang, {})} for lang, stats in pass1.languages.items()}
    if thresholds is not None:
        for lang in sorted(set(thresholds) | set(languages)):
            languages.setdefault(lang, {})["t"] = thresholds.get(lang)
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
        "device": cfg.device,
        "entries": counts_table.num_rows,
        "entries_matched": int(pc.sum(pc.greater(counts_table.column("count"), 0)).as_py() or 0),
        "timings": {
            **timings,
            "rows_per_s": overall.get("rows_in", 0) / total_s if "pass1_s" in timings and total_s else None,
        },
        "files": files,
        "languages": languages,
        "versions": _versions(),
    }


def format_summary(s: dict) -> str:
    def share(k):
        return f"{s[k]:,} ({100 * s[k] / s['rows_in']:.1f}%)" if s["rows_in"] else "0"

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
    if s["timings"].get("rows_per_s"):
        lines.append(
            f"time          pass 1 {s['timings']['pass1_s']:.1f} s, pass 2 {s['timings']['pass2_s']:.1f} s, {s['timings']['rows_per_s']:,.0f} rows/s"
        )
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
