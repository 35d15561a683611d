"""The automaton cache (gpu_curate/automaton_cache.py) never trusts a bad
entry: damaged files and tables that would send the walk outside an array
or around a loop forever (each written with a matching checksum, so that
only the bounds checks can catch it) are said once in the log and rebuilt;
what the builder makes passes. Part of the fault-injection suite (test_faults.py)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import gpu_curate as gc
from gpu_curate import automaton_cache
from gpu_curate.automaton import FORMAT_VERSION, Automaton, cache_dir

from conftest import shared
from faultlib import METADATA, cli, curate_args, same, visible, clean_run

T_A = 5


def _corruptions():
    """Ways to damage cached tables, each with a valid checksum written over
    it (but "flipped bit"), so that only the bounds checks can catch them."""

    def child_not_deeper(t):
        slots = t["tok_edge_slots"]
        used = np.flatnonzero(slots[:, 1] & 0xFFFFFFFF)[0]
        parent = slots[used, 0] >> np.uint64(32)
        slots[used, 1] = (slots[used, 1] & ~np.uint64(0x7FFFFFFF)) | parent  # a node that is its own child

    def table_full(t):
        slots = t["tok_edge_slots"]
        slots[:, 1] = np.where(slots[:, 1] & 0xFFFFFFFF == 0, slots[0, 1] | 1, slots[:, 1])  # no empty slot

    def record_loop(t):
        r = t["tok_out_lists"]
        r[1] = -2  # record 0's next record is itself

    def entry_out_of_range(t):
        slots = t["tok_edge_slots"]
        used = np.flatnonzero(slots[:, 1] & 0xFFFFFFFF)[0]
        slots[used, 1] = (slots[used, 1] & np.uint64(0xFFFFFFFF)) | (np.uint64(10**9) << np.uint64(32))

    def node_out_of_range(t):
        slots = t["tok_edge_slots"]
        used = np.flatnonzero(slots[:, 1] & 0xFFFFFFFF)[0]
        slots[used, 1] = (slots[used, 1] & ~np.uint64(0x7FFFFFFF)) | np.uint64(0x7FFFFFFE)

    def vocab_symbol(t):
        slots = t["vocab_slots"]
        used = np.flatnonzero(slots[:, 1] & 0xFFFFFFFF)[0]
        slots[used, 1] = (slots[used, 1] & ~np.uint64(0x7FFFFFFF)) | np.uint64(0x7FFFFFFE)

    def wrong_count(t):
        t["n_entries"] = np.array(int(t["n_entries"]) + 1, np.int64)

    def wrong_dtype(t):
        t["vocab_offsets"] = t["vocab_offsets"].astype(np.int32)

    return {
        "trie cycle": child_not_deeper,
        "no empty slot": table_full,
        "record chain loop": record_loop,
        "entry id out of range": entry_out_of_range,
        "node out of range": node_out_of_range,
        "vocabulary symbol out of range": vocab_symbol,
        "entry count": wrong_count,
        "dtype": wrong_dtype,
    }


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_CURATE_CACHE", str(tmp_path / "cache"))
    # "dog" twice: a node reporting two entries, so the token tables hold an output record
    md = gc.Metadata(["a dog", "dog", "hot dog", "dog house", "a", "house", "dog"] + [f"w{i}" for i in range(50)])
    path = cache_dir() / f"automaton-v{FORMAT_VERSION}-{md.fingerprint}.npz"
    fresh = Automaton.for_metadata(md)
    assert path.is_file()
    return md, path, fresh


def _reloaded_is_fresh(md, path, fresh, caplog):
    with caplog.at_level(logging.WARNING, logger="gpu_curate"):
        again = Automaton.for_metadata(md)
    assert [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()], "not said in the log"
    assert again.tables.keys() == fresh.tables.keys()
    assert all(np.array_equal(again.tables[k], fresh.tables[k]) for k in fresh.tables)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gpu_curate"):
        Automaton.for_metadata(md)  # the rebuilt entry is trusted again
    assert not caplog.records


@pytest.mark.parametrize("kind", sorted(_corruptions()))
def test_a_cache_entry_with_bad_tables_is_rebuilt(cache, caplog, kind):
    md, path, fresh = cache
    tables = {k: v.copy() for k, v in fresh.tables.items()}
    _corruptions()[kind](tables)
    with pytest.raises(automaton_cache.BadTables):
        automaton_cache.check_tables(tables, len(md))
    automaton_cache.save(tables, path)  # with a checksum that matches the bad tables
    _reloaded_is_fresh(md, path, fresh, caplog)


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "no checksum", "not a zip"])
def test_a_damaged_cache_file_is_rebuilt(cache, caplog, damage):
    md, path, fresh = cache
    data = bytearray(path.read_bytes())
    if damage == "flipped byte":  # inside a table's bytes (a zip header field np.load ignores would be harmless)
        import zipfile

        with zipfile.ZipFile(path) as z:
            info = max(z.infolist(), key=lambda i: i.file_size)
        header = 30 + len(info.filename.encode()) + len(info.extra)
        data[info.header_offset + header + info.file_size - 1] ^= 0x40
    elif damage == "truncated":
        data = data[: len(data) // 3]
    elif damage == "no checksum":
        with open(path, "wb") as f:
            np.savez(f, **fresh.tables)
        data = bytearray(path.read_bytes())
    else:
        data = bytearray(b"garbage" * 100)
    path.write_bytes(bytes(data))
    _reloaded_is_fresh(md, path, fresh, caplog)


@pytest.mark.parametrize("metadata", ["wordnet", "zh_wordfreq_100k", "worldwide"])
def test_fresh_tables_pass_the_checks(metadata):
    """The checks accept what the builder makes (else every run would rebuild)."""
    if metadata == "wordnet":
        md = gc.Metadata.load(METADATA)
    elif metadata == "zh_wordfreq_100k":  # real byte-automaton records and chains
        md = gc.Metadata.load(shared("metadata/zh_wordfreq_100k.txt"), padding="worldwide")
    else:
        md = gc.Metadata(["中文", "a b", "b", "x中", "中x", "東京 タワー", "ok"], padding="worldwide")
    automaton_cache.check_tables(Automaton.build(md).tables, len(md))


def test_a_run_on_a_poisoned_cache_neither_hangs_nor_differs(tmp_path, monkeypatch):
    """The issue's hang: every later run spun on a cached automaton with a
    failure-link cycle. Now the entry is rebuilt and the run is clean."""
    monkeypatch.setenv("GPU_CURATE_CACHE", str(tmp_path / "cache"))
    md = gc.Metadata.load(METADATA)
    fresh = Automaton.for_metadata(md)
    tables = {k: v.copy() for k, v in fresh.tables.items()}
    _corruptions()["trie cycle"](tables)
    automaton_cache.save(tables, cache_dir() / f"automaton-v{FORMAT_VERSION}-{md.fingerprint}.npz")
    res = cli(*curate_args(tmp_path / "out", T_A), timeout=120)
    assert res.returncode == 0, res.stderr
    assert "rebuilding it" in res.stderr and res.stderr.count("automaton cache") == 1
    assert same(visible(tmp_path / "out"), clean_run(tmp_path / "clean", T_A))
