"""Pool formats and bad input: every reader gives the same counts; every user
error is one clear line naming the file/row; skips are counted."""

import gzip
import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpu_curate as gc
from gpu_curate import demo_data
from gpu_curate.pipeline import CurateConfig, curate

from oracle import naive_match, padded_entries

METADATA = demo_data.METADATA


def curate_here(pool, out, **kw):
    kw = {"metadata": str(METADATA), "t": 5, "partition_rows": 500, **kw}
    inputs = tuple(str(p) for p in pool) if isinstance(pool, list) else (str(pool),)
    return curate(CurateConfig(inputs=inputs, out=str(out), **kw), progress=False)


def counts(out):
    return pq.read_table(out / "entry_counts.parquet").column("count").to_numpy()


@pytest.fixture(scope="module")
def texts():
    return pq.read_table(demo_data.POOL).column("TEXT").to_pylist()[:1500]


def _write_all_formats(d, texts):
    clean = [t.replace("\t", " ").replace("\n", " ").replace("\r", " ") for t in texts]  # one line per row
    pq.write_table(pa.table({"text": clean}), d / "a.parquet")
    (d / "b.txt").write_text("\n".join(clean) + "\n", encoding="utf-8")
    with gzip.open(d / "c.txt.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(clean) + "\n")
    (d / "d.jsonl").write_text(
        "".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(clean)), encoding="utf-8"
    )
    (d / "e.tsv").write_text(
        "".join(f"{t}\thttp://x/{i}.jpg\n" for i, t in enumerate(clean)), encoding="utf-8"
    )  # CC3M: no header
    pa.csv.write_csv(pa.table({"url": [f"u{i}" for i in range(len(clean))], "text": clean}), d / "f.csv")
    with gzip.open(d / "g.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps({"text": t}) + "\n" for t in clean))
    return clean


def test_every_format_gives_the_same_counts(tmp_path, texts):
    import pyarrow.csv  # noqa: F401  (pa.csv)

    clean = _write_all_formats(tmp_path, texts)
    expected = gc.match(clean, gc.Metadata.load(METADATA)).counts(86554)
    for f in sorted(tmp_path.iterdir()):
        summary = curate_here(f, tmp_path / "out" / f.name)
        assert summary["rows_in"] == len(clean), f.name
        assert np.array_equal(counts(tmp_path / "out" / f.name), expected), f.name


def test_a_directory_pool_reads_every_file(tmp_path, texts):
    import pyarrow.csv  # noqa: F401

    (tmp_path / "pool").mkdir()
    clean = _write_all_formats(tmp_path / "pool", texts)
    summary = curate_here(tmp_path / "pool", tmp_path / "out")
    assert summary["rows_in"] == 7 * len(clean) and len(summary["files"]) == 7
    kept = pq.read_table(tmp_path / "out" / "kept")
    assert kept.column("text").type == pa.large_string() or kept.column("text").type == pa.string()


def test_null_texts_are_counted_and_never_kept(tmp_path):
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": ["a dog", None, "a cat", None]}), pool)
    summary = curate_here(pool, tmp_path / "out", t=100)
    assert summary["rows_null_text"] == 2 and summary["rows_matched"] == 2 and summary["rows_kept"] == 2


def test_invalid_utf8_matches_on_its_bytes_and_is_counted(tmp_path):
    """docs/semantics.md section 2: a text that is not valid UTF-8 matches on its raw bytes
    (counted); a kept one is written with its bytes untouched (counted)."""
    pool = tmp_path / "pool.txt"
    pool.write_bytes(b"a dog\nbad \xff\xfe dog\na cat\n\xc0\xaf dog\n")
    summary = curate_here(pool, tmp_path / "out", t=100)
    assert summary["rows_in"] == 4 and summary["rows_invalid_utf8"] == 2
    assert summary["rows_matched"] == 4 and summary["rows_kept"] == 4 and summary["rows_kept_invalid_utf8"] == 2
    kept = pq.read_table(tmp_path / "out" / "kept").sort_by("uid").column("text").cast(pa.large_binary())
    assert kept.to_pylist() == [b"a dog", b"bad \xff\xfe dog", b"a cat", b"\xc0\xaf dog"]


def test_strict_utf8_names_the_row(tmp_path):
    pool = tmp_path / "pool.txt"
    pool.write_bytes(b"a dog\na cat\nbad \xff dog\n")
    with pytest.raises(gc.InputError, match=r"pool.txt row 2: text is not valid UTF-8"):
        curate_here(pool, tmp_path / "out", strict_utf8=True)


def test_empty_files_are_zero_rows(tmp_path):
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "empty.txt").write_text("")
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), tmp_path / "pool" / "empty.parquet")
    pq.write_table(pa.table({"text": ["a dog"]}), tmp_path / "pool" / "one.parquet")
    summary = curate_here(tmp_path / "pool", tmp_path / "out", t=100)
    assert summary["rows_in"] == 1 and summary["rows_kept"] == 1
    assert summary["files"]["empty.txt"]["rows_in"] == 0


def test_corrupt_parquet_names_the_file(tmp_path):
    pool = tmp_path / "broken.parquet"
    pool.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(gc.InputError, match=r"broken.parquet: not a readable parquet file"):
        curate_here(pool, tmp_path / "out")
    assert not (tmp_path / "out" / "summary.json").exists()


def test_missing_column_names_file_and_columns(tmp_path):
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"caption": ["a dog"]}), pool)
    with pytest.raises(gc.InputError, match=r"pool.parquet: no column 'text' for --text-column \(columns: caption\)"):
        curate_here(pool, tmp_path / "out")


def test_null_uid_names_the_row(tmp_path):
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "c"], "uid": ["x", None, "z"]}), pool)
    with pytest.raises(gc.InputError, match=r"pool.parquet row 1: null uid in column 'uid'"):
        curate_here(pool, tmp_path / "out")


def test_a_1mb_text_matches_exactly(tmp_path):
    rng = np.random.default_rng(0)
    words = ["dog", "cat", "hot dog", "the", "a", "sea lion", ",", "."]
    big = " ".join(rng.choice(words, 200_000).tolist())[: 1 << 20]
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": [big, "a sea lion", None]}), pool)
    metadata = tmp_path / "md.txt"
    metadata.write_text("dog\nhot dog\nsea lion\nlion sea\ncat dog cat\n")
    curate_here(pool, tmp_path / "out", metadata=str(metadata), t=100)
    md = gc.Metadata.load(metadata)
    expected = np.zeros(len(md), np.uint64)
    for row in naive_match([big, "a sea lion", None], padded_entries(md)):
        expected[row] += 1
    assert np.array_equal(counts(tmp_path / "out"), expected)


def test_metadata_with_an_empty_line_names_it(tmp_path):
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": ["a dog"]}), pool)
    metadata = tmp_path / "md.txt"
    metadata.write_text("dog\n\ncat\n")
    with pytest.raises(gc.MetadataError, match=r"md.txt line 2: empty entry"):
        curate_here(pool, tmp_path / "out", metadata=str(metadata))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gpu_curate", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["curate", "/nonexistent/pool.parquet", "--metadata", str(METADATA), "--out", "{out}"],
            "/nonexistent/pool.parquet: no such file or directory",
        ),
        (["curate", str(demo_data.POOL), "--metadata", str(METADATA), "--out", "{out}"], "no column 'text'"),
        (
            [
                "curate",
                str(demo_data.POOL),
                "--metadata",
                "/nonexistent.json",
                "--out",
                "{out}",
                "--text-column",
                "TEXT",
            ],
            "/nonexistent.json",
        ),
        (["balance", "{out}"], "no finished pass 1 here"),
    ],
)
def test_cli_user_errors_are_one_line_exit_2(tmp_path, args, message):
    res = _cli(*[a.replace("{out}", str(tmp_path / "out")) for a in args], "--in-process")
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("gpu-curate: error: ") and message in res.stderr


def test_cli_device_gpu_without_a_gpu_is_one_line(tmp_path):
    from gpu_curate import gpu_engine

    if gpu_engine.available():
        pytest.skip("a GPU engine is present here")
    res = _cli(
        "curate", str(demo_data.POOL), "--metadata", str(METADATA), "--out", str(tmp_path / "o"), "--device", "gpu"
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "gpu" in res.stderr.lower()
    assert not (tmp_path / "o").exists()


def test_a_uid_column_is_used_in_text_formats_too(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "a dog", "uid": "first"}\n{"text": "a cat", "uid": "second"}\n', encoding="utf-8")
    curate_here(pool, tmp_path / "out", t=100)
    assert sorted(pq.read_table(tmp_path / "out" / "kept").column("uid").to_pylist()) == ["first", "second"]


def test_an_id_column_beside_a_uid_column_is_refused(tmp_path):
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": ["a dog"], "uid": ["x"], "key": ["k"]}), pool)
    with pytest.raises(gc.InputError, match=r"pool.parquet: has a column 'uid' but --id-column is 'key'"):
        curate_here(pool, tmp_path / "out", id_column="key")
    summary = curate_here(pool, tmp_path / "ok", id_column="uid", t=100)
    assert summary["rows_kept"] == 1


def test_an_explicit_id_column_becomes_the_uid(tmp_path):
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": ["a dog", "a cat"], "key": [7, 9]}), pool)
    curate_here(pool, tmp_path / "out", id_column="key", t=100)
    kept = pq.read_table(tmp_path / "out" / "kept")
    assert sorted(kept.column("uid").to_pylist()) == [7, 9] and "key" in kept.column_names


def test_a_task_error_on_the_cluster_is_one_line_too(tmp_path):
    """A null uid is found only by the pass-1 task that reads its row, on a worker."""
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": ["a dog"] * 20, "uid": [f"u{i}" for i in range(19)] + [None]}), pool)
    res = _cli("curate", str(pool), "--metadata", str(METADATA), "--out", str(tmp_path / "o"), "--quiet")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"gpu-curate: error: {pool} row 19: null uid in column 'uid'"]


# -- line ranges of big text files ------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.sampled_from(["", "a", "bb b", "x\r", "ü\tz"]), max_size=30),
    final_newline=st.booleans(),
    header=st.booleans(),
    rows=st.integers(1, 8),
    block=st.sampled_from([1, 2, 3, 7, 64, 1 << 20]),
)
def test_line_ranges_cover_the_file_in_whole_lines(tmp_path_factory, lines, final_newline, header, rows, block):
    from gpu_curate import pool as io

    body = ("\n".join(lines) + ("\n" if final_newline and lines else "")).encode()
    data = (b"text\tu\n" if header else b"") + body
    path = tmp_path_factory.mktemp("ranges") / "f.tsv"
    path.write_bytes(data)
    io._BLOCK, saved = block, io._BLOCK
    try:
        ranges = io.line_ranges(path, rows, skip_header=header)
    finally:
        io._BLOCK = saved
    assert b"".join(data[s:e] for s, e, _, _ in ranges) == body
    first = 0
    for s, e, first_row, n in ranges:
        chunk = data[s:e].split(b"\n")
        if chunk[-1] == b"":
            chunk.pop()
        assert (first_row, n) == (first, len(chunk)) and n <= rows
        first += n


@pytest.mark.parametrize("fmt", ["txt", "tsv", "tsv-header"])
def test_big_text_files_split_into_line_ranges_with_the_same_result(tmp_path, texts, fmt):
    lines = [t.replace("\t", " ").replace("\n", " ").replace("\r", " ") for t in texts]
    lines[5] = lines[17] = ""  # blank lines are rows too
    path = tmp_path / f"pool.{fmt[:3]}"
    if fmt == "txt":
        path.write_text("\n".join(lines), encoding="utf-8")  # no final newline
    else:
        header = "text\turl\n" if fmt == "tsv-header" else ""
        path.write_text(header + "".join(f"{t}\thttp://x/{i}\r\n" for i, t in enumerate(lines)), encoding="utf-8")
    whole = curate_here(path, tmp_path / "whole", partition_rows=10**6)
    split = curate_here(path, tmp_path / "split", partition_rows=97)
    assert len(split["files"]) == 1 and len(list((tmp_path / "split" / "matches").glob("part-*.arrow"))) == 16
    assert whole["rows_in"] == split["rows_in"] == len(lines)
    assert np.array_equal(counts(tmp_path / "whole"), counts(tmp_path / "split"))
    a = pq.read_table(tmp_path / "whole" / "kept").sort_by("uid")
    assert a.num_rows > 0 and a.equals(pq.read_table(tmp_path / "split" / "kept").sort_by("uid"))
    texts_by_row = {f"{path.name}:{i}": t for i, t in enumerate(lines)}
    assert all(texts_by_row[u] == t for u, t in zip(a.column("uid").to_pylist(), a.column("text").to_pylist()))
