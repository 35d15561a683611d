"""What balancing did: kept counts per entry, rows kept only through a tail
entry and the summary's head/tail numbers, each against a direct count."""

import json
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_pipeline import T, curate_command, curate_images, image_pool, make_pool, run

from gpu_curate import _core
from gpu_curate.balance import uid_keys
from gpu_curate.pipeline import balance


def entry_counts(out):
    return pq.read_table(out / "entry_counts.parquet")


def kept_rows(out):
    return pq.read_table(out / "kept")


def direct_kept_counts(out, n_entries):
    """Rows of kept/ per entry, from their matched_entry_ids (--keep-matched-ids)."""
    ids = kept_rows(out).column("matched_entry_ids").combine_chunks().flatten().to_numpy()
    return np.bincount(ids, minlength=n_entries).astype(np.uint64)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("stats")
    out = base / "out"
    summary = run(make_pool(base / "pool", n_files=2), out, partition_rows=700, keep_matched_ids=True)
    return out, summary


def test_kept_count_is_the_kept_rows_per_entry(demo_run):
    out, summary = demo_run
    table = entry_counts(out)
    assert table.column_names[-2:] == ["count", "kept_count"]
    kept = table.column("kept_count").to_numpy()
    assert np.array_equal(kept, direct_kept_counts(out, table.num_rows))
    assert 0 < kept.sum() < table.column("count").to_numpy().sum()
    assert summary["pairs_kept"] == int(kept.sum())


def test_kept_count_follows_a_rebalance(tmp_path):
    out = tmp_path / "out"
    run(make_pool(tmp_path / "pool"), out, partition_rows=1000, keep_matched_ids=True)
    before = entry_counts(out).column("kept_count").to_numpy()
    balance(out, t=2, seed=3, progress=False)
    table = entry_counts(out)
    assert table.column_names.count("kept_count") == 1
    after = table.column("kept_count").to_numpy()
    assert np.array_equal(after, direct_kept_counts(out, table.num_rows)) and not np.array_equal(after, before)


def test_kept_count_with_one_text_per_image(tmp_path):
    summary = curate_images(tmp_path, "out", image_pool(tmp_path / "pool.parquet"), t=100, seed=1)
    table = entry_counts(tmp_path / "out")
    texts = kept_rows(tmp_path / "out").column("text").to_pylist()
    expected = [texts.count(f"a {word}") for word in table.column("entry").to_pylist()]
    assert table.column("kept_count").to_pylist() == expected and summary["rows_same_image_dropped"] > 0


def test_rows_kept_only_through_tail_by_their_draws(demo_run):
    """A kept row counts when none of its head entries passed its draw u(seed, uid, i) < p[i]."""
    out, summary = demo_run
    count = entry_counts(out).column("count").to_numpy().astype(np.float64)
    p = np.where(count < T, 1.0, T / np.maximum(count, 1))
    head = count >= T
    kept = kept_rows(out)
    keys = uid_keys(kept.column("uid").combine_chunks())
    only_tail = 0
    for key, ids in zip(keys, kept.column("matched_entry_ids").to_pylist()):
        heads = np.array([i for i in ids if head[i]], np.int32)
        u = _core.uniforms(np.uint64(7), np.full(len(heads), key, np.uint64), heads)
        only_tail += not np.any(u < p[heads])
    assert 0 < only_tail < kept.num_rows
    assert summary["rows_kept_only_through_tail"] == only_tail
    assert summary["rows_kept_only_through_tail_share"] == only_tail / summary["rows_kept"]
    per_file = sum(f["rows_kept_only_through_tail"] for f in summary["files"].values())
    assert per_file == only_tail


def test_head_and_tail_numbers(demo_run):
    out, summary = demo_run
    table = entry_counts(out).to_pandas()
    head = table[table["count"] >= T]
    assert summary["entries_over_t"] == len(head) > 0
    sides = summary["head_tail"]
    assert sides["head"]["matches_before"] == head["count"].sum()
    assert sides["head"]["matches_after"] == head["kept_count"].sum()
    assert sides["tail"]["entries"] == len(table) - len(head)
    assert sides["tail"]["matches_before"] + sides["head"]["matches_before"] == summary["pairs_matched"]
    shares = summary["head_share_of_matches"]
    assert shares["before"] == head["count"].sum() / table["count"].sum()
    assert shares["after"] == head["kept_count"].sum() / table["kept_count"].sum()
    top = head.sort_values(["count", "entry_id"], ascending=[False, True]).head(20)
    assert summary["top_head_entries"] == top[["count", "entry", "entry_id", "kept_count"]].to_dict("records")


def test_cli_records_its_command_line(tmp_path):
    pool, out = make_pool(tmp_path / "pool"), tmp_path / "out"
    cmd = curate_command(pool, out, "--in-process", "--quiet", "--columns", "TEXT,URL")
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    expected = " ".join(["gpu-curate", *cmd[3:]])  # every argument here is shell-safe
    assert json.loads((out / "summary.json").read_text())["command"] == expected
    res = subprocess.run(cmd[:3] + ["balance", str(out), "--t", "3", "--in-process", "--quiet"], capture_output=True)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"] == f"gpu-curate balance {out} --t 3 --in-process --quiet"
    assert summary["curate_command"] == expected


def test_worldwide_head_uses_each_language_threshold(tmp_path):
    from gpu_curate.pipeline import CurateConfig, curate

    md = tmp_path / "md.parquet"
    pq.write_table(pa.table({"lang": ["en", "en", "zh", "zh"], "entry": ["dog", "cat", "狗", "猫"]}), md)
    texts = ["a dog"] * 40 + ["a cat"] * 5 + ["狗"] * 30 + ["猫"] * 3
    langs = ["en"] * 45 + ["zh"] * 33
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": texts, "lang": langs}), pool)
    cfg = CurateConfig(inputs=(str(pool),), metadata=str(md), out=str(tmp_path / "o"), lang_column="lang", t_en=10)
    summary = curate(cfg, progress=False)
    table = entry_counts(tmp_path / "o").to_pandas()
    t_of = table["lang"].map(summary["thresholds"])
    assert summary["entries_over_t"] == int((table["count"] >= t_of).sum())
    assert {e["entry"] for e in summary["top_head_entries"]} == set(table.loc[table["count"] >= t_of, "entry"])
