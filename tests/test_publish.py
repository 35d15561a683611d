"""`--out URL` on object storage: the run is staged in a local work directory
and published (gpu_curate/publish.py). Through the command line as a user
types it: in this process for memory:// (fsspec's memory store is
process-global), in a child process for kills (storelib's diskstore://,
whose objects outlive the process)."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import fsspec
import pyarrow.parquet as pq
import pytest
import storelib
from faultlib import balance_args, clean_run, curate_args, fault, same, visible
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractFileSystem

from gpu_curate import publish

T_A, T_B = 5, 50
KILLED = -9


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Default work directories go under this test's tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture
def url():
    """A fresh memory:// URL, removed afterwards."""
    name = f"/bucket-{uuid.uuid4().hex[:8]}"
    yield f"memory:/{name}/run"
    fs = fsspec.filesystem("memory")
    if fs.exists(name):
        fs.rm(name, recursive=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Clean local runs at T_A, then T_B: what a reader of the store must see."""
    out = tmp_path_factory.mktemp("reference") / "out"
    return {"a": clean_run(out, T_A), "b": clean_run(out, T_B)}


def gpu_curate(capsys, monkeypatch, *args) -> tuple[int, str, str]:
    """`gpu-curate ARGS` in this process: (exit status, stdout, stderr)."""
    from gpu_curate.cli import main

    monkeypatch.setattr(sys, "argv", ["gpu-curate", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *fragments: str) -> str:
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and err.startswith("gpu-curate: error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def store_of(url: str):
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path.rstrip("/")


def objects(fs, root: str) -> dict[str, int]:
    return {p[len(root) + 1 :]: info["size"] for p, info in fs.find(root, detail=True).items()}


def store_visible(fs, root: str) -> dict | None:
    """What a reader of the store sees through current.json (None before the
    first publish); faultlib.visible's checks that the outputs agree included."""
    if not fs.exists(f"{root}/current.json"):
        return None
    current = json.loads(fs.cat_file(f"{root}/current.json"))
    summary = json.loads(fs.cat_file(f"{root}/{current['summary']}"))
    kept = pq.read_table(f"{root}/{current['kept']}", filesystem=fs).sort_by("uid")
    counts = pq.read_table(f"{root}/{current['entry_counts']}", filesystem=fs)
    assert summary["rows_kept"] == kept.num_rows, "current.json names an incomplete generation"
    per_file = {k: v for k, v in summary.items() if k not in ("timings", "versions", "command", "curate_command")}
    return {"summary": per_file, "kept": kept, "counts": counts}


def staged(work: Path) -> dict[str, int]:
    """The objects a publish of work directory `work` must leave: run.json,
    matches/, the visible generation, current.json (sizes; current.json's not compared)."""
    generation = Path(work, "current").resolve()
    files = {"run.json": (work / "run.json").stat().st_size}
    files |= {f"matches/{p.name}": p.stat().st_size for p in (work / "matches").iterdir()}
    files |= {
        f"generations/{generation.name}/{p.relative_to(generation).as_posix()}": p.stat().st_size
        for p in generation.rglob("*")
        if p.is_file()
    }
    return files


def same_objects(there: dict[str, int], work: Path) -> None:
    expected = staged(work)
    assert set(there) == set(expected) | {"current.json"}
    assert {k: v for k, v in there.items() if k != "current.json"} == expected


# -- (a) what is published is what a local --out holds ----------------------------------------
def test_curate_to_a_url_publishes_the_outputs_of_a_local_run(url, reference, capsys, monkeypatch, tmp_path):
    code, out, err = gpu_curate(capsys, monkeypatch, *curate_args(url, T_A))
    assert code == 0, err
    work = publish.default_work_dir(url)
    assert f"staged in {work}" in out and f"published to {url}: 17 objects uploaded" in out
    fs, root = store_of(url)
    assert same(store_visible(fs, root), reference["a"])
    same_objects(objects(fs, root), work)
    outputs = publish.current_outputs(url)
    assert outputs["kept"] == f"{url}/generations/{outputs['generation']}/kept"
    with fsspec.open(outputs["summary"]) as f:
        assert json.load(f)["rows_kept"] == reference["a"]["kept"].num_rows

    again = gpu_curate(capsys, monkeypatch, *curate_args(url, T_A))  # nothing to do; the store is as it was
    assert again[0] == 0 and "already complete" in again[1] and "15 already there" in again[1], again
    assert same(store_visible(fs, root), reference["a"])


def test_a_work_dir_is_where_the_run_is_staged(url, reference, capsys, monkeypatch, tmp_path):
    work = tmp_path / "staging"
    code, _, err = gpu_curate(capsys, monkeypatch, *curate_args(url, T_A, "--work-dir", work))
    assert code == 0, err
    assert same(visible(work), reference["a"])  # the work dir is an ordinary local --out
    assert not publish.default_work_dir(url).exists()
    same_objects(objects(*store_of(url)), work)


# -- (b) an interrupted upload: current.json never names an incomplete generation --------------
def test_a_failed_upload_is_one_line_and_a_rerun_finishes_it(url, reference, capsys, monkeypatch):
    monkeypatch.setenv("GPU_CURATE_FAULT", "enospc:run/generations/*/kept/part-000001.parquet:before-upload")
    code, _, err = gpu_curate(capsys, monkeypatch, *curate_args(url, T_A))
    one_line_error(code, err, f"{url}: cannot publish (OSError: ", "rerun the same command to finish the upload")
    fs, root = store_of(url)
    assert store_visible(fs, root) is None and fs.exists(f"{root}/matches/_part-000002.json")
    monkeypatch.delenv("GPU_CURATE_FAULT")
    code, out, err = gpu_curate(capsys, monkeypatch, *curate_args(url, T_A))
    assert code == 0 and "already complete" in out, err
    assert same(store_visible(fs, root), reference["a"])
    same_objects(objects(fs, root), publish.default_work_dir(url))


KILL_POINTS = [
    ("run/run.json", "after-upload"),
    ("run/matches/_part-000001.json", "after-upload"),
    ("run/generations/*/kept/part-000001.parquet", "before-upload"),
    ("run/generations/*/summary.json", "after-upload"),
    ("run/current.json", "before-upload"),
    ("run/current.json", "after-upload"),
]


@pytest.mark.parametrize(
    "pattern, phase",
    [p if p == KILL_POINTS[2] else pytest.param(*p, marks=pytest.mark.slow) for p in KILL_POINTS],
)
def test_kill_during_the_upload_then_rerun(tmp_path, reference, pattern, phase):
    """kill -9 at an upload: the store shows no run or a complete one; the rerun publishes it all."""
    store, url = tmp_path / "store", "diskstore://bucket/run"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    killed = storelib.cli(store, *curate_args(url, T_A), env={**env, **fault("kill", pattern, phase)})
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    fs, root = LocalFileSystem(), str(store / "bucket" / "run")
    seen = store_visible(fs, root)
    if (pattern, phase) == ("run/current.json", "after-upload"):
        assert same(seen, reference["a"])  # published; only the removal of superseded generations was left
    else:
        assert seen is None  # nothing named yet: no reader takes a partial upload for a run
    rerun = storelib.cli(store, *curate_args(url, T_A), env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert same(store_visible(fs, root), reference["a"])
    same_objects(objects(fs, root), publish.default_work_dir(url))


@pytest.mark.slow
def test_kill_before_the_switch_of_a_rebalance_leaves_the_previous_run_visible(tmp_path, reference):
    store, url = tmp_path / "store", "diskstore://bucket/run"
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert storelib.cli(store, *curate_args(url, T_A), env=env).returncode == 0
    fs, root = LocalFileSystem(), str(store / "bucket" / "run")
    killed = storelib.cli(
        store, *balance_args(url, T_B), env={**env, **fault("kill", "run/current.json", "before-upload")}
    )
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    assert same(store_visible(fs, root), reference["a"])  # the new generation is there, not yet named
    assert len(fs.ls(f"{root}/generations")) == 2
    rerun = storelib.cli(store, *balance_args(url, T_B), env=env)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert same(store_visible(fs, root), reference["b"]) and len(fs.ls(f"{root}/generations")) == 1


# -- (c) rebalancing a published run ----------------------------------------------------------
def test_balance_of_a_url_switches_current_json_and_removes_the_old_generation(url, reference, capsys, monkeypatch):
    assert gpu_curate(capsys, monkeypatch, *curate_args(url, T_A))[0] == 0
    fs, root = store_of(url)
    old = publish.current_outputs(url)["generation"]
    code, out, err = gpu_curate(capsys, monkeypatch, *balance_args(url, T_B))
    assert code == 0, err
    assert "1 superseded generations removed" in out
    new = publish.current_outputs(url)["generation"]
    assert new != old and [p.rsplit("/", 1)[-1] for p in fs.ls(f"{root}/generations", detail=False)] == [new]
    assert same(store_visible(fs, root), reference["b"])
    same_objects(objects(fs, root), publish.default_work_dir(url))


def test_balance_of_a_url_with_nothing_published_is_one_line(url, capsys, monkeypatch, tmp_path):
    code, _, err = gpu_curate(capsys, monkeypatch, *balance_args(url, T_B))
    one_line_error(code, err, f"{url}: no current.json (no run was published here yet)")


def test_balance_of_a_url_on_another_machine_fetches_the_run(url, reference, capsys, monkeypatch, tmp_path):
    """Curated with one work dir, rebalanced with another (as on a second
    machine): the match index and counts come from the store; a fetch cut
    off by a full disk is redone by the rerun."""
    assert gpu_curate(capsys, monkeypatch, *curate_args(url, T_A, "--work-dir", tmp_path / "a"))[0] == 0
    other = tmp_path / "b"
    monkeypatch.setenv("GPU_CURATE_FAULT", "enospc:matches/_part-000001.json:before-rename")
    code, _, err = gpu_curate(capsys, monkeypatch, *balance_args(url, T_B, "--work-dir", other))
    one_line_error(code, err, "_part-000001.json: cannot write (No space left on device)")
    assert not (other / "run.json").exists()
    monkeypatch.delenv("GPU_CURATE_FAULT")
    code, out, err = gpu_curate(capsys, monkeypatch, *balance_args(url, T_B, "--work-dir", other))
    assert code == 0 and "fetching the match index and counts" in out, err
    fs, root = store_of(url)
    assert same(store_visible(fs, root), reference["b"]) and same(visible(other), reference["b"])
    assert [p.rsplit("/", 1)[-1] for p in fs.ls(f"{root}/generations", detail=False)] == [
        publish.current_outputs(url)["generation"]
    ]


def test_balance_of_a_local_run_into_a_url(url, reference, capsys, monkeypatch, tmp_path):
    local = tmp_path / "run"
    assert gpu_curate(capsys, monkeypatch, *curate_args(local, T_A))[0] == 0
    code, out, err = gpu_curate(capsys, monkeypatch, *balance_args(local, T_B, "--out", url))
    assert code == 0, err
    fs, root = store_of(url)
    assert same(store_visible(fs, root), reference["b"]) and same(visible(local), reference["a"])
    assert not fs.exists(f"{root}/matches")  # the match index stays with the run it belongs to


def test_work_dir_when_both_balance_outputs_are_urls_is_one_line(url, capsys, monkeypatch, tmp_path):
    code, _, err = gpu_curate(capsys, monkeypatch, *balance_args(url, T_B, "--out", url + "2", "--work-dir", tmp_path))
    one_line_error(code, err, "--work-dir: OUT and --out are both URLs")


def test_report_of_a_url_reads_the_store_and_uploads_the_report(url, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    assert gpu_curate(capsys, monkeypatch, *curate_args(url, T_A))[0] == 0
    code, out, err = gpu_curate(capsys, monkeypatch, "report", url)
    assert code == 0 and f"report in {url}/report/" in out, err
    work = publish.default_work_dir(url)
    assert gpu_curate(capsys, monkeypatch, "report", work)[0] == 0  # the same run's report, made locally
    got = store_listing(url)
    local = sorted(p.name for p in (work / "report").iterdir())
    assert sorted(n[len("report/") :] for n in got if n.startswith("report/")) == local
    assert got["report/datacard.md"] == (work / "report" / "datacard.md").read_bytes()


# -- (d) one run per URL --------------------------------------------------------------------
def test_a_different_run_into_the_same_url_is_refused_before_any_work(url, capsys, monkeypatch, tmp_path):
    assert gpu_curate(capsys, monkeypatch, *curate_args(url, T_A))[0] == 0
    before = objects(*store_of(url))
    other = tmp_path / "another-machine"  # its own work dir: only the store's run.json tells
    code, _, err = gpu_curate(capsys, monkeypatch, *curate_args(url, T_A, "--work-dir", other, "--text-column", "URL"))
    one_line_error(code, err, f"{url}: holds the outputs of a different run")
    assert not other.exists() and objects(*store_of(url)) == before


def test_a_url_holding_other_objects_is_refused(url, capsys, monkeypatch, tmp_path):
    fs, root = store_of(url)
    fs.pipe_file(f"{root}/notes.txt", b"not a run")
    code, _, err = gpu_curate(capsys, monkeypatch, *curate_args(url, T_A))
    one_line_error(code, err, f"{url}: holds objects but no run.json")
    assert not publish.default_work_dir(url).exists()


# -- (e) stores that cannot be used ---------------------------------------------------------
class _Unreachable(AbstractFileSystem):
    protocol = "unreachable"

    def ls(self, path, detail=True, **kwargs):
        raise ConnectionError("Could not connect to the endpoint URL: https://bucket.example/\nretries exhausted")


def test_an_unreachable_store_is_one_line_before_any_work(capsys, monkeypatch, tmp_path):
    fsspec.register_implementation("unreachable", _Unreachable, clobber=True)
    code, _, err = gpu_curate(capsys, monkeypatch, *curate_args("unreachable://bucket/run", T_A))
    one_line_error(code, err, "unreachable://bucket/run: cannot reach (ConnectionError: Could not connect")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "out, message",
    [
        ("nosuchprotocol://bucket/run", "nosuchprotocol://bucket/run: Protocol not known: nosuchprotocol"),
        ("ftp://127.0.0.1:1/run", "ftp://127.0.0.1:1/run: cannot reach (ConnectionRefusedError: "),
    ],
)
def test_a_bad_protocol_or_a_refused_connection_is_one_line(capsys, monkeypatch, tmp_path, out, message):
    code, _, err = gpu_curate(capsys, monkeypatch, *curate_args(out, T_A))
    one_line_error(code, err, message)
    assert not (tmp_path / "cache").exists()


def test_a_missing_filesystem_package_is_one_line(capsys, monkeypatch, tmp_path):
    try:
        import s3fs  # noqa: F401

        pytest.skip("s3fs is installed here")
    except ImportError:
        pass
    code, _, err = gpu_curate(capsys, monkeypatch, *curate_args("s3://bucket/run", T_A))
    one_line_error(code, err, "s3://bucket/run: Install s3fs to access S3")


# -- (f) --work-dir is for URLs --------------------------------------------------------------
@pytest.mark.parametrize("command", ["curate", "balance"])
def test_work_dir_with_a_local_out_is_refused(capsys, monkeypatch, tmp_path, command):
    out = tmp_path / "out"
    args = curate_args(out, T_A) if command == "curate" else balance_args(out, T_B)
    code, _, err = gpu_curate(capsys, monkeypatch, *args, "--work-dir", tmp_path / "work")
    one_line_error(code, err, "--work-dir is for an --out on object storage")
    assert not out.exists() and not (tmp_path / "work").exists()


# -- readers ---------------------------------------------------------------------------------
def test_current_outputs_of_a_url_with_nothing_published_is_one_line(url):
    with pytest.raises(publish.InputError, match=r"no current.json \(no run was published here yet\)$"):
        publish.current_outputs(url)


# -- match --out URL: shards written straight to the store ------------------------------------
def match_args(out, *extra) -> list:
    from faultlib import METADATA, POOL, ROWS_PER_PART

    return ["match", POOL, "--metadata", METADATA, "--text-column", "TEXT", "--partition-size", ROWS_PER_PART,
            "--out", out, *extra]  # fmt: skip


def store_listing(url) -> dict[str, bytes]:
    fs, root = store_of(url)
    return {p[len(root) + 1 :]: fs.cat_file(p) for p in fs.find(root)}


def test_match_to_a_url_writes_what_a_local_match_writes(url, capsys, monkeypatch, tmp_path):
    local = tmp_path / "matched"
    assert gpu_curate(capsys, monkeypatch, *match_args(local))[0] == 0
    code, _, err = gpu_curate(capsys, monkeypatch, *match_args(url))
    assert code == 0, err
    got = store_listing(url)
    assert sorted(got) == sorted(p.name for p in local.iterdir()) == [
        "_match.json", "part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]  # fmt: skip
    assert json.loads(got["_match.json"]) == json.loads((local / "_match.json").read_text())
    for name in ("part-000000.parquet", "part-000001.parquet", "part-000002.parquet"):
        with fsspec.open(f"{url}/{name}") as f:
            assert pq.read_table(f).equals(pq.read_table(local / name))


def test_match_to_a_url_that_failed_midway_is_replaced_by_its_rerun(url, capsys, monkeypatch, tmp_path):
    assert gpu_curate(capsys, monkeypatch, *match_args(url, "--partition-size", 500))[0] == 0  # 6 shards
    clean = store_listing(url)
    from gpu_curate import match_pool

    real_write = match_pool._StoreShards.write

    def write_then_fail(self, name, table):
        if name == "part-000001.parquet":
            raise OSError(28, "No space left on device")
        real_write(self, name, table)

    monkeypatch.setattr(match_pool._StoreShards, "write", write_then_fail)
    with pytest.raises(OSError):
        match_pool.match_pool(_match_config(url))
    left = store_listing(url)
    assert "_match.pending" in left and "_match.json" not in left  # visibly incomplete
    monkeypatch.setattr(match_pool._StoreShards, "write", real_write)
    assert gpu_curate(capsys, monkeypatch, *match_args(url))[0] == 0  # 3 shards now: the 6 are replaced
    again = store_listing(url)
    assert "_match.pending" not in again and sorted(again) == sorted(n for n in clean if n < "part-000003")
    assert json.loads(again["_match.json"])["rows_in"] == json.loads(clean["_match.json"])["rows_in"] == 3000


def _match_config(url):
    from faultlib import config

    return config(url, T_A)


def test_match_into_a_url_it_did_not_write_is_refused(url, capsys, monkeypatch):
    fs, root = store_of(url)
    fs.pipe_file(f"{root}/notes.txt", b"someone else's")
    code, _, err = gpu_curate(capsys, monkeypatch, *match_args(url))
    one_line_error(code, err, f"--out {url}: holds objects that `gpu-curate match` did not write; use a new --out")
    assert store_listing(url) == {"notes.txt": b"someone else's"}


def test_rebalancer_open_of_a_url_points_at_the_work_dir(url):
    import gpu_curate as gc

    with pytest.raises(
        gc.CurateError, match=r"^Rebalancer.open memory:/.*: takes a local .*point this at that work dir"
    ):
        gc.Rebalancer.open(url)
