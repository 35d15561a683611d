"""Fault injection, continued (the suite's description: test_faults.py):
corrupt inputs, metadata and cache, full disks, damaged outputs, concurrent
runs, in-place edits of the pool, leftovers of killed writes. Each case ends
in outputs identical to a clean run, or one clear line naming the file with
nothing wrong left visible."""

from __future__ import annotations

import gzip
import os
import shutil
import socket
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpu_curate as gc
from gpu_curate.errors import CurateError, OutputError
from gpu_curate.lock import OutLock
from gpu_curate.pipeline import CurateConfig, balance, curate

from faultlib import (
    METADATA,
    POOL,
    balance_args,
    clean_run,
    cli,
    config,
    curate_args,
    fault,
    generations,
    one_line_error,
    same,
    temporaries,
    visible,
)

T_A, T_B = 5, 50


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """Clean runs at T_A and T_B."""
    base = tmp_path_factory.mktemp("refs")
    out = {t: clean_run(base / str(t), t) for t in (T_A, T_B)}
    out["template"] = base / str(T_A)
    return out


def copy_of(refs, tmp_path, name="out"):
    """A finished T_A run to break."""
    shutil.copytree(refs["template"], tmp_path / name, symlinks=True)
    return tmp_path / name


# -- corrupt inputs and metadata: one line naming the file --------------------------------
def _pool_cases(d):
    demo = POOL.read_bytes()
    return {
        "truncated.parquet": demo[: len(demo) // 2],
        "empty-bytes.parquet": b"",
        "text.parquet": b"this is not parquet" * 20,
        "broken.jsonl": b'{"text": "a dog"}\n{"text": "a cat"\n',
        "not-gzip.txt.gz": b"plain text\n",
        "cut.txt.gz": gzip.compress(b"a dog\na cat\n")[:-6],
        "numbers.jsonl": b'{"text": 1}\n{"text": 2}\n',
        "bad-quote.csv": b'text,url\n"a dog,u1\na cat,u2\n',
        "no-text.jsonl": b'{"caption": "a dog"}\n',
    }


def _metadata_cases():
    return {
        "empty.json": b"[]",
        "empty.txt": b"",
        "dict.json": b'{"a": 1}',
        "number.json": b'["dog", 3]',
        "null.json": b'["dog", null]',
        "cut.json": b'["dog", "ca',
        "latin1.txt": "dog\ncafé\n".encode("latin-1"),
        "blank-line.txt": b"dog\n   \ncat\n",
        "surrogate.json": b'["dog", "\\ud800"]',
        "nothing-here": None,  # a directory without lists
        "one-empty-language": {"en.txt": b"dog\n", "nl.txt": b""},
    }


def _write(path, content):
    if content is None:
        path.mkdir()
    elif isinstance(content, dict):
        path.mkdir()
        for name, data in content.items():
            (path / name).write_bytes(data)
    else:
        path.write_bytes(content)


def _curate_api(pool, metadata, out, **kw):
    cfg = CurateConfig(inputs=(str(pool),), metadata=str(metadata), out=str(out), t=5, **kw)
    return curate(cfg, progress=False)


@pytest.mark.parametrize("name", sorted(_pool_cases(None)))
def test_a_corrupt_pool_file_is_one_line_naming_it(tmp_path, name):
    pool = tmp_path / name
    _write(pool, _pool_cases(tmp_path)[name])
    md = tmp_path / "md.txt"
    md.write_text("dog\n")
    with pytest.raises(CurateError) as err:
        _curate_api(pool, md, tmp_path / "out")
    assert str(pool) in str(err.value) and "\n" not in str(err.value)
    assert visible(tmp_path / "out") is None


@pytest.mark.parametrize("name", sorted(_metadata_cases()))
def test_corrupt_metadata_is_one_line_naming_it(tmp_path, name):
    md = tmp_path / name
    _write(md, _metadata_cases()[name])
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "a dog"}\n')
    with pytest.raises(gc.MetadataError) as err:
        _curate_api(pool, md, tmp_path / "out")
    assert str(md) in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_cli_prints_a_corrupt_input_as_one_line(tmp_path):
    md = tmp_path / "md.json"
    md.write_bytes(b"[]")
    args = ["curate", POOL, "--metadata", md, "--text-column", "TEXT", "--out", tmp_path / "out", "--in-process"]
    one_line_error(cli(*args), f"{md}: no entries")


def test_a_utf8_bom_starting_a_metadata_list_is_stripped(tmp_path):
    for name, data in (("md.txt", b"\xef\xbb\xbfdog\ncat\n"), ("md.json", b'\xef\xbb\xbf["dog", "cat"]')):
        (tmp_path / name).write_bytes(data)
        md = gc.Metadata.load(tmp_path / name)
        assert md[0] == "dog"
        assert gc.match(["a dog", "a cat"], md).to_lists() == [[0], [1]]


# -- full disks -------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs where this test may mount one (root with CAP_SYS_ADMIN);
    yields a function that resizes it."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root; the ENOSPC hook cases cover a full disk here")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()}); the ENOSPC hook cases cover a full disk")

    def resize(size: str):
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)

    yield mnt, resize
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_in_both_passes(small_disk, refs):
    """A real full disk (tmpfs): the failed write is one line naming its
    file; nothing wrong is visible; with space again, the rerun is clean. Then
    a rebalance that fills the disk leaves the previous run as it was."""
    mnt, resize = small_disk
    out = mnt / "out"
    line = one_line_error(cli(*curate_args(out, T_A)), "No space left on device", str(out))
    assert visible(out) is None, line
    resize("64m")
    assert cli(*curate_args(out, T_A)).returncode == 0
    assert same(visible(out), refs[T_A])
    used = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and not p.is_symlink())
    resize(f"{(used + 300_000) // 4096 * 4096}")  # room for part of a new generation, not all of it
    one_line_error(cli(*balance_args(out, T_B)), "No space left on device")
    assert same(visible(out), refs[T_A])  # the previous complete run, untouched
    resize("64m")
    assert cli(*balance_args(out, T_B)).returncode == 0
    assert same(visible(out), refs[T_B]) and temporaries(out) == [] and len(generations(out)) == 1


@pytest.mark.parametrize(
    "command, pattern",
    [
        ("curate", "matches/part-000001.arrow"),
        pytest.param("curate", "generations/*/entry_counts.parquet", marks=pytest.mark.slow),
        pytest.param("balance", "generations/*/kept/_part-000002.json", marks=pytest.mark.slow),
        ("balance", "current"),
    ],
)
def test_enospc_at_a_write_is_one_line_then_a_rerun_is_clean(tmp_path, refs, command, pattern):
    """Where no tmpfs can be mounted this is the full disk; everywhere it
    reaches writes that a small disk would not pick."""
    out = copy_of(refs, tmp_path) if command == "balance" else tmp_path / "out"
    args = balance_args(out, T_B) if command == "balance" else curate_args(out, T_A)
    one_line_error(cli(*args, env=fault("enospc", pattern, "before-rename")), "No space left on device", str(out))
    assert visible(out) is None if command == "curate" else same(visible(out), refs[T_A])
    assert cli(*args).returncode == 0
    assert same(visible(out), refs[T_B] if command == "balance" else refs[T_A])
    assert temporaries(out) == []


# -- damaged outputs ----------------------------------------------------------------------
def test_a_damaged_marker_or_match_shard_is_one_line(tmp_path, refs):
    out = copy_of(refs, tmp_path)
    marker = out / "matches" / "_part-000001.json"
    marker.write_text('{"rows_in": 3')
    one_line_error(cli(*curate_args(out, T_A)), "_part-000001.json: cannot read")
    shutil.copy(refs["template"] / "matches" / "_part-000001.json", marker)
    (out / "matches" / "part-000002.arrow").write_bytes(b"not arrow")
    with pytest.raises(OutputError, match=r"part-000002.arrow: damaged match index shard .*delete it"):
        curate(config(out, T_A), progress=False)  # pass 1 recounts from the shards
    assert same(visible(out), refs[T_A])  # the failed reruns changed nothing visible
    (out / "matches" / "part-000002.arrow").unlink()
    (out / "matches" / "_part-000002.json").unlink()
    assert cli(*curate_args(out, T_A)).returncode == 0
    assert same(visible(out), refs[T_A])


def test_leftover_temporaries_are_removed_when_a_run_starts(tmp_path, refs):
    out = copy_of(refs, tmp_path)
    planted = [
        out / "matches" / ".part-000001.arrow.ab12cd34.tmp",
        out / "generations" / ".0123456789abcdef.k3j4h5g6.tmp",
        out / ".current.0badc0de.tmp",
    ]
    for p in planted[:1] + planted[2:]:
        p.write_bytes(b"half a file")
    planted[1].mkdir()
    (planted[1] / "kept").mkdir()
    theirs = out / ".not-ours.tmp"  # not a name storage.py makes: left alone
    theirs.write_text("")
    assert cli(*curate_args(out, T_A)).returncode == 0
    assert temporaries(out) == [] and theirs.exists()
    assert same(visible(out), refs[T_A])


# -- rebalancing ------------------------------------------------------------------------
def test_a_failed_rebalance_leaves_the_previous_run(tmp_path, refs):
    out = copy_of(refs, tmp_path)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    one_line_error(cli(*balance_args(out, -1)), "--t must be a finite number above 0")
    one_line_error(cli(*balance_args(out, "nan")), "--t must be a finite number above 0")
    assert before == {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}


def test_balance_into_another_directory(tmp_path, refs):
    out = copy_of(refs, tmp_path)
    before = sorted((str(p), p.stat().st_mtime_ns) for p in out.rglob("*") if p.name != ".lock")
    assert cli(*balance_args(out, T_B, "--out", tmp_path / "b")).returncode == 0
    assert same(visible(tmp_path / "b"), refs[T_B])
    assert not (tmp_path / "b" / "matches").exists()  # it reads OUT's match index, and so does a Rebalancer
    uids = pa.concat_arrays(list(gc.Rebalancer.open(tmp_path / "b").kept_uids())).to_pylist()
    assert sorted(uids) == refs[T_B]["kept"].column("uid").to_pylist()
    assert cli(*balance_args(tmp_path / "b", T_A)).returncode == 0  # a balance --out directory rebalances too
    assert same(visible(tmp_path / "b"), refs[T_A])
    assert before == sorted((str(p), p.stat().st_mtime_ns) for p in out.rglob("*") if p.name != ".lock")
    other = tmp_path / "other"
    cfg = CurateConfig(inputs=(str(POOL),), metadata=str(METADATA), out=str(other), text_column="TEXT", t=T_A)
    curate(cfg, progress=False)
    one_line_error(cli(*balance_args(out, T_B, "--out", other)), "holds the outputs of a different run")


# -- concurrent runs ----------------------------------------------------------------------
def test_a_run_into_a_locked_out_is_one_line_naming_the_holder(tmp_path, refs):
    out = copy_of(refs, tmp_path)
    with OutLock(out):
        line = one_line_error(cli(*curate_args(out, T_B)), f"pid {os.getpid()} on {socket.gethostname()}")
        assert "in use by" in line
        one_line_error(cli(*balance_args(out, T_B)), "in use by")
        one_line_error(cli(*balance_args(out, T_B, "--out", tmp_path / "b")), "in use by")
    assert same(visible(out), refs[T_A])


def test_rebalancings_may_read_one_run_together_but_not_beside_its_curate(tmp_path, refs):
    out = copy_of(refs, tmp_path)
    with OutLock(out, shared=True):  # another `balance --out` reading it
        balance(out, t=T_B, into=tmp_path / "b", progress=False)
        with pytest.raises(OutputError, match="in use by another run"):
            balance(out, t=T_B, progress=False)
    assert same(visible(tmp_path / "b"), refs[T_B]) and same(visible(out), refs[T_A])


@pytest.mark.parametrize(
    "attempt", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]
)
def test_two_runs_started_together_into_one_out(tmp_path, refs, attempt):
    """The issue's case: curate --t T_A and --t T_B at once. One may be
    refused (one line, the lock); what is visible at the end is one whole run."""
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gpu_curate", *map(str, curate_args(out, t))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for t in (T_A, T_B)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for rc, err in results:
        assert rc == 0 or (rc == 2 and "in use by" in err and err.count("\n") == 1), err
    assert any(rc == 0 for rc, _ in results)
    seen = visible(out)
    assert same(seen, refs[seen["summary"]["t"]])


# -- in-place edits of the pool ---------------------------------------------------------------
def test_a_pool_file_edited_in_place_is_not_trusted(tmp_path):
    """Same size, new content: a rerun must refuse (one line naming the file)
    or redo the run; never reuse the old matches."""
    pool = tmp_path / "pool.txt"
    lines = [" ".join(t.split()) for t in pq.read_table(POOL).column("TEXT").to_pylist()[:600]]
    pool.write_text("\n".join(lines) + "\n")
    _curate_api(pool, METADATA, tmp_path / "out")
    edited = [t.replace("dog", "cat").replace("man", "car") for t in lines]
    assert sum(a != b for a, b in zip(lines, edited)) > 5
    pool.write_text("\n".join(edited) + "\n")
    try:
        _curate_api(pool, METADATA, tmp_path / "out")
    except CurateError as e:
        assert str(pool) in str(e) and "\n" not in str(e)
        return
    _curate_api(pool, METADATA, tmp_path / "clean")
    assert same(visible(tmp_path / "out"), visible(tmp_path / "clean"))


def test_verify_inputs_catches_an_edit_that_kept_size_and_mtime(tmp_path):
    pool = tmp_path / "pool.txt"
    pool.write_text("a dog\na cat\n")
    assert cli(*_txt_args(pool, tmp_path / "out"), "--verify-inputs").returncode == 0
    stat = pool.stat()
    pool.write_text("a cat\na dog\n")
    os.utime(pool, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    one_line_error(cli(*_txt_args(pool, tmp_path / "out"), "--verify-inputs"), str(pool))


def _txt_args(pool, out):
    return ["curate", pool, "--metadata", METADATA, "--t", T_A, "--out", out, "--in-process", "--quiet"]


# -- paths that would split a one-line message ---------------------------------------------------
def test_an_output_path_with_a_newline_stays_one_line(tmp_path):
    out = tmp_path / "new\nline"
    res = cli(*curate_args(out, T_A), env=fault("enospc", "run.json", "before-rename"))
    line = one_line_error(res, "No space left on device")
    assert repr(str(out / "run.json")) in line
    with OutLock(out):
        assert repr(str(out)) in one_line_error(cli(*curate_args(out, T_A)), "in use by")


def test_a_layout_from_before_generations_is_taken_over(tmp_path, refs):
    """kept/ a directory, summary.json and entry_counts.parquet files: the
    first run replaces them with the links, same outputs."""
    out = copy_of(refs, tmp_path)
    current = out / os.readlink(out / "current")
    for name in ("kept", "summary.json", "entry_counts.parquet"):
        (out / name).unlink()
        (shutil.copytree if name == "kept" else shutil.copy)(current / name, out / name)
    (out / "current").unlink()
    shutil.rmtree(out / "generations")
    (out / "image_dropped").mkdir()
    assert cli(*curate_args(out, T_A)).returncode == 0
    assert all((out / name).is_symlink() for name in ("kept", "summary.json", "entry_counts.parquet"))
    assert not (out / "image_dropped").exists() and same(visible(out), refs[T_A])
