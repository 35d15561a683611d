"""The command line as a user types it: exit status, the one line on stderr,
and what is left in --out. Each test runs `python -m gpu_curate` in a child process."""

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gpu_curate as gc
from gpu_curate import demo_data
from gpu_curate.summary import percent

REPO = Path(__file__).resolve().parents[1]
POOL = str(demo_data.POOL)  # columns URL, TEXT
METADATA = str(demo_data.METADATA)


def cli(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpu_curate", *map(str, args)], capture_output=True, text=True, **kw)


def curate(out, *options, pool=POOL, **kw):
    return cli("curate", pool, "--metadata", METADATA, "--out", out, "--t", 5, "--quiet", *options, **kw)


def one_line_error(res, *fragments) -> str:
    """Exit status 2 and exactly one line on stderr, holding every fragment."""
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("gpu-curate: error: "), res.stderr
    for fragment in fragments:
        assert fragment in res.stderr
    return res.stderr


def outputs(out: Path) -> dict:
    """Every file under --out with its modification time (empty: --out does not exist)."""
    return {p.relative_to(out): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} if out.exists() else {}


# -- 1. every check before any work; a failed run never locks --out ----------------------
@pytest.mark.parametrize(
    "first_line, error",
    [
        ("caption\turl", "no column 'text' for --text-column (columns: caption, url)"),
        ("image_id\tcaption", "no column 'text' for --text-column (columns: image_id, caption)"),
    ],
)
def test_a_tsv_header_without_the_text_column_is_one_line_not_a_headerless_file(tmp_path, first_line, error):
    """Only CC3M's layout (a text, then a URL) is headerless; a header naming
    other columns is not read as a row while another column is matched."""
    pool = tmp_path / "pool.tsv"
    pool.write_text(first_line + "\na dog\thttp://x/1.jpg\n", encoding="utf-8")
    one_line_error(curate(tmp_path / "out", "--in-process", pool=pool), error)


def test_a_headerless_cc3m_tsv_names_its_columns_text_and_url(tmp_path):
    pool = tmp_path / "cc3m.tsv"
    pool.write_text("a dog on a mat\thttp://x/1.jpg\na cat\thttp://x/2.jpg\n", encoding="utf-8")
    res = cli("match", pool, "--metadata", METADATA, "--out", tmp_path / "m")
    assert res.returncode == 0, res.stderr
    table = pq.read_table(tmp_path / "m" / "part-000000.parquet")
    assert table.column("text").to_pylist() == ["a dog on a mat", "a cat"]
    assert table.column("url").to_pylist() == ["http://x/1.jpg", "http://x/2.jpg"]


def test_a_mistyped_column_fails_in_one_line_and_leaves_out_reusable(tmp_path):
    out = tmp_path / "out"
    res = curate(out, "--in-process")  # the default --text-column is text; the pool has TEXT
    one_line_error(res, f"{POOL}: no column 'text' for --text-column (columns: URL, TEXT); did you mean 'TEXT'?")
    assert not out.exists()
    fixed = curate(out, "--in-process", "--text-column", "TEXT")
    assert fixed.returncode == 0, fixed.stderr
    assert (out / "summary.json").exists()


def test_a_run_that_failed_before_any_shard_leaves_out_to_another_run(tmp_path):
    """A null id is found in pass 1 (run.json is written by then): the next, different command may use --out."""
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": ["a dog", "a cat"], "key": ["k0", None]}), pool)
    out = tmp_path / "out"
    one_line_error(curate(out, "--in-process", "--id-column", "key", pool=pool), "row 1: null uid in column 'key'")
    assert not list((out / "matches").glob("*part-*"))
    res = curate(out, "--in-process", pool=pool)  # derived uids now
    assert res.returncode == 0, res.stderr
    assert sorted(pq.read_table(out / "kept").column("uid").to_pylist()) == ["pool.parquet:0", "pool.parquet:1"]
    other = curate(out, "--in-process", "--partition-size", "1", pool=pool)  # shards exist now: refused
    one_line_error(other, "holds the outputs of a different run")


@pytest.mark.parametrize(
    "option, value", [("--t", "0"), ("--t", "-3"), ("--t", "nan"), ("--t", "inf"), ("--t-en", "0"), ("--t-en", "nan")]
)
def test_thresholds_must_be_finite_and_positive(tmp_path, option, value):
    res = curate(tmp_path / "out", "--text-column", "TEXT", option, value)
    one_line_error(res, f"{option} must be a finite number above 0")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--columns", "URL,TXET"], "no column 'TXET' for --columns (columns: URL, TEXT); did you mean 'TEXT'?"),
        (["--image-column", "url"], "no column 'url' for --image-column (columns: URL, TEXT); did you mean 'URL'?"),
        (["--lang-column", "language"], "no column 'language' for --lang-column (columns: URL, TEXT)"),
        (["--id-column", "key"], "no column 'key' for --id-column (columns: URL, TEXT)"),
        (["--seed", "-1"], "--seed must be in [0, 2**64)"),
        (["--partition-size", "lots"], "--partition-size: 'lots' is neither a row count nor a size"),
    ],
)
def test_every_named_column_and_number_is_checked_up_front(tmp_path, options, message):
    res = curate(tmp_path / "out", "--text-column", "TEXT", *options)
    one_line_error(res, message)
    assert not (tmp_path / "out").exists()


def test_columns_of_text_formats_are_checked_too(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"caption": "a dog", "uid": "x"}\n', encoding="utf-8")
    one_line_error(curate(tmp_path / "out", pool=pool), "no column 'text' for --text-column (columns: caption, uid)")
    assert not (tmp_path / "out").exists()
    txt = tmp_path / "pool.txt"  # a txt pool's one column takes the name --text-column gives it
    txt.write_text("a dog\n", encoding="utf-8")
    ok = curate(tmp_path / "out", "--text-column", "Text", pool=txt)
    assert ok.returncode == 0, ok.stderr


def test_datacomp_subset_needs_a_string_uid_column_and_says_so_at_once(tmp_path):
    subset = tmp_path / "subset.npy"
    derived = curate(tmp_path / "out", "--text-column", "TEXT", "--datacomp-subset", subset)
    one_line_error(derived, "--datacomp-subset needs DataComp uids (32 hex digits)", "<file>:<row>")
    pool = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"text": ["a dog"], "uid": [7]}), pool)
    one_line_error(curate(tmp_path / "out", "--datacomp-subset", subset, pool=pool), "column 'uid' holds int64")
    assert not (tmp_path / "out").exists() and not subset.exists()


def test_datacomp_uid_values_fail_in_pass_1_naming_the_row(tmp_path):
    pool = tmp_path / "pool.parquet"
    uids = ["0" * 32, "f" * 32, "not-a-datacomp-uid"] + ["a" * 32] * 7
    pq.write_table(pa.table({"text": ["a dog"] * 10, "uid": uids}), pool)
    out = tmp_path / "out"
    res = curate(out, "--in-process", "--datacomp-subset", tmp_path / "s.npy", pool=pool)
    one_line_error(res, f"{pool} row 2: uid 'not-a-datacomp-uid' (column 'uid') is not 32 hex digits")
    assert not (out / "kept").exists() and not (out / "entry_counts.parquet").exists()  # before pass 2


def test_per_language_metadata_needs_a_language_column_and_english(tmp_path):
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": ["a dog", "een hond"], "lang": ["en", "nl"]}), pool)
    by_lang = tmp_path / "by_lang"
    by_lang.mkdir()
    (by_lang / "nl.txt").write_text("hond\n", encoding="utf-8")
    out = tmp_path / "out"
    one_line_error(curate(out, "--in-process", "--metadata", by_lang, pool=pool), "needs the pool's language column")
    no_en = curate(out, "--in-process", "--metadata", by_lang, "--lang-column", "lang", pool=pool)
    one_line_error(no_en, "per-language metadata needs an 'en' list")
    assert not out.exists()
    matched = cli("match", pool, "--metadata", by_lang, "--lang-column", "lang", "--out", out)  # no sampling: fine
    assert matched.returncode == 0, matched.stderr
    assert pq.read_table(out).column("matched_entry_ids").to_pylist() == [[], [0]]


@pytest.mark.parametrize(
    "options, message",
    [
        (["--in-process", "--workers", "2"], "--in-process runs no cluster; drop --workers"),
        (["--in-process", "--memory-limit", "4GB"], "--in-process runs no cluster; drop --memory-limit"),
        (["--in-process", "--scheduler-address", "tcp://h:8786"], "drop --scheduler-address"),
        (["--in-process", "--dashboard"], "drop --dashboard"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
        (["--scheduler-address", "tcp://h:8786", "--workers", "2"], "--scheduler-address uses a running cluster"),
        (["--memory-limit", "lots"], "--memory-limit: 'lots' is not a size like 8GB"),
    ],
)
def test_conflicting_cluster_options_are_refused(tmp_path, options, message):
    one_line_error(curate(tmp_path / "out", "--text-column", "TEXT", *options), message)
    assert not (tmp_path / "out").exists()


# -- 3. one line for every failure, a calm Ctrl-C ---------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    res = curate(tmp_path / "out", "--text-column", "TEXT", "--scheduler-address", address, timeout=120)
    one_line_error(res, f"--scheduler-address {address}: cannot connect")
    assert not (tmp_path / "out").exists()


def test_ctrl_c_of_a_two_worker_run_is_one_line_and_the_rerun_resumes(tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it:
    the workers get it too, and none may print a traceback."""
    pool = tmp_path / "pool.parquet"
    pq.write_table(pq.read_table(demo_data.POOL).slice(0, 1000), pool)  # 100 partitions of 10 rows
    out = tmp_path / "out"
    args = ["curate", pool, "--metadata", METADATA, "--out", out, "--text-column", "TEXT", "--t", 5, "--quiet"]
    args += ["--partition-size", 10, "--workers", 2, "--threads-per-worker", 1]
    cmd = [sys.executable, "-m", "gpu_curate", *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while len(list((out / "matches").glob("_part-*.json"))) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be interrupted: " + proc.communicate()[1]
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert stderr == "gpu-curate: interrupted; rerun the same command to resume\n"
    assert not (out / "summary.json").exists()

    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0 and rerun.stderr == "", rerun.stderr
    assert "resumed" in rerun.stdout and "rows/s" not in rerun.stdout
    fresh = curate(tmp_path / "fresh", "--in-process", "--text-column", "TEXT", pool=pool)
    assert fresh.returncode == 0, fresh.stderr
    assert pq.read_table(out / "kept").sort_by("uid").equals(pq.read_table(tmp_path / "fresh" / "kept").sort_by("uid"))


def test_no_dashboard_and_no_port_warning_when_8787_is_busy(tmp_path):
    with socket.socket() as busy:
        try:
            busy.bind(("", 8787))
            busy.listen()
        except OSError:
            pass  # busy already: the very case this test is about
        res = curate(tmp_path / "out", "--text-column", "TEXT", "--workers", 1)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert not re.search(r"^dashboard:", res.stdout, re.M)


def test_dashboard_on_request(tmp_path):
    import importlib.util

    res = curate(tmp_path / "out", "--text-column", "TEXT", "--workers", 1, "--dashboard")
    if importlib.util.find_spec("bokeh") is None:
        one_line_error(res, "--dashboard needs bokeh")
    else:
        assert res.returncode == 0 and res.stderr == "", res.stderr
        assert re.search(r"^dashboard: http://\S+:\d+/status$", res.stdout, re.M), res.stdout


def test_a_rerun_of_a_finished_run_says_it_is_complete(tmp_path):
    out = tmp_path / "out"
    first = curate(out, "--in-process", "--text-column", "TEXT")
    assert first.returncode == 0 and "rows/s" in first.stdout
    before = outputs(out)
    again = curate(out, "--in-process", "--text-column", "TEXT")
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stdout and "rows kept" in again.stdout and "rows/s" not in again.stdout
    assert outputs(out) == before
    other_t = curate(out, "--in-process", "--text-column", "TEXT", "--t", 7)  # same pass 1, new sampling: work to do
    assert other_t.returncode == 0 and "already complete" not in other_t.stdout
    assert json.loads((out / "summary.json").read_text())["t"] == 7


# -- 4. version, help, percentages ------------------------------------------------------
def test_version():
    res = cli("--version")
    assert res.returncode == 0 and res.stdout == f"gpu-curate {gc.__version__}\n"


@pytest.mark.parametrize("command", ["curate", "match", "balance", "metadata build", "metadata stats"])
def test_boolean_options_show_as_flags_in_help(command):
    res = cli(*command.split(), "--help", env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    assert "<bool>" not in res.stdout
    flags = {"curate": ["--in-process", "--dashboard", "--strict-utf8"], "match": ["--strict-utf8"]}
    for flag in flags.get(command, []):
        assert re.search(rf"^\s+{flag}\s\s", res.stdout, re.M) and f"--no-{flag[2:]}" not in res.stdout


def test_percentages_never_round_a_part_to_all_or_nothing():
    assert percent(2999, 3000) == ">99.9%" and percent(1, 3000) == "<0.1%"
    assert percent(3000, 3000) == "100.0%" and percent(0, 3000) == "0.0%" and percent(1, 3) == "33.3%"


@given(st.integers(1, 10**12).flatmap(lambda whole: st.tuples(st.integers(0, whole), st.just(whole))))
def test_percent_is_the_share_rounded_and_never_100_or_0_unless_it_is(part_whole):
    part, whole = part_whole
    text = percent(part, whole)
    assert (text == "100.0%") == (part == whole) and (text == "0.0%") == (part == 0)
    if text[0].isdigit():
        assert math.isclose(float(text[:-1]), 100 * part / whole, abs_tol=0.05 + 1e-9)


# -- match: a pool in, every row's match set out ----------------------------------------
def test_match_reads_a_pool_like_curate_and_writes_uid_and_string_text(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    texts = [t.replace("\n", " ").replace("\r", " ") for t in pq.read_table(demo_data.POOL).column("TEXT").to_pylist()]
    pq.write_table(pa.table({"text": texts[:400]}), pool / "a.parquet")
    (pool / "b.txt").write_bytes("\n".join(texts[400:600]).encode() + b"\n\xff\xfe bad dog\n")
    out = tmp_path / "matched"
    res = cli("match", pool, "--metadata", METADATA, "--out", out, "--partition-size", 150)
    assert res.returncode == 0, res.stderr
    table = pq.read_table(out)
    assert table.schema.field("text").type in (pa.string(), pa.large_string())
    table = table.set_column(table.column_names.index("text"), "text", table.column("text").cast(pa.large_binary()))
    lines = (pool / "b.txt").read_bytes().split(b"\n")[:-1]
    assert table.num_rows == 400 + len(lines) and len(list(out.glob("part-*.parquet"))) == 5
    by_uid = dict(zip(table.column("uid").to_pylist(), table.to_pylist()))
    assert by_uid["a.parquet:7"]["text"] == texts[7].encode()
    assert by_uid[f"b.txt:{len(lines) - 1}"]["text"] == b"\xff\xfe bad dog"  # its bytes, untouched
    md = gc.Metadata.load(METADATA)
    expected = gc.match(pa.array([row["text"] for row in by_uid.values()], pa.large_binary()), md)
    got = [row["matched_entry_ids"] for row in by_uid.values()]
    assert got == [expected.entry_ids[a:b].tolist() for a, b in zip(expected.offsets[:-1], expected.offsets[1:])]
    assert got[-1]  # the invalid text matched on its bytes ("bad", "dog")
    assert "invalid UTF-8 1 (matched on their bytes)" in res.stdout

    again = cli("match", pool / "a.parquet", "--metadata", METADATA, "--out", out)  # replaces its own output
    assert again.returncode == 0, again.stderr
    assert pq.read_table(out).num_rows == 400


def test_match_refuses_an_out_it_did_not_write_and_leaves_nothing_when_it_fails(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    one_line_error(
        cli("match", POOL, "--metadata", METADATA, "--out", foreign, "--text-column", "TEXT"), "did not write"
    )
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": ["a dog"] * 10, "uid": ["u"] * 9 + [None]}), pool)
    one_line_error(cli("match", pool, "--metadata", METADATA, "--out", tmp_path / "m", "--partition-size", 5), "row 9")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign", "pool.parquet"]


# -- 4. the repository stands on its own ------------------------------------------------
def test_nothing_in_the_repository_points_outside_it():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    outside = re.compile(r"shared/docs|SPEC\.md|DESIGN\.md|\bSPEC (section|§)")
    found = [
        f"{name}:{n}"
        for name in tracked.stdout.split()
        if name != "tests/test_cli.py"  # this test names what it looks for
        and (REPO / name).suffix in (".py", ".md", ".toml", ".cuh", ".cu", ".cpp", ".txt", "")
        and (REPO / name).is_file()
        for n, line in enumerate((REPO / name).read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if outside.search(line)
    ]
    assert found == []
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for doc in ("docs/semantics.md", "docs/design.md", "docs/outputs.md"):
        assert f"]({doc})" in readme and (REPO / doc).is_file()


def test_a_file_url_out_is_the_local_directory(tmp_path):
    res = cli(
        "curate",
        demo_data.POOL,
        "--metadata",
        METADATA,
        "--text-column",
        "TEXT",
        "--t",
        "5",
        "--in-process",
        "--quiet",
        "--out",
        f"file://{tmp_path / 'curated'}",
    )
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "curated" / "summary.json").exists()
