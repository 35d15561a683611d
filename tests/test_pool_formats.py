"""Pools as the ecosystem writes them, end to end: img2dataset folders,
WebDataset tars and fsspec URLs keep what a parquet pool of the same rows
keeps; a pool edited in place, empty files, skips and --out inside the pool
are never silent."""

import io
import json
import os
import subprocess
import sys
import tarfile

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpu_curate as gc
from gpu_curate import demo_data, matchindex
from gpu_curate import pool as pool_mod
from gpu_curate.pipeline import CurateConfig, balance, curate

T, SEED = 5, 7


def run(inputs, out, **kw):
    inputs = tuple(str(p) for p in (inputs if isinstance(inputs, list) else [inputs]))
    kw = {"metadata": str(demo_data.METADATA), "text_column": "caption", "t": T, "seed": SEED, **kw}
    return curate(CurateConfig(inputs=inputs, out=str(out), **kw), progress=False)


def kept_uids(out) -> list:
    return sorted(pq.read_table(out / "kept", columns=["uid"]).column(0).to_pylist())


def counts(out) -> np.ndarray:
    return pq.read_table(out / "entry_counts.parquet").column("count").to_numpy()


def write_tar(path, members, mode="w"):
    with tarfile.open(path, mode) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def rows() -> pa.Table:
    """The demo pool's 3,000 real alt-texts with a uid column."""
    table = pq.read_table(demo_data.POOL)
    return pa.table(
        {
            "uid": [f"u{i:05d}" for i in range(table.num_rows)],
            "caption": table.column("TEXT"),
            "url": table.column("URL"),
        }
    )


def shards(table: pa.Table, n: int) -> list[pa.Table]:
    bounds = np.linspace(0, table.num_rows, n + 1).astype(int)
    return [table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:])]


def img2dataset_folder(d, table):
    """img2dataset's webdataset output: per shard a parquet, a tar and a stats json."""
    d.mkdir()
    for k, shard in enumerate(shards(table, 3)):
        keys = [f"{k:05d}{i:04d}" for i in range(shard.num_rows)]
        meta = shard.append_column("key", pa.array(keys)).append_column("status", pa.array(["success"] * len(keys)))
        pq.write_table(meta, d / f"{k:05d}.parquet")
        members = []
        for row in meta.to_pylist():
            members += [
                (f"{row['key']}.jpg", b"\xff\xd8\xff" + os.urandom(64)),
                (f"{row['key']}.txt", row["caption"].encode()),
                (f"{row['key']}.json", json.dumps(row).encode()),
            ]
        write_tar(d / f"{k:05d}.tar", members)
        (d / f"{k:05d}_stats.json").write_text(json.dumps({"count": len(keys), "successes": len(keys)}))
    return d


def webdataset_pool(d, table):
    """WebDataset shards: uids in the json (keys unrelated), or the key itself (no json); one gzipped."""
    d.mkdir()
    for k, shard in enumerate(shards(table, 3)):
        members = []
        for i, row in enumerate(shard.to_pylist()):
            key = f"{k:03d}-{i:06d}" if k < 2 else row["uid"]
            members += [(f"{key}.jpg", b"\xff\xd8\xff"), (f"{key}.txt", row["caption"].encode())]
            if k < 2:
                members.append((f"{key}.json", json.dumps({"uid": row["uid"], "url": row["url"]}).encode()))
        write_tar(d / (f"shard-{k}.tar.gz" if k == 1 else f"shard-{k}.tar"), members, "w:gz" if k == 1 else "w")
    return d


def test_img2dataset_folders_and_webdataset_tars_keep_what_parquet_keeps(tmp_path, rows):
    (tmp_path / "parquet").mkdir()
    pq.write_table(rows, tmp_path / "parquet" / "pool.parquet")
    reference = run(tmp_path / "parquet", tmp_path / "from-parquet", partition_rows=700)
    folder = run(img2dataset_folder(tmp_path / "img2dataset", rows), tmp_path / "from-img2dataset")
    tars = run(webdataset_pool(tmp_path / "wds", rows), tmp_path / "from-tars")

    expected = kept_uids(tmp_path / "from-parquet")
    assert 0 < len(expected) < reference["rows_matched"] < 3000
    assert kept_uids(tmp_path / "from-img2dataset") == expected
    assert kept_uids(tmp_path / "from-tars") == expected
    for name in ("from-img2dataset", "from-tars"):
        assert np.array_equal(counts(tmp_path / name), counts(tmp_path / "from-parquet")), name
    assert reference["rows_in"] == folder["rows_in"] == tars["rows_in"] == 3000
    assert sorted(folder["files"]) == ["00000.parquet", "00001.parquet", "00002.parquet"]
    assert folder["files_skipped"] == 6 and folder["skipped_by_reason"] == {pool_mod.STATS: 3, pool_mod.TWIN: 3}
    assert sorted(tars["files"]) == ["shard-0.tar", "shard-1.tar.gz", "shard-2.tar"]
    kept = pq.read_table(tmp_path / "from-tars" / "kept")
    assert set(kept.column_names) == {"uid", "key", "caption"}
    by_uid = dict(zip(rows.column("uid").to_pylist(), rows.column("caption").to_pylist()))
    assert all(by_uid[u] == t for u, t in zip(kept.column("uid").to_pylist(), kept.column("caption").to_pylist()))


def test_the_tars_of_an_img2dataset_folder_can_be_named(tmp_path, rows):
    folder = img2dataset_folder(tmp_path / "img2dataset", rows.slice(0, 600))
    summary = run(str(folder / "*.tar"), tmp_path / "out")
    assert sorted(summary["files"]) == ["00000.tar", "00001.tar", "00002.tar"] and summary["rows_in"] == 600


def test_metaclip_tars_with_several_texts_per_image(tmp_path, rows):
    texts = rows.column("caption").to_pylist()[:300]
    members = []
    for i in range(100):  # three alt-texts per image, MetaCLIP's json layout
        members += [
            (f"{i:08x}.json", json.dumps({"texts": [["alt", t] for t in texts[3 * i : 3 * i + 3]]}).encode()),
            (f"{i:08x}.jpeg", b"\xff\xd8"),
        ]
    write_tar(tmp_path / "0.tar", members)
    summary = run(tmp_path / "0.tar", tmp_path / "out", tar_text="json:texts", image_column="key", t=10**9)
    kept = pq.read_table(tmp_path / "out" / "kept")
    assert summary["rows_in"] == 300 and summary["rows_kept"] == kept.num_rows
    assert len(set(kept.column("key").to_pylist())) == kept.num_rows  # one text per image
    index = pa.concat_tables(matchindex.read(p) for p in sorted((tmp_path / "out" / "matches").glob("part-*.arrow")))
    matched_images = {u.split(":")[0] for u in matchindex.uids(index).to_pylist()}
    assert kept.num_rows == len(matched_images) and summary["rows_same_image_dropped"] > 0


# -- fsspec URLs ----------------------------------------------------------------------------
def test_memory_and_file_urls_keep_what_local_paths_keep(tmp_path, rows):
    local = tmp_path / "pool"
    local.mkdir()
    pq.write_table(rows.slice(0, 1500).drop_columns(["uid"]), local / "a.parquet", row_group_size=200)
    (local / "sub").mkdir()
    (local / "sub" / "b.txt").write_text("\n".join(rows.column("caption").to_pylist()[1500:]) + "\n")
    fs = fsspec.filesystem("memory")
    fs.put(str(local), "/url-pool", recursive=True)
    try:
        for name, inputs in [
            ("local", [local]),
            ("memory", ["memory://url-pool"]),
            ("file", [f"file://{local}"]),
            ("memory-glob", ["memory://url-pool/*.parquet", "memory://url-pool/sub/*.txt"]),
        ]:
            run(inputs, tmp_path / name, partition_rows=400, text_column="caption", columns=("caption",))
    finally:
        fs.rm("/url-pool", recursive=True)
    reference = pq.read_table(tmp_path / "local" / "kept").sort_by("uid")
    assert reference.num_rows > 0 and "sub/b.txt:0" < reference.column("uid")[-1].as_py()
    for name in ("memory", "file", "memory-glob"):
        assert pq.read_table(tmp_path / name / "kept").sort_by("uid").equals(reference), name


def test_a_missing_url_is_one_line_on_the_command_line(tmp_path):
    res = _cli("curate", "memory://no-such-bucket/pool/", "--metadata", str(demo_data.METADATA), "--out", str(tmp_path))
    assert res.returncode == 2 and res.stderr == (
        "gpu-curate: error: memory://no-such-bucket/pool/: no such file or directory\n"
    )


# -- identity: a pool edited in place -------------------------------------------------------
def _sed_dog_to_cat(path):
    """`sed -i 's/\\bdog\\b/cat/g'`: the same size, a new modification time."""
    st = path.stat()
    path.write_bytes(path.read_bytes().replace(b" dog ", b" cat "))
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


@pytest.fixture
def tsv_pool(tmp_path, rows):
    pool = tmp_path / "pool.tsv"
    lines = [t.replace("\t", " ").replace("\n", " ").replace("\r", " ") for t in rows.column("caption").to_pylist()]
    lines += ["a dog on the grass"] * 50
    pool.write_text("".join(f"{t}\thttp://x/{i}\n" for i, t in enumerate(lines)), encoding="utf-8")
    return pool


def test_an_in_place_edit_at_the_same_size_is_refused(tmp_path, tsv_pool):
    run(tsv_pool, tmp_path / "out")
    _sed_dog_to_cat(tsv_pool)
    with pytest.raises(gc.InputError, match=r"pool.tsv: changed since this --out was made \(other modification time\)"):
        run(tsv_pool, tmp_path / "out")
    with pytest.raises(gc.InputError, match=r"pool.tsv: changed since this --out was made"):
        balance(tmp_path / "out", t=2, progress=False)


def test_verified_inputs_accept_a_touch_and_refuse_an_edit(tmp_path, tsv_pool):
    first = run(tsv_pool, tmp_path / "out", verify_inputs=True)
    os.utime(tsv_pool, ns=(0, tsv_pool.stat().st_mtime_ns + 10**9))  # touched only
    assert run(tsv_pool, tmp_path / "out", verify_inputs=True)["rows_kept"] == first["rows_kept"]
    _sed_dog_to_cat(tsv_pool)
    with pytest.raises(gc.InputError, match=r"pool.tsv: changed since this --out was made \(other contents\)"):
        run(tsv_pool, tmp_path / "out", verify_inputs=True)


# -- nothing skipped or changed silently ----------------------------------------------------
def test_empty_and_header_only_files_are_zero_rows_and_listed(tmp_path):
    d = tmp_path / "pool"
    d.mkdir()
    empty = {
        "empty.tsv": "",
        "header.tsv": "caption\turl\n",
        "empty.csv": "",
        "header.csv": "url,caption\n",
        "empty.jsonl": "",
        "blank.jsonl": "\n  \n",
        "empty.txt": "",
    }
    for name, text in empty.items():
        (d / name).write_text(text)
    pq.write_table(pa.table({"caption": pa.array([], pa.string())}), d / "empty.parquet")
    write_tar(d / "no-samples.tar", [])
    pq.write_table(pa.table({"caption": ["a dog"]}), d / "one.parquet")
    summary = run(d, tmp_path / "out", t=100)
    assert summary["rows_in"] == 1 and summary["rows_kept"] == 1
    assert summary["files_empty"] == sorted([*empty, "empty.parquet", "no-samples.tar"])
    assert all(summary["files"][name]["rows_in"] == 0 for name in summary["files_empty"])


def test_skips_are_counted_and_listed_in_the_summary(tmp_path):
    d = tmp_path / "pool"
    d.mkdir()
    pq.write_table(pa.table({"caption": ["a dog"]}), d / "00000.parquet")
    (d / "00000_stats.json").write_text("{}")
    (d / "_SUCCESS").write_text("")
    summary = run(d, tmp_path / "out", t=100)
    assert summary["files_skipped"] == 2
    assert sorted(os.path.basename(s["path"]) for s in summary["skipped"]) == ["00000_stats.json", "_SUCCESS"]
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["skipped_by_reason"] == {pool_mod.HIDDEN: 1, pool_mod.STATS: 1}


def test_an_out_inside_the_pool_directory_is_not_read_back(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    pq.write_table(pa.table({"caption": ["a dog", "a cat"]}), pool / "a.parquet")
    first = run(pool, pool / "curated", t=100)
    again = run(pool, pool / "curated", t=100)  # its shards and entry_counts.parquet are not pool files
    assert first["rows_in"] == again["rows_in"] == 2 and list(again["files"]) == ["a.parquet"]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gpu_curate", *args, "--in-process"], capture_output=True, text=True)


@pytest.mark.parametrize("problem", ["newline in a name", "broken symlink"])
def test_unreadable_pool_files_are_one_line_on_the_command_line(tmp_path, problem):
    pool = tmp_path / "pool"
    pool.mkdir()
    pq.write_table(pa.table({"caption": ["a dog"]}), pool / "a.parquet")
    if problem == "broken symlink":
        (pool / "b.parquet").symlink_to(tmp_path / "gone.parquet")
        expected = f"{pool / 'b.parquet'}: broken symlink"
    else:
        (pool / "b\nc.parquet").write_bytes(b"PAR1 not parquet")
        expected = repr(str(pool / "b\nc.parquet")) + ": not a readable parquet file"
    res = _cli(
        "curate",
        str(pool),
        "--metadata",
        str(demo_data.METADATA),
        "--text-column",
        "caption",
        "--out",
        str(tmp_path / "out"),
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith(f"gpu-curate: error: {expected}")


def test_match_reads_a_tar_whose_text_is_a_json_key(tmp_path):
    """`gpu-curate match --tar-text json:caption`, as curate takes it."""
    members = []
    for i, text in enumerate(["a dog on a mat", "a red car"]):
        members += [(f"s{i}.json", json.dumps({"caption": text}).encode()), (f"s{i}.jpg", b"\xff\xd8")]
    write_tar(tmp_path / "0.tar", members)
    res = subprocess.run(
        [sys.executable, "-m", "gpu_curate", "match", str(tmp_path / "0.tar"), "--metadata", str(demo_data.METADATA),
         "--out", str(tmp_path / "m"), "--tar-text", "json:caption"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    table = pq.read_table(tmp_path / "m")
    assert table.column("text").to_pylist() == ["a dog on a mat", "a red car"]
    assert table.column("uid").to_pylist() == ["s0", "s1"]
    assert all(ids for ids in table.column("matched_entry_ids").to_pylist())  # 'dog', 'mat', 'car' are synset heads
