"""Metadata loading, validation errors that name the line, padding rules."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpu_curate as gc
from gpu_curate.metadata import CJK_LIKE_CHARS, CJK_LIKE_RANGES, is_cjk_like


def test_formats_agree(tmp_path):
    entries = ["dog", "hot dog", "dog", "日本"]
    (tmp_path / "m.json").write_text(json.dumps(entries), encoding="utf-8")
    (tmp_path / "m.txt").write_text("\r\n".join(entries) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"entry": entries}), tmp_path / "m.parquet")
    for name in ("m.json", "m.txt", "m.parquet"):
        md = gc.Metadata.load(tmp_path / name)
        assert md.entries.to_pylist() == entries, name
        assert md.fingerprint == gc.Metadata(entries).fingerprint


@pytest.mark.parametrize(
    "content,message",
    [
        (b"dog\n\ncat\n", "m.txt line 2: empty entry"),
        (b"dog\n  \t\ncat\n", "m.txt line 2: whitespace-only entry"),
        (b"dog\ncat\n\xff\xfe\n", "m.txt line 3: not valid UTF-8"),
    ],
)
def test_text_errors_name_the_line(tmp_path, content, message):
    path = tmp_path / "m.txt"
    path.write_bytes(content)
    with pytest.raises(gc.MetadataError, match=message):
        gc.Metadata.load(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ('["a", ""]', "entry 1: empty entry"),
        ('{"a": 1}', "expected a JSON list"),
        ('["a", 3]', "entry 1: expected a string"),
        ('["a", "\\ud800"]', "entry 1: not valid UTF-8"),
        ('["a",', "line 1: not valid JSON"),
    ],
)
def test_json_errors(tmp_path, text, message):
    path = tmp_path / "m.json"
    path.write_text(text)
    with pytest.raises(gc.MetadataError, match=message):
        gc.Metadata.load(path)


def test_missing_file_and_column(tmp_path):
    with pytest.raises(gc.MetadataError, match="not found"):
        gc.Metadata.load(tmp_path / "nope.json")
    pq.write_table(pa.table({"word": ["a"]}), tmp_path / "m.parquet")
    with pytest.raises(gc.MetadataError, match="no column 'entry'"):
        gc.Metadata.load(tmp_path / "m.parquet")
    with pytest.raises(gc.MetadataError, match="unknown padding"):
        gc.Metadata(["a"], padding="both")


def _boundaries():
    for lo, hi in CJK_LIKE_RANGES:
        yield from [(lo - 1, None), (lo, True), (hi, True), (hi + 1, None)]


@pytest.mark.parametrize("cp,inside", list(_boundaries()))
def test_cjk_ranges_at_every_boundary(cp, inside):
    expected = any(lo <= cp <= hi for lo, hi in CJK_LIKE_RANGES) or chr(cp) in CJK_LIKE_CHARS
    assert inside is None or expected == inside
    assert bool(is_cjk_like([cp])[0]) == expected
    md = gc.Metadata([f"{chr(cp)}x{chr(cp)}", "x"], padding="worldwide")
    pad = "" if expected else " "
    assert md.padded(0) == f"{pad}{chr(cp)}x{chr(cp)}{pad}"
    assert md.padded(1) == " x "


@given(st.lists(st.text(min_size=1, max_size=5).filter(str.strip), min_size=1, max_size=20))
def test_vectorized_padding_equals_per_entry_rule(entries):
    entries = [e for e in entries if not any(0xD800 <= ord(c) <= 0xDFFF for c in e)] or ["x"]
    md = gc.Metadata(entries, padding="worldwide")
    left, right = md.pad_flags()
    first = is_cjk_like([ord(e[0]) for e in entries])
    last = is_cjk_like([ord(e[-1]) for e in entries])
    assert np.array_equal(left, ~first) and np.array_equal(right, ~last)


def test_automaton_cache_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_CURATE_CACHE", str(tmp_path))
    md = gc.Metadata(["a b", "b", "中"], padding="worldwide")
    built = gc.Automaton.for_metadata(md)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    loaded = gc.Automaton.for_metadata(md)
    assert built.tables.keys() == loaded.tables.keys()
    for k in built.tables:
        assert np.array_equal(built.tables[k], loaded.tables[k]), k
    assert gc.match(["a b 中"], loaded).to_lists() == [[0, 1, 2]]
