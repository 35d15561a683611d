"""`gpu-curate report`: the files exist, the PNGs are real images, and the
datacard's numbers are summary.json's."""

import importlib.util
import json
import re
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpu_curate as gc
from gpu_curate.pipeline import CurateConfig, curate
from gpu_curate.report import write_report

pytest.importorskip("matplotlib", reason="the [report] extra (matplotlib) is not installed")


def png_size(path) -> tuple[int, int]:
    """(width, height) of a PNG, read back with matplotlib's decoder."""
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = matplotlib.image.imread(path).shape[:2]
    return width, height


def card_value(card: str, label: str) -> str:
    """The value cell of a `| label | value |` row, or of a `- label: value` line."""
    m = re.search(rf"^\| {re.escape(label)} \| ([^|]+) \|$", card, re.M) or re.search(
        rf"^- {re.escape(label)}: (.+)$", card, re.M
    )
    assert m, label
    return m.group(1).strip()


def number(text: str) -> float:
    return float(text.replace(",", ""))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "demo"
    res = subprocess.run(
        [sys.executable, "-m", "gpu_curate", "demo", "--out", str(out)], capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr
    return out, res.stdout


def test_demo_ends_with_the_report(demo):
    out, stdout = demo
    assert f"{out / 'report'}/datacard.md" in stdout
    for name in ("rank_frequency.png", "cumulative_share.png", "datacard.md", "head_tail.md"):
        assert (out / "report" / name).stat().st_size > 0, name
    assert not (out / "report" / "languages.png").exists()  # one list: no languages chart
    width, height = png_size(out / "report" / "rank_frequency.png")
    assert width >= 800 and height >= 500


def test_datacard_numbers_are_the_summary(demo):
    out, _ = demo
    s = json.loads((out / "summary.json").read_text())
    card = (out / "report" / "datacard.md").read_text()
    for label, key in (
        ("rows in", "rows_in"),
        ("rows matched", "rows_matched"),
        ("rows kept", "rows_kept"),
        ("rows kept only through a tail entry", "rows_kept_only_through_tail"),
        ("t", "t"),
        ("seed", "seed"),
        ("entries over t", "entries_over_t"),
    ):
        assert number(card_value(card, label)) == s[key], label
    assert card_value(card, "fingerprint") == f"`{s['metadata_fingerprint']}`"
    assert card_value(card, "padding rule") == s["padding"]
    assert f"entries: {s['entries']:,}, of which matched: {s['entries_matched']:,}" in card
    assert s["command"] == f"gpu-curate demo --out {out}" and f"```\n{s['command']}\n```" in card
    head = s["head_tail"]["head"]
    row = f"| head (count >= t) | {head['entries']:,} | {head['matches_before']:,} | {head['matches_after']:,} |"
    assert row in card and row in (out / "report" / "head_tail.md").read_text()
    top = s["top_head_entries"][0]
    assert f"| {top['entry_id']} | `{top['entry']}` | {top['count']:,} | {top['kept_count']:,} |" in card
    for key, version in s["versions"].items():
        assert f"| {key} | `{version}` |" in card


def test_worldwide_report(tmp_path):
    md = tmp_path / "md.parquet"
    pq.write_table(pa.table({"lang": ["en", "en", "zh", "zh"], "entry": ["dog", "cat", "狗", "猫"]}), md)
    texts = ["a dog"] * 40 + ["a cat"] * 5 + ["狗"] * 30 + ["猫"] * 3 + ["un chien"] * 4
    langs = ["en"] * 45 + ["zh"] * 33 + ["fr"] * 4
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": texts, "lang": langs}), pool)
    out = tmp_path / "o"
    cfg = CurateConfig(inputs=(str(pool),), metadata=str(md), out=str(out), lang_column="lang", t_en=10)
    s = curate(cfg, progress=False)
    folder = write_report(out)
    for name in ("rank_frequency.png", "cumulative_share.png", "languages.png"):
        width, height = png_size(folder / name)
        assert width >= 800 and height >= 400, name
    card = (folder / "datacard.md").read_text()
    assert number(card_value(card, "t_en")) == s["t_en"]
    for lang, t in s["thresholds"].items():
        assert f"| {lang} | {t:g} |" in card
    assert "| `dog` | en |" in card  # top head entries carry their language
    assert "(run through the Python API: no command line)" in card


def test_report_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.raises(gc.CurateError, match=r"pip install 'gpu_curate\[report\]'"):
        write_report(tmp_path)


def test_report_of_an_unfinished_run_is_one_line(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "gpu_curate", "report", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no summary.json" in res.stderr
