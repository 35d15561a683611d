"""The datacard of a finished run: a short Markdown page saying what went in,
how it was balanced and what came out.

Every number is read from summary.json or run.json as written there; this
module only formats them (no count is computed a second time).
"""

from __future__ import annotations

import re

MAX_FILES = 30  # per-file rows: the largest files by rows in, then a count of the rest


def _n(x) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _code(text: str) -> str:
    """Text as a Markdown code span inside a table cell."""
    text = text.replace("|", "\\|").replace("\n", " ")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def _table(header: list[str], rows: list[list]) -> list[str]:
    """A Markdown table; columns of numbers are right-aligned."""
    numeric = [all(re.fullmatch(r"[\d,. %]+", str(row[k])) for row in rows) for k in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def head_tail_table(summary: dict) -> list[str]:
    """Entries, matches before and after balancing, for head and tail entries;
    then the most matched head entries."""
    s = summary
    rows = []
    for side, what in (("head", "count >= t"), ("tail", "count < t")):
        h = s["head_tail"][side]
        rows.append([f"{side} ({what})", _n(h["entries"]), _n(h["matches_before"]), _n(h["matches_after"])])
    rows.append(["all", _n(s["entries"]), _n(s["pairs_matched"]), _n(s["pairs_kept"])])
    lines = _table(["entries", "number", "matches before", "matches after"], rows)
    lines += [
        "",
        f"Head entries hold {_pct(s['head_share_of_matches']['before'])} of matches before balancing "
        f"and {_pct(s['head_share_of_matches']['after'])} after. "
        f"{_n(s['rows_kept_only_through_tail'])} kept rows ({_pct(s['rows_kept_only_through_tail_share'])}) "
        "were kept only through a tail entry (none of their head entries passed its draw).",
    ]
    if s["top_head_entries"]:
        lang = "lang" in s["top_head_entries"][0]
        top = [
            [e["entry_id"], _code(e["entry"]), *([e["lang"]] if lang else []), _n(e["count"]), _n(e["kept_count"])]
            for e in s["top_head_entries"]
        ]
        lines += ["", "Most matched head entries:", ""]
        lines += _table(["entry id", "entry", *(["lang"] if lang else []), "count", "kept count"], top)
    return lines


def datacard(summary: dict, run: dict, plots: list[str]) -> str:
    s, cfg = summary, run["config"]
    lines = [f"# Datacard: {cfg['out']}", "", "Curated by gpu_curate (MetaCLIP-style balancing).", "", "## Command", ""]
    lines += ["```", s["command"] or "(run through the Python API: no command line)", "```"]
    if s.get("curate_command") and s["curate_command"] != s["command"]:
        lines += ["", "Pass 1 (matching) was run by:", "", "```", s["curate_command"], "```"]

    lines += ["", "## Pool", ""]
    lines += [f"- inputs: {', '.join(f'`{x}`' for x in cfg['inputs'])}"]
    lines += [f"- text column `{cfg['text_column']}`, id column `{cfg['id_column']}`"]
    if cfg.get("lang_column"):
        lines += [f"- language column `{cfg['lang_column']}`"]
    if cfg.get("image_column"):
        lines += [f"- image column `{cfg['image_column']}` (one text per image)"]
    files = sorted(s["files"].items(), key=lambda kv: -kv[1]["rows_in"])
    rows = [[_code(name), _n(f["rows_in"]), _n(f["rows_matched"]), _n(f.get("rows_kept", 0))] for name, f in files]
    lines += [f"- {_n(len(files))} file{'s' if len(files) != 1 else ''}", ""] + _table(
        ["file", "rows in", "matched", "kept"], rows[:MAX_FILES]
    )
    if len(files) > MAX_FILES:
        lines += ["", f"and {_n(len(files) - MAX_FILES)} more files (summary.json lists every file)."]

    lines += ["", "## Metadata", ""]
    lines += [f"- list: `{cfg['metadata']}`"]
    lines += [f"- fingerprint: `{s['metadata_fingerprint']}`"]
    lines += [f"- entries: {_n(s['entries'])}, of which matched: {_n(s['entries_matched'])}"]
    lines += [f"- padding rule: {s['padding']}"]

    lines += ["", "## Balancing", ""]
    if s["thresholds"] is None:
        lines += [f"- t: {_n(s['t'])}"]
    else:
        lines += [f"- t_en: {_n(s['t_en'])}"]
        lines += ["- per-language t (each language's count at English's tail share of matches):", ""]
        th = [[lang, "none (keeps nothing)" if t is None else _n(t)] for lang, t in sorted(s["thresholds"].items())]
        lines += _table(["language", "t"], th) + [""]
    lines += [f"- seed: {s['seed']}", f"- entries over t: {_n(s['entries_over_t'])}"]

    lines += ["", "## Rows", ""]
    counts = [
        ("rows in", "rows_in"),
        ("rows with null text", "rows_null_text"),
        ("rows with invalid UTF-8", "rows_invalid_utf8"),
        ("rows with no metadata for their language", "rows_no_metadata_lang"),
        ("rows matched", "rows_matched"),
        ("rows left to another text of their image", "rows_same_image_dropped"),
        ("rows kept", "rows_kept"),
        ("rows kept only through a tail entry", "rows_kept_only_through_tail"),
    ]
    lines += _table(["", "rows"], [[label, _n(s[key])] for label, key in counts])

    lines += ["", "## Head and tail", ""] + head_tail_table(s)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", "## Versions", ""] + _table(["", "version"], [[k, f"`{v}`"] for k, v in s["versions"].items()])
    return "\n".join(lines) + "\n"
