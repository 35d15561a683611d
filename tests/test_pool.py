"""Finding pool files: what is read, what is skipped (and listed), what is
refused in one line; reading some rows of a partition; WebDataset tars;
fsspec URLs; input identity."""

import io
import json
import os
import tarfile

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.spec import AbstractFileSystem
from hypothesis import given, settings
from hypothesis import strategies as st

import gpu_curate as gc
from gpu_curate import pool as pool_mod
from gpu_curate.identity import changed_input, input_identity
from gpu_curate.pool import find_pool, plan_partitions
from gpu_curate.readers import read_partition, read_rows
from gpu_curate.webdataset import read_tar, sample_key


def write_tar(path, samples, mode="w"):
    """samples: list of (member name, bytes)."""
    with tarfile.open(path, mode) as tar:
        for name, data in samples:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def names(pool):
    return [f.name for f in pool.files]


def reasons(pool):
    return {os.path.relpath(s["path"]) if "://" not in s["path"] else s["path"]: s["reason"] for s in pool.skipped}


# -- what a directory holds ------------------------------------------------------------
def test_a_directory_lists_what_it_skips_and_why(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "pool"
    (d / "sub").mkdir(parents=True)
    (d / "_tmp").mkdir()
    (d / ".git").mkdir()
    for name in ("00000.parquet", "sub/00001.parquet", "_tmp/old.parquet", ".git/x.parquet", "_part-000001.parquet"):
        pq.write_table(pa.table({"text": ["a dog"]}), d / name)
    write_tar(d / "00000.tar", [("0.txt", b"a dog")])  # img2dataset's twin of 00000.parquet
    write_tar(d / "00002.tar", [("0.txt", b"a cat")])  # no twin: read
    (d / "00000_stats.json").write_text("{}")
    (d / "_SUCCESS").write_text("")
    (d / ".hidden.txt").write_text("a dog\n")
    (d / "README.md").write_text("notes")
    (d / "notes").symlink_to("missing-target")  # broken, not named like a pool file
    (d / "linked").symlink_to(d / "sub")  # a directory link: not followed
    pool = find_pool(["pool"])
    assert names(pool) == ["00000.parquet", "00002.tar", "sub/00001.parquet"]
    assert reasons(pool) == {
        "pool/.git": pool_mod.HIDDEN,
        "pool/.hidden.txt": pool_mod.HIDDEN,
        "pool/_SUCCESS": pool_mod.HIDDEN,
        "pool/_part-000001.parquet": pool_mod.HIDDEN,
        "pool/_tmp": pool_mod.HIDDEN,
        "pool/00000_stats.json": pool_mod.STATS,
        "pool/README.md": pool_mod.NOT_A_POOL_FORMAT,
        "pool/notes": pool_mod.BROKEN_LINK,
        "pool/linked": pool_mod.DIR_LINK,
        "pool/00000.tar": pool_mod.TWIN,
    }
    assert [s["read_instead"] for s in pool.skipped if "read_instead" in s] == ["pool/00000.parquet"]


def test_a_glob_skips_alike_and_a_named_file_is_read_as_named(tmp_path):
    for name in (
        "a.parquet",
        "_b.parquet",
        "c_stats.json",
        "d.json",
        "_tmp/e.parquet",
        "_tmp/f.parquet",
        "g/h.parquet",
    ):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("{}" if name.endswith("json") else "")
    pool = find_pool([str(tmp_path / "*")])
    assert names(pool) == ["a.parquet", "d.json", "g/h.parquet"]
    assert sorted(s["reason"] for s in pool.skipped) == sorted([pool_mod.HIDDEN] * 2 + [pool_mod.STATS])
    pool = find_pool([str(tmp_path / "**" / "*.parquet")])
    assert names(pool) == ["a.parquet", "g/h.parquet"]
    assert [s["path"] for s in pool.skipped] == [str(tmp_path / "_b.parquet"), str(tmp_path / "_tmp")]
    assert names(find_pool([str(tmp_path / "_b.parquet")])) == ["_b.parquet"]


def test_a_directory_of_nothing_readable_says_what_it_skipped(tmp_path):
    (tmp_path / "_SUCCESS").write_text("")
    (tmp_path / "a_stats.json").write_text("{}")
    with pytest.raises(
        gc.InputError,
        match=r"no pool files found \(skipped: name starts with . or _ \(1\); img2dataset stats file \(1\)\)$",
    ):
        find_pool([str(tmp_path)])


def test_a_broken_symlink_named_like_a_pool_file_is_refused(tmp_path):
    (tmp_path / "pool").mkdir()
    pq.write_table(pa.table({"text": ["a dog"]}), tmp_path / "pool" / "a.parquet")
    (tmp_path / "pool" / "b.parquet").symlink_to(tmp_path / "gone.parquet")
    with pytest.raises(gc.InputError, match=r"b.parquet: broken symlink"):
        find_pool([str(tmp_path / "pool")])
    with pytest.raises(gc.InputError, match=r"b.parquet: broken symlink"):
        find_pool([str(tmp_path / "pool" / "b.parquet")])


def _deny(monkeypatch, path, what):
    """Simulate a permission error on `path` (the tests may run as root, who is never denied)."""
    path = str(path)
    if what == "list":
        real = os.scandir

        def scandir(p="."):
            if os.path.abspath(p) == path:
                raise PermissionError(13, "Permission denied", p)
            return real(p)

        monkeypatch.setattr(pool_mod.os, "scandir", scandir)
    else:
        real_access = os.access
        monkeypatch.setattr(pool_mod.os, "access", lambda p, mode: os.path.abspath(p) != path and real_access(p, mode))


@pytest.mark.parametrize("how", ["simulated", "chmod"])
def test_an_unreadable_subdirectory_is_refused_not_skipped(tmp_path, monkeypatch, how):
    sub = tmp_path / "pool" / "sub"
    sub.mkdir(parents=True)
    pq.write_table(pa.table({"text": ["a dog"]}), tmp_path / "pool" / "a.parquet")
    pq.write_table(pa.table({"text": ["a cat"]}), sub / "b.parquet")
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root reads every directory; the simulated case covers this")
        sub.chmod(0)
    else:
        _deny(monkeypatch, sub, "list")
    try:
        for given_as in ("pool", "pool/*/*.parquet", "pool/**"):
            with pytest.raises(gc.InputError, match=r"sub: cannot list this pool directory \(Permission denied\)"):
                find_pool([str(tmp_path / given_as)])
        assert names(find_pool([str(tmp_path / "pool" / "*.parquet")])) == ["a.parquet"]  # sub is out of its reach
    finally:
        os.chmod(sub, 0o755)


@pytest.mark.parametrize("how", ["simulated", "chmod"])
def test_a_file_without_read_permission_is_refused(tmp_path, monkeypatch, how):
    f = tmp_path / "a.txt"
    f.write_text("a dog\n")
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("root reads every file; the simulated case covers this")
        f.chmod(0)
    else:
        _deny(monkeypatch, f, "read")
    try:
        for given_as in (tmp_path, f):
            with pytest.raises(gc.InputError, match=r"a.txt: no read permission"):
                find_pool([str(given_as)])
    finally:
        f.chmod(0o644)


def test_the_runs_out_directory_is_never_pool(tmp_path):
    pq.write_table(pa.table({"text": ["a dog"]}), tmp_path / "a.parquet")
    (tmp_path / "out" / "kept").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["a dog"]}), tmp_path / "out" / "kept" / "part-000000.parquet")
    assert names(find_pool([str(tmp_path)], exclude=str(tmp_path / "out"))) == ["a.parquet"]
    assert names(find_pool([str(tmp_path / "**" / "*.parquet")], exclude=str(tmp_path / "out"))) == ["a.parquet"]
    assert len(find_pool([str(tmp_path)]).files) == 2
    with pytest.raises(gc.InputError, match="is the run's --out"):
        find_pool([str(tmp_path)], exclude=str(tmp_path))


def test_a_newline_in_a_file_name_keeps_the_error_on_one_line(tmp_path):
    bad = tmp_path / "bro\nken.parquet"
    bad.write_bytes(b"PAR1 not parquet")
    with pytest.raises(gc.InputError) as e:
        plan_partitions(find_pool([str(tmp_path)]).files, 100)
    assert "\n" not in str(e.value) and "bro\\nken.parquet" in str(e.value)


# -- read_rows ---------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 9), min_size=1, max_size=6),
    partition_rows=st.integers(1, 20),
    data=st.data(),
)
def test_read_rows_equals_reading_the_partition_and_taking(tmp_path_factory, sizes, partition_rows, data):
    d = tmp_path_factory.mktemp("rows")
    n = sum(sizes)
    table = pa.table({"text": [f"t{i}" for i in range(n)], "n": list(range(n))})
    with pq.ParquetWriter(d / "a.parquet", table.schema) as w:  # row groups of exactly these sizes
        start = 0
        for size in sizes:
            w.write_table(table.slice(start, size), row_group_size=max(size, 1))
            start += size
    (d / "b.txt").write_text("".join(f"t{i}\n" for i in range(n)))
    for part in plan_partitions(find_pool([str(d)]).files, partition_rows):
        whole = read_partition(part, None, "text")
        rows = sorted(data.draw(st.sets(st.integers(0, max(whole.num_rows - 1, 0)), max_size=whole.num_rows)))
        rows = [r for r in rows if r < whole.num_rows]
        got = read_rows(part, np.array(rows, np.int64), None, "text")
        assert got.equals(whole.take(pa.array(rows, pa.int64()))), (part, rows)


def test_read_rows_reads_only_the_row_groups_holding_them(tmp_path, monkeypatch):
    pq.write_table(pa.table({"text": [str(i) for i in range(100)]}), tmp_path / "a.parquet", row_group_size=10)
    (part,) = plan_partitions(find_pool([str(tmp_path)]).files, 1000)
    read = []
    real = pq.ParquetFile.read_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", lambda self, g, **kw: read.append(g) or real(self, g, **kw))
    assert read_rows(part, np.array([3, 57, 58]), ["text"], "text").column(0).to_pylist() == ["3", "57", "58"]
    assert read == [[0, 5]]


# -- WebDataset ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, expected",
    [
        ("000123.jpg", ("000123", "jpg")),
        ("000123.seg.PNG", ("000123", "seg.png")),
        ("shard/a.b/000123.txt", ("shard/a.b/000123", "txt")),
        ("./000123.json", ("./000123", "json")),
        ("noextension", None),
        ("dir.v2/noextension", None),
        (".hidden", None),
        ("__index__", None),
    ],
)
def test_sample_keys_follow_webdatasets_rule(name, expected):
    assert sample_key(name) == expected


def test_a_tar_gives_one_row_per_sample_with_uid_key_and_text(tmp_path):
    write_tar(
        tmp_path / "a.tar.gz",
        [
            ("s0.jpg", b"\xff\xd8" * 5000),
            ("s0.txt", b"a dog"),
            ("s0.json", json.dumps({"uid": "abc", "caption": "a cat"}).encode()),
            ("s1.txt", b"bad \xff utf-8"),
            ("s1.jpg", b"\xff\xd8"),
            ("s2.jpg", b"\xff\xd8"),  # no text: a null text
            ("sub/s3.txt", b"a tree"),
        ],
        mode="w:gz",
    )
    table = read_tar(str(tmp_path / "a.tar.gz"), "caption")
    assert table.to_pydict() == {
        "uid": ["abc", "s1", "s2", "sub/s3"],
        "key": ["s0", "s1", "s2", "sub/s3"],
        "caption": [b"a dog", b"bad \xff utf-8", None, b"a tree"],
    }
    assert read_tar(str(tmp_path / "a.tar.gz"), "caption", "json:caption").column("caption").to_pylist() == [
        b"a cat",
        None,
        None,
        None,
    ]


def test_metaclip_layout_json_texts_give_one_row_per_text(tmp_path):
    texts = [["alt", "a dog on a sofa"], ["caption", "a cat"]]
    write_tar(
        tmp_path / "0.tar",
        [
            ("8f2e.json", json.dumps({"texts": texts}).encode()),
            ("8f2e.jpeg", b"\xff"),
            ("91ab.json", json.dumps({"texts": ["plain text"], "uid": 7}).encode()),
        ],
    )
    table = read_tar(str(tmp_path / "0.tar"), "text", "json:texts")
    assert table.to_pydict() == {
        "uid": ["8f2e:0", "8f2e:1", "7:0"],
        "key": ["8f2e", "8f2e", "91ab"],
        "text": [b"a dog on a sofa", b"a cat", b"plain text"],
    }


def test_integer_uids_in_json_stay_integers(tmp_path):
    write_tar(tmp_path / "a.tar", [(f"{i}.json", json.dumps({"uid": i * 10}).encode()) for i in range(3)])
    assert read_tar(str(tmp_path / "a.tar"), "text").column("uid").to_pylist() == [0, 10, 20]


@pytest.mark.parametrize(
    "members, tar_text, message",
    [
        ([("a.txt", b"x"), ("a.txt", b"y")], "txt", r"member 'a.txt' appears twice in sample 'a'"),
        ([("a.json", b"{not json")], "txt", r"sample 'a': its json is not valid JSON"),
        ([("a.json", b'{"caption": 3}')], "json:caption", r"sample 'a': json key 'caption' holds 3, not a text"),
        ([("a.json", b'{"uid": 1}'), ("b.txt", b"x")], "txt", r"uids mix strings and integers"),
        ([("a.json", b'{"uid": [1]}')], "txt", r"sample 'a': uid must be a string or an integer"),
    ],
)
def test_bad_tars_name_the_sample(tmp_path, members, tar_text, message):
    write_tar(tmp_path / "a.tar", members)
    with pytest.raises(gc.InputError, match=message):
        read_tar(str(tmp_path / "a.tar"), "text", tar_text)


def test_a_truncated_tar_is_one_line(tmp_path):
    write_tar(tmp_path / "a.tar", [("a.txt", b"x" * 5000), ("b.txt", b"y" * 5000)])
    data = (tmp_path / "a.tar").read_bytes()
    (tmp_path / "a.tar").write_bytes(data[:3000])
    with pytest.raises(gc.InputError, match=r"a.tar: not a readable tar \(") as e:
        read_tar(str(tmp_path / "a.tar"), "text")
    assert "\n" not in str(e.value)


def test_tar_text_must_be_a_suffix_or_a_json_key(tmp_path):
    with pytest.raises(gc.CurateError, match="json: needs a key"):
        plan_partitions([], 10, tar_text="json:")
    with pytest.raises(gc.CurateError, match="neither a member suffix"):
        plan_partitions([], 10, tar_text=".txt")


# -- URLs ----------------------------------------------------------------------------------
@pytest.fixture
def memory_pool():
    fs = fsspec.filesystem("memory")
    root = "/pool-test"
    for name in ("a.parquet", "sub/b.parquet", "_tmp/c.parquet"):
        with fs.open(f"{root}/{name}", "wb") as f:
            pq.write_table(pa.table({"text": ["a dog", "a cat"]}), f)
    with fs.open(f"{root}/a_stats.json", "wb") as f:
        f.write(b"{}")
    yield f"memory://{root}"
    fs.rm(root, recursive=True)


def test_memory_urls_are_found_like_local_directories(memory_pool):
    pool = find_pool([memory_pool])
    assert names(pool) == ["a.parquet", "sub/b.parquet"]
    assert reasons(pool) == {
        f"memory://{memory_pool[len('memory://') :]}/_tmp": pool_mod.HIDDEN,
        f"{memory_pool}/a_stats.json": pool_mod.STATS,
    }
    assert names(find_pool([memory_pool + "/*.parquet"])) == ["a.parquet"]
    (part,) = plan_partitions(find_pool([memory_pool + "/sub/b.parquet"]).files, 10)
    assert part.path == f"memory://{memory_pool[len('memory://') :]}/sub/b.parquet"
    assert read_rows(part, np.array([1]), None, "text").column(0).to_pylist() == ["a cat"]


def test_file_urls_are_local_paths(tmp_path):
    pq.write_table(pa.table({"text": ["a dog"]}), tmp_path / "a.parquet")
    by_url, by_path = find_pool([f"file://{tmp_path}"]), find_pool([str(tmp_path)])
    assert by_url.files == by_path.files


class _Unreachable(AbstractFileSystem):
    protocol = "unreachable"

    def ls(self, path, detail=True, **kwargs):
        raise ConnectionError("Could not connect to the endpoint URL: https://bucket.example/\nretries exhausted")

    info = ls


@pytest.mark.parametrize(
    "url, message",
    [
        ("memory://nowhere/pool.parquet", "memory://nowhere/pool.parquet: no such file or directory"),
        ("unreachable://bucket/pool/", "unreachable://bucket/pool/: cannot reach (ConnectionError: Could not connect"),
        ("nosuchprotocol://bucket/x", "nosuchprotocol://bucket/x: Protocol not known: nosuchprotocol"),
    ],
)
def test_unreachable_or_missing_urls_are_one_line(url, message):
    fsspec.register_implementation("unreachable", _Unreachable, clobber=True)
    with pytest.raises(gc.InputError) as e:
        find_pool([url])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_store_whose_package_is_missing_is_one_line():
    try:
        import s3fs  # noqa: F401

        pytest.skip("s3fs is installed here")
    except ImportError:
        pass
    with pytest.raises(gc.InputError, match=r"^s3://bucket/pool: Install s3fs to access S3$"):
        find_pool(["s3://bucket/pool"])


# -- identity --------------------------------------------------------------------------------
def test_identity_sees_same_size_edits_by_time_and_parquet_footers(tmp_path):
    f = tmp_path / "a.tsv"
    f.write_text("a dog\thttp://x\n")
    before = input_identity(find_pool([str(tmp_path)]).files)
    f.write_text("a cat\thttp://x\n")  # same size
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    after = input_identity(find_pool([str(tmp_path)]).files)
    assert changed_input(before, after).endswith(
        "a.tsv: changed since this --out was made (other modification time); use a new --out"
    )
    assert changed_input(before, before) is None

    p = tmp_path / "b.parquet"
    pq.write_table(pa.table({"text": ["a dog"]}), p, compression="none")
    old = input_identity(find_pool([str(p)]).files)
    mtime = p.stat().st_mtime_ns
    pq.write_table(pa.table({"text": ["a cat"]}), p, compression="none")  # same size, other statistics
    os.utime(p, ns=(mtime, mtime))  # even with the old time
    new = input_identity(find_pool([str(p)]).files)
    assert old[0]["size"] == new[0]["size"] and "(other parquet footer)" in changed_input(old, new)


def test_verified_contents_decide_over_times(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("a dog\n")
    before = input_identity(find_pool([str(f)]).files, verify=True)
    os.utime(f, ns=(0, 10**18))  # touched, not changed
    assert changed_input(before, input_identity(find_pool([str(f)]).files, verify=True)) is None
    assert "(other modification time)" in changed_input(before, input_identity(find_pool([str(f)]).files))
    f.write_text("a cat\n")
    assert "(other contents)" in changed_input(before, input_identity(find_pool([str(f)]).files, verify=True))


def test_files_added_or_removed_are_named(tmp_path):
    (tmp_path / "a.txt").write_text("a\n")
    (tmp_path / "b.txt").write_text("b\n")
    before = input_identity(find_pool([str(tmp_path)]).files)
    (tmp_path / "a.txt").unlink()
    assert "a.txt: in the pool this --out was made from, but not in this one" in changed_input(
        before, input_identity(find_pool([str(tmp_path)]).files)
    )
    (tmp_path / "c.txt").write_text("c\n")
    assert "c.txt: not in the pool this --out was made from" in changed_input(
        before, input_identity(find_pool([str(tmp_path)]).files)
    )
