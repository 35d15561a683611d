"""`gpu-curate report OUT`: what balancing did, as pictures and a datacard.

Writes OUT/report/ (URL/report/ for a run published to object storage):

    rank_frequency.png    rows per entry by entry rank, log-log, before and
                          after balancing, t marked (worldwide: one panel per
                          language, the most matched first)
    cumulative_share.png  share of all matches held by the top-k entries,
                          before and after
    languages.png         worldwide: rows in / matched / kept per language
    head_tail.md          head and tail entries, matches before and after
    datacard.md           inputs, metadata, parameters, outputs, versions, command

matplotlib is an optional extra (`pip install 'gpu_curate[report]'`), drawn
through its object API on the Agg canvas: no display and no pyplot state.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .datacard import datacard, head_tail_table
from .fs import quote_path
from .errors import InputError, MissingExtraError
from .outdir import OutDir
from .publish import RUN, open_store
from .storage import read_json, write_atomic

MAX_LANGUAGE_PANELS = 6
MAX_LANGUAGE_BARS = 20
POINTS = 4000  # log-spaced ranks drawn per curve: a 500k-entry curve looks the same and draws in a blink
BEFORE, AFTER, T_COLOR = "#1f77b4", "#d62728", "#444444"


def write_report(out: str | Path) -> Path | str:
    """Write OUT/report/ from a finished run (summary.json, run.json,
    entry_counts.parquet); returns the folder. OUT may be a URL that a run
    was published to (publish.py): the visible generation is read from the
    store and the report is uploaded to URL/report/."""
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingExtraError("gpu-curate report needs matplotlib: pip install 'gpu_curate[report]'")
    local, store = open_store(out)
    if store is not None:
        return _report_on_store(store)
    lay = OutDir(local)
    if not lay.summary.exists():
        raise InputError(f"{lay.out}: no summary.json here (the run has not finished)")
    folder = lay.out / "report"
    folder.mkdir(exist_ok=True)
    _render(read_json(lay.summary), read_json(lay.run), pq.read_table(lay.counts), lay.counts, folder)
    return folder


def _report_on_store(store) -> str:
    """The report of the run published at `store`: drawn in a temporary folder, then uploaded."""
    current = store.current()
    summary, run = store.read_json(current["summary"]), store.read_json(RUN)
    counts = store.ask(pq.read_table, store.path(current["entry_counts"]), filesystem=store.fs)
    if summary is None or run is None or counts is None:
        raise InputError(f"{quote_path(store.url)}: current.json names a generation that is not all there")
    with tempfile.TemporaryDirectory() as tmp:
        _render(summary, run, counts, store.url_of(current["entry_counts"]), Path(tmp))
        for path in sorted(Path(tmp).iterdir()):
            store.ask(store.put, path, f"report/{path.name}")
    return store.url_of("report")


def _render(summary: dict, run: dict, counts, counts_name, folder: Path) -> None:
    if "kept_count" not in counts.column_names:
        raise InputError(f"{counts_name}: no kept_count column (rerun `gpu-curate balance` on the run)")
    plots = ["rank_frequency.png", "cumulative_share.png"]
    _save(_rank_frequency(counts, summary), folder / plots[0])
    _save(_cumulative_share(counts, summary), folder / plots[1])
    if summary["thresholds"] is not None and summary["languages"]:
        plots.append("languages.png")
        _save(_languages(summary), folder / plots[-1])
    _write_text(folder / "head_tail.md", "\n".join(["# Head and tail entries", "", *head_tail_table(summary)]) + "\n")
    _write_text(folder / "datacard.md", datacard(summary, run, plots))


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _save(fig, path: Path) -> None:
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"))


def _figure(n_panels: int = 1):
    from matplotlib.figure import Figure

    cols = min(n_panels, 3)
    rows = -(-n_panels // cols)
    size = (8.5, 5.4) if n_panels == 1 else (5.2 * cols, 4.2 * rows + 0.5)
    fig = Figure(figsize=size, dpi=120, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _ranks(n: int) -> np.ndarray:
    """Indices 0..n-1 to draw: all of the first ones, log-spaced after."""
    return np.unique(np.geomspace(1, n, min(n, POINTS)).astype(np.int64) - 1) if n else np.zeros(0, np.int64)


def _panels(counts, summary) -> list[tuple[str, np.ndarray, np.ndarray, float | None]]:
    """(title, count, kept_count, t) per panel: the whole list, or the most matched languages."""
    count = counts.column("count").to_numpy()
    kept = counts.column("kept_count").to_numpy()
    if summary["thresholds"] is None:
        return [("all entries", count, kept, summary["t"])]
    langs = counts.column("lang").to_numpy(zero_copy_only=False)
    order = sorted(summary["thresholds"], key=lambda lang: -int(count[langs == lang].sum()))
    shown = [lang for lang in order if count[langs == lang].sum() > 0][:MAX_LANGUAGE_PANELS]
    return [(lang, count[langs == lang], kept[langs == lang], summary["thresholds"][lang]) for lang in shown]


def _rank_frequency(counts, summary):
    panels = _panels(counts, summary)
    fig, axes = _figure(len(panels))
    for ax, (title, count, kept, t) in zip(axes, panels):
        order = np.argsort(-count.astype(np.float64), kind="stable")
        order = order[count[order] > 0]
        x = _ranks(len(order))
        before, after = count[order][x], kept[order][x]
        ax.loglog(x + 1, before, color=BEFORE, lw=2, label="before balancing (count)")
        shown = after > 0  # log axes: an entry that lost all its rows has no point
        ax.plot(x[shown] + 1, after[shown], ".", color=AFTER, ms=3, label="after (kept count, same entry)")
        if t is not None:
            ax.axhline(t, color=T_COLOR, ls="--", lw=1)
            ax.annotate(f"t = {t:g}", (1, t), xytext=(2, 3), textcoords="offset points", fontsize=9)
        if summary["thresholds"] is not None:
            ax.set_title(f"language {title}")
        ax.set_xlabel("entry rank (1 = most matched before balancing)")
        ax.set_ylabel("rows matching the entry")
        ax.grid(True, which="major", alpha=0.3)
    axes[0].legend(loc="lower left", fontsize=8)
    n_lang = len(summary["thresholds"] or {})
    more = f" (the {len(panels)} most matched of {n_lang} languages)" if n_lang > len(panels) else ""
    share = summary["head_share_of_matches"]
    fig.suptitle(
        "Rows per metadata entry, before and after balancing"
        + more
        + f"\n{summary['entries_over_t']:,} head entries (count >= {'t' if n_lang == 0 else 'its language' + chr(39) + 's t'}) hold {100 * share['before']:.1f} % of matches"
        + f" before, {100 * share['after']:.1f} % after"
    )
    return fig


def _cumulative_share(counts, summary):
    fig, (ax,) = _figure(1)
    for column, color, label in (("count", BEFORE, "before balancing"), ("kept_count", AFTER, "after balancing")):
        c = np.sort(counts.column(column).to_numpy())[::-1]
        c = c[c > 0]
        if not len(c):
            continue
        share = np.cumsum(c, dtype=np.float64) / c.sum(dtype=np.float64)
        x = _ranks(len(c))
        ax.semilogx(x + 1, 100 * share[x], color=color, lw=2, label=f"{label} ({len(c):,} entries with rows)")
    head = summary["entries_over_t"]
    if head:
        ax.axvline(head, color=T_COLOR, ls="--", lw=1)
        ax.annotate(
            f"{head:,} head entries (count >= t)",
            (head, 2),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=9,
        )
    ax.set_ylim(0, 100)
    ax.set_xlabel("top k entries (each curve ranked by its own counts)")
    ax.set_ylabel("share of all matches (%)")
    ax.set_title("Share of all matches held by the k most matched entries")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return fig


def _languages(summary):
    langs = sorted(summary["languages"].items(), key=lambda kv: -kv[1].get("rows_in", 0))[:MAX_LANGUAGE_BARS]
    fig, (ax,) = _figure(1)
    x = np.arange(len(langs))
    for k, (key, label, color) in enumerate(
        (("rows_in", "rows in", "#999999"), ("rows_matched", "matched", BEFORE), ("rows_kept", "kept", AFTER))
    ):
        values = [stats.get(key, 0) for _, stats in langs]
        bars = ax.bar(x + (k - 1) * 0.27, values, width=0.27, color=color, label=label)
        if key == "rows_kept":  # log bars hide small differences: say the share kept
            shares = [f"{100 * v / s['rows_in']:.0f} %" if s.get("rows_in") else "" for v, (_, s) in zip(values, langs)]
            ax.bar_label(bars, shares, fontsize=8, padding=2)
    ax.set_yscale("log")
    ax.set_xticks(x, [f"{lang}\nt={_t(stats.get('t'))}" for lang, stats in langs], fontsize=8)
    ax.set_ylabel("rows (log scale); kept bars: share of rows in")
    n = len(summary["languages"])
    ax.set_title("Rows per language" + (f" (the {len(langs)} largest of {n})" if n > len(langs) else ""))
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", which="major", alpha=0.3)
    return fig


def _t(t) -> str:
    return "none" if t is None else f"{t:g}"
