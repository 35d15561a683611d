"""The curation run: same kept set for any partitioning, cluster, row order or
crash; counts and per-file totals right; sampling statistically right."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpu_curate as gc
from gpu_curate import demo_data
from gpu_curate.cluster import local_cluster
from gpu_curate.datacomp import datacomp_uids
from gpu_curate.pipeline import CurateConfig, balance, curate

T = 5  # small: the demo pool is small, and sampling must bite


def make_pool(path, n_files=1, shuffle_seed=None, rows=None):
    """The bundled demo pool with an explicit `uid` column, optionally shuffled and split."""
    table = pq.read_table(demo_data.POOL)
    table = table.append_column("uid", pa.array([f"u{i:05d}" for i in range(table.num_rows)]))
    if rows is not None:
        table = table.slice(0, rows)
    if shuffle_seed is not None:
        table = table.take(pa.array(np.random.default_rng(shuffle_seed).permutation(table.num_rows)))
    path.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, table.num_rows, n_files + 1).astype(int)
    for k in range(n_files):
        pq.write_table(
            table.slice(bounds[k], bounds[k + 1] - bounds[k]), path / f"shard-{k:03d}.parquet", row_group_size=500
        )
    return path


def run(pool, out, client=None, **kw):
    kw = {"metadata": str(demo_data.METADATA), "text_column": "TEXT", "t": T, "seed": 7, **kw}
    cfg = CurateConfig(inputs=(str(pool),), out=str(out), **kw)
    return curate(cfg, client=client, progress=False)


def curate_command(pool, out, *options) -> list[str]:
    """`gpu-curate curate` of the demo metadata with the module's t and seed, as a subprocess command."""
    metadata = ["--metadata", str(demo_data.METADATA), "--text-column", "TEXT"]
    return [
        sys.executable,
        "-m",
        "gpu_curate",
        "curate",
        str(pool),
        *metadata,
        "--t",
        str(T),
        "--seed",
        "7",
        "--out",
        str(out),
        *options,
    ]


def kept(out) -> pa.Table:
    return pq.read_table(out / "kept").sort_by("uid")


def counts(out) -> np.ndarray:
    return pq.read_table(out / "entry_counts.parquet").column("count").to_numpy()


def assert_same_as_reference(out, reference) -> None:
    """Identical kept rows and entry counts."""
    assert kept(out).equals(reference[1])
    assert np.array_equal(counts(out), reference[2])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One partition, in process: what every other way of running must reproduce."""
    base = tmp_path_factory.mktemp("reference")
    pool = make_pool(base / "pool")
    summary = run(pool, base / "out", partition_rows=1_000_000)
    return summary, kept(base / "out"), counts(base / "out")


def test_reference_is_nontrivial(reference):
    summary, kept_rows, _ = reference
    assert summary["rows_in"] == 3000 and 0 < summary["rows_kept"] < summary["rows_matched"] < 3000
    assert kept_rows.num_rows == summary["rows_kept"]
    assert set(kept_rows.column_names) == {"URL", "TEXT", "uid"}


@pytest.mark.parametrize("partition_rows, n_files", [(1, 1), (333, 1), (500, 4), (100_000, 7)])
def test_partitioning_does_not_change_the_result(tmp_path, reference, partition_rows, n_files):
    if partition_rows == 1:
        pool = make_pool(tmp_path / "pool", rows=300)  # one row per partition: small pool
        one = run(make_pool(tmp_path / "pool1", rows=300), tmp_path / "one", partition_rows=10**6)
        many = run(pool, tmp_path / "many", partition_rows=1)
        assert kept(tmp_path / "many").equals(kept(tmp_path / "one"))
        assert many["rows_kept"] == one["rows_kept"]
        return
    pool = make_pool(tmp_path / "pool", n_files=n_files)
    summary = run(pool, tmp_path / "out", partition_rows=partition_rows)
    assert_same_as_reference(tmp_path / "out", reference)
    assert summary["rows_kept"] == reference[0]["rows_kept"]


def test_shuffled_rows_give_the_same_kept_set(tmp_path, reference):
    run(make_pool(tmp_path / "pool", n_files=3, shuffle_seed=1), tmp_path / "out", partition_rows=700)
    assert_same_as_reference(tmp_path / "out", reference)


def test_two_worker_cluster_equals_in_process(tmp_path, reference):
    distributed = pytest.importorskip("distributed")
    pool = make_pool(tmp_path / "pool", n_files=2)
    with local_cluster(2, threads_per_worker=1) as cluster:
        with distributed.Client(cluster) as client:
            run(pool, tmp_path / "out", client=client, partition_rows=400)
    assert_same_as_reference(tmp_path / "out", reference)


def test_counts_equal_the_match_sets(reference):
    """entry_counts = rows per entry of the (oracle-tested) match sets."""
    texts = pq.read_table(demo_data.POOL).column("TEXT")
    res = gc.match(texts, gc.Metadata.load(demo_data.METADATA))
    assert np.array_equal(reference[2], res.counts(len(reference[2])))
    assert reference[0]["pairs_matched"] == len(res.entry_ids)


def test_rows_in_equals_kept_plus_dropped_per_file(tmp_path):
    pool = make_pool(tmp_path / "pool", n_files=3)
    summary = run(pool, tmp_path / "out", partition_rows=400)
    for f in sorted(pool.iterdir()):
        stats = summary["files"][f.name]
        kept_rows = sum(
            pq.read_table(s).num_rows
            for s in (tmp_path / "out" / "kept").glob("part-*.parquet")
            if _file_of(s, tmp_path / "out") == f.name
        )
        assert stats["rows_in"] == pq.ParquetFile(f).metadata.num_rows
        assert stats["rows_kept"] == kept_rows
        assert stats["rows_in"] == stats["rows_kept"] + stats["rows_dropped"]
    assert summary["rows_kept"] == sum(s["rows_kept"] for s in summary["files"].values())


def _file_of(shard, out):
    return json.loads((shard.parent / f"_{shard.stem}.json").read_text())["file"]


def test_derived_uids_name_file_and_row(tmp_path):
    pool = tmp_path / "pool.parquet"
    pq.write_table(pq.read_table(demo_data.POOL), pool)
    run(pool, tmp_path / "out", partition_rows=1000)
    table = kept(tmp_path / "out")
    texts = pq.read_table(pool).column("TEXT").to_pylist()
    for uid, text in zip(table.column("uid").to_pylist()[:50], table.column("TEXT").to_pylist()[:50]):
        name, row = uid.rsplit(":", 1)
        assert name == "pool.parquet" and texts[int(row)] == text


def test_resume_after_kill_loses_nothing(tmp_path, reference):
    pool = make_pool(tmp_path / "pool", n_files=2)
    out = tmp_path / "out"
    cmd = curate_command(pool, out, "--partition-size", "10", "--in-process", "--quiet")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while len(list((out / "matches").glob("_part-*.json"))) < 20 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "summary.json").exists()
    done = len(list((out / "matches").glob("_part-*.json")))
    assert 0 < done < 300

    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert_same_as_reference(out, reference)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_in"] == 3000 and summary["rows_kept"] == reference[0]["rows_kept"]


def test_rerun_of_a_finished_run_changes_nothing(tmp_path):
    pool = make_pool(tmp_path / "pool")
    run(pool, tmp_path / "out", partition_rows=1000)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("part-*.parquet")}
    run(pool, tmp_path / "out", partition_rows=1000)
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("part-*.parquet")}


def test_a_different_run_in_the_same_out_is_refused(tmp_path):
    pool = make_pool(tmp_path / "pool")
    run(pool, tmp_path / "out", partition_rows=1000)
    with pytest.raises(gc.InputError, match="different run"):
        run(pool, tmp_path / "out", partition_rows=500)


def test_balance_alone_equals_a_fresh_run(tmp_path):
    pool = make_pool(tmp_path / "pool")
    run(pool, tmp_path / "a", partition_rows=1000, t=T, seed=7)
    run(pool, tmp_path / "b", partition_rows=1000, t=2, seed=3)
    summary = balance(tmp_path / "a", t=2, seed=3, progress=False)
    assert kept(tmp_path / "a").equals(kept(tmp_path / "b"))
    assert summary["t"] == 2 and summary["seed"] == 3
    assert summary["rows_kept"] == json.loads((tmp_path / "b" / "summary.json").read_text())["rows_kept"]


# -- statistics -----------------------------------------------------------------------
def _binomial_two_sided_p(k: int, n: int, p: float) -> float:
    """P(|X - np| >= |k - np|) for X ~ Binomial(n, p), exactly, in log space."""

    def log_pmf(j):
        return (
            math.lgamma(n + 1)
            - math.lgamma(j + 1)
            - math.lgamma(n - j + 1)
            + j * math.log(p)
            + (n - j) * math.log1p(-p)
        )

    d = abs(k - n * p)
    return min(1.0, sum(math.exp(log_pmf(j)) for j in range(n + 1) if abs(j - n * p) >= d - 1e-9))


def test_kept_counts_follow_the_binomial(tmp_path):
    """Texts matching one entry each: kept count of entry i ~ Binomial(count_i, t/count_i).
    Each of the 12 entries is tested at level 1e-4: the chance that a correct
    sampler fails this test for a random seed is at most 12e-4 (union bound);
    the seed is fixed, so the test is deterministic."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(60, 2000, 12)
    texts = [f"entry{k}" for k, n in enumerate(sizes) for _ in range(n)]
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": texts, "uid": [f"row-{i}" for i in range(len(texts))]}), pool)
    metadata = tmp_path / "md.txt"
    metadata.write_text("\n".join(f"entry{k}" for k in range(12)) + "\n")
    t = 50
    curate(
        CurateConfig(
            inputs=(str(pool),), metadata=str(metadata), out=str(tmp_path / "out"), t=t, seed=2024, partition_rows=5000
        ),
        progress=False,
    )
    kept_texts = pq.read_table(tmp_path / "out" / "kept").column("text").to_pylist()
    for k, n in enumerate(sizes):
        got = kept_texts.count(f"entry{k}")
        assert _binomial_two_sided_p(got, int(n), t / n) > 1e-4, (k, got, n)
    total_p = _binomial_two_sided_p(len(kept_texts), int(sizes.sum()), 12 * t / sizes.sum())  # sanity, loose
    assert total_p > 1e-6


def test_multi_entry_rows_keep_with_one_minus_product(tmp_path):
    """P(keep) = 1 - (1 - p1)(1 - p2) for a text matching two entries."""
    n = 4000
    texts = ["apple pie"] * n + ["apple"] * n + ["pie"] * n
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": texts, "uid": [str(i) for i in range(3 * n)]}), pool)
    metadata = tmp_path / "md.txt"
    metadata.write_text("apple\npie\n")
    curate(
        CurateConfig(inputs=(str(pool),), metadata=str(metadata), out=str(tmp_path / "out"), t=2000, seed=5),
        progress=False,
    )
    kept_texts = pq.read_table(tmp_path / "out" / "kept").column("text").to_pylist()
    p = 2000 / (2 * n)  # both entries have count 2n
    assert _binomial_two_sided_p(kept_texts.count("apple pie"), n, 1 - (1 - p) ** 2) > 1e-4
    assert _binomial_two_sided_p(kept_texts.count("apple"), n, p) > 1e-4


# -- DataComp ------------------------------------------------------------------------
def test_datacomp_subset_is_sorted_128_bit_uids(tmp_path):
    rng = np.random.default_rng(3)
    uids = [f"{x:032x}" for x in rng.integers(0, 2**63, 400).tolist()]
    uids[0] = "f" * 32
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": ["a dog"] * 400, "uid": uids}), pool)
    metadata = tmp_path / "md.txt"
    metadata.write_text("dog\n")
    subset = tmp_path / "subset.npy"
    curate(
        CurateConfig(
            inputs=(str(pool),), metadata=str(metadata), out=str(tmp_path / "out"), t=100, datacomp_subset=str(subset)
        ),
        progress=False,
    )
    got = np.load(subset)
    kept_uids = pq.read_table(tmp_path / "out" / "kept").column("uid").to_pylist()
    assert got.dtype == np.dtype("u8,u8") and len(got) == len(kept_uids)
    assert got.tolist() == sorted(got.tolist())
    assert sorted(f"{a:016x}{b:016x}" for a, b in got.tolist()) == sorted(kept_uids)

    # balance --out writes another directory's balance: the subset file stays OUT's
    before = subset.read_bytes()
    balance(tmp_path / "out", t=10, into=tmp_path / "other", progress=False)
    assert subset.read_bytes() == before
    # a plain balance replaces OUT's visible balance, and its subset with it
    balance(tmp_path / "out", t=10, progress=False)
    assert len(np.load(subset)) == pq.read_table(tmp_path / "out" / "kept").num_rows < len(kept_uids)


def test_datacomp_subset_rejects_other_uids():
    with pytest.raises(gc.InputError, match="32 hex digits"):
        datacomp_uids(["pool.parquet:17"])


@pytest.mark.gpu
def test_gpu_run_keeps_the_same_rows_as_cpu(gpu, tmp_path, reference):
    """--device gpu: the walk and the keep decision on the GPU, bit for bit."""
    from gpu_curate.gpu_backend import emulated

    summary = run(
        make_pool(tmp_path / "pool", n_files=2),
        tmp_path / "out",
        partition_rows=700,
        device="gpu",
        gpu_reader="pyarrow",
    )
    assert_same_as_reference(tmp_path / "out", reference)
    assert summary["device"] == ("gpu (emulated)" if emulated() else "gpu")


def test_cli_on_an_existing_scheduler(tmp_path, reference):
    """--scheduler-address: the run goes to a cluster someone else started."""
    pytest.importorskip("distributed")
    pool = make_pool(tmp_path / "pool", n_files=2)
    with local_cluster(2, threads_per_worker=1) as cluster:
        res = subprocess.run(
            curate_command(pool, tmp_path / "out", "--scheduler-address", cluster.scheduler_address, "--quiet"),
            capture_output=True,
            text=True,
        )
    assert res.returncode == 0, res.stderr
    assert "rows kept" in res.stdout
    assert kept(tmp_path / "out").equals(reference[1])


# -- one text per image (docs/semantics.md section 7) -----------------------------------------------
def image_pool(path, shuffle_seed=None):
    """Three captions per image, some matching nothing; some rows without an image."""
    rng = np.random.default_rng(0)
    n = 3000
    texts = rng.choice(["a dog", "a cat", "a tree", "nothing here"], n).tolist()
    images = [None if i % 97 == 0 else f"img{i // 3}" for i in range(n)]
    table = pa.table({"text": texts, "url": images, "uid": [f"u{i}" for i in range(n)]})
    if shuffle_seed is not None:
        table = table.take(pa.array(np.random.default_rng(shuffle_seed).permutation(n)))
    pq.write_table(table, path)
    return path


def curate_images(tmp_path, name, pool, t=10**9, seed=0, client=None, partition_rows=100_000):
    metadata = tmp_path / "md.txt"
    metadata.write_text("dog\ncat\ntree\n")
    cfg = CurateConfig(
        inputs=(str(pool),),
        metadata=str(metadata),
        out=str(tmp_path / name),
        t=t,
        seed=seed,
        image_column="url",
        partition_rows=partition_rows,
    )
    return curate(cfg, client=client, progress=False)


def test_one_text_per_image_is_the_smallest_image_score(tmp_path):
    from gpu_curate import _core
    from gpu_curate.balance import uid_keys

    pool = image_pool(tmp_path / "pool.parquet")
    summary = curate_images(tmp_path, "out", pool, seed=3)
    table = pq.read_table(pool).to_pandas()
    table["matched"] = table.text != "nothing here"
    keys = uid_keys(pa.array(table.uid))
    table["score"] = _core.uniforms(np.uint64(3), keys, np.full(len(keys), -1, np.int32))
    candidates = table[table.matched]
    with_image = candidates[candidates.url.notna()]
    expected = set(with_image.loc[with_image.groupby("url").score.idxmin(), "uid"]) | set(
        candidates[candidates.url.isna()].uid
    )
    kept = set(pq.read_table(tmp_path / "out" / "kept").column("uid").to_pylist())
    assert kept == expected  # t is huge: every chosen text is kept
    assert summary["rows_same_image_dropped"] == len(candidates) - len(expected)


def test_image_selection_ignores_partitioning_order_and_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    one = curate_images(tmp_path, "one", image_pool(tmp_path / "a.parquet"), t=100)
    curate_images(tmp_path, "many", image_pool(tmp_path / "b.parquet", shuffle_seed=5), t=100, partition_rows=250)
    with (
        local_cluster(2, threads_per_worker=1) as cluster,
        distributed.Client(cluster) as client,
    ):
        curate_images(
            tmp_path,
            "cluster",
            image_pool(tmp_path / "c.parquet", shuffle_seed=6),
            t=100,
            partition_rows=400,
            client=client,
        )
    kept = {
        name: set(pq.read_table(tmp_path / name / "kept").column("uid").to_pylist())
        for name in ("one", "many", "cluster")
    }
    assert kept["one"] == kept["many"] == kept["cluster"] and 0 < len(kept["one"]) < one["rows_matched"]


def test_rebalancing_with_another_seed_chooses_again(tmp_path):
    pool = image_pool(tmp_path / "pool.parquet")
    curate_images(tmp_path, "a", pool, seed=1)
    curate_images(tmp_path, "b", pool, seed=2)
    balance(tmp_path / "a", seed=2, progress=False)
    assert kept(tmp_path / "a").equals(kept(tmp_path / "b"))


def test_outputs_get_the_usual_file_mode(tmp_path):
    """Atomic writes go through mkstemp (mode 0600); outputs must still be readable as usual."""
    mask = os.umask(0)
    os.umask(mask)
    run(make_pool(tmp_path / "pool"), tmp_path / "out", partition_rows=1000)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert files and {p.stat().st_mode & 0o777 for p in files} == {0o666 & ~mask}


@pytest.mark.parametrize("lost", ["pass 1", "pass 2"])
def test_outputs_a_worker_wrote_elsewhere_stop_the_run_before_the_switch(tmp_path, monkeypatch, lost):
    """Workers of an existing cluster on other machines write into their own
    file system when --out is not shared: simulated by a task whose output
    vanishes once it returns. The run stops in one line; nothing is switched in."""
    from gpu_curate import pipeline
    from gpu_curate.outdir import OutDir

    stage = {"pass 1": "match_partition", "pass 2": "balance_partition"}[lost]
    real = getattr(pipeline, stage)

    def elsewhere(part, cfg, **kwargs):
        result = real(part, cfg=cfg, **kwargs)
        if part.index == 1:
            lay = OutDir.of(cfg)
            marker = lay.marker("matches", part) if lost == "pass 1" else lay.generation(cfg.balance_id).marker(part)
            marker.unlink()
        return result

    monkeypatch.setattr(pipeline, stage, elsewhere)
    out = tmp_path / "out"
    cfg = CurateConfig(
        inputs=(str(demo_data.POOL),), metadata=str(demo_data.METADATA), out=str(out), text_column="TEXT",
        t=5, partition_rows=1000,
    )  # fmt: skip
    with pytest.raises(gc.CurateError, match=r"_part-000001\.json: a task finished but its output is not here; "):
        curate(cfg, progress=False)
    assert not (out / "current").exists() and not (out / "summary.json").exists()
