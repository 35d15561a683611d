"""Reading the pool: pass 2's re-read of kept rows, WebDataset tars, finding files.

    python benchmarks/bench_pool.py rows --how read_rows --kept 0.05 --row-group 1000
    python benchmarks/bench_pool.py rows --how take --kept 0.05 --row-group 1000
    python benchmarks/bench_pool.py tar --samples 10000 --image-kb 40
    python benchmarks/bench_pool.py find --shards 5000 [--verify]

Each run does one thing once and checks its answer (exit 1 on a wrong one),
so a whole-process timer (`/usr/bin/time -v`, hyperfine) can compare two
runs. The data is built once under benchmarks/out/ (deterministic given the
arguments) and reused, so a timed run only reads.

- rows: a 1M-row parquet file (the English texts of ../shared/data resampled,
  seed 0; columns text, url) with row groups of --row-group rows, cut into
  partitions of 100k rows; in each, a --kept share of the rows (random,
  seed 1) is read again, as pass 2 does: `read_rows` (only the row groups
  holding them) or `take` (read the partition, then take); `none` reads
  nothing (start-up and planning alone). Check: partition 0's rows by the
  other way.
- tar: one WebDataset tar of --samples samples (a --image-kb random .jpg, a
  .txt, a .json with the uid); `read_tar` streams it. Check: every text and
  uid.
- find: an img2dataset folder of --shards shards (NNNNN.parquet of 100 rows,
  NNNNN.tar, NNNNN_stats.json); `find_pool` + `input_identity` (footer
  digests; --verify: blake2b of every file). Check: the counts found and
  skipped.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from gpu_curate import webdataset  # noqa: E402
from gpu_curate.identity import input_identity  # noqa: E402
from gpu_curate.pool import find_pool, plan_partitions  # noqa: E402
from gpu_curate.readers import read_partition, read_rows  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
ROWS, PARTITION = 1_000_000, 100_000


def fail(message: str) -> None:
    print(f"WRONG: {message}")
    sys.exit(1)


def rows_pool(row_group: int) -> Path:
    path = OUT / f"rows_{ROWS}_{row_group}.parquet"
    if not path.exists():
        texts = pa.array(common.english_texts(ROWS, seed=0), pa.large_string())
        urls = pa.array([f"https://img.example/{i}.jpg" for i in range(ROWS)])
        OUT.mkdir(exist_ok=True)
        pq.write_table(pa.table({"text": texts, "url": urls}), path.with_suffix(".tmp"), row_group_size=row_group)
        path.with_suffix(".tmp").rename(path)
    return path


def bench_rows(args) -> None:
    parts = plan_partitions(find_pool([str(rows_pool(args.row_group))]).files, PARTITION)
    rng = np.random.default_rng(1)
    picks = [np.flatnonzero(rng.random(PARTITION) < args.kept) for _ in parts]
    read = {
        "read_rows": lambda part, rows: read_rows(part, rows, None, "text"),
        "take": lambda part, rows: read_partition(part, None, "text").take(pa.array(rows)),
    }
    if args.how == "none":
        return
    other = "take" if args.how == "read_rows" else "read_rows"
    total = 0
    for k, (part, rows) in enumerate(zip(parts, picks)):
        table = read[args.how](part, rows)
        if k == 0 and not table.equals(read[other](part, rows)):
            fail(f"{args.how} and {other} disagree on partition 0")
        total += table.num_rows
    if total != sum(len(p) for p in picks):
        fail(f"{total} rows read, {sum(len(p) for p in picks)} asked")
    print(json.dumps({"bench": "rows", **vars(args), "rows_read": total, "partitions": len(parts)}))


def tar_pool(samples: int, image_kb: int) -> tuple[Path, list[str]]:
    texts = common.english_texts(samples, seed=2)
    path = OUT / f"shard_{samples}_{image_kb}.tar"
    if not path.exists():
        OUT.mkdir(exist_ok=True)
        rng = np.random.default_rng(3)
        with tarfile.open(path.with_suffix(".tmp"), "w") as tar:
            for i, text in enumerate(texts):
                for suffix, data in (
                    ("jpg", rng.integers(0, 256, image_kb * 1024, np.uint8).tobytes()),
                    ("txt", text.encode()),
                    ("json", json.dumps({"uid": f"u{i}", "url": f"https://img.example/{i}.jpg"}).encode()),
                ):
                    info = tarfile.TarInfo(f"{i:09d}.{suffix}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        path.with_suffix(".tmp").rename(path)
    return path, texts


def bench_tar(args) -> None:
    path, texts = tar_pool(args.samples, args.image_kb)
    table = webdataset.read_tar(str(path), "text")
    if table.column("text").to_pylist() != [t.encode() for t in texts]:
        fail("texts differ")
    if table.column("uid").to_pylist() != [f"u{i}" for i in range(args.samples)]:
        fail("uids differ")
    print(json.dumps({"bench": "tar", **vars(args), "tar_mb": path.stat().st_size / 1e6}))


def find_pool_dir(shards: int) -> Path:
    d = OUT / f"img2dataset_{shards}"
    if not (d / "_done").exists():
        d.mkdir(parents=True, exist_ok=True)
        table = pa.table({"caption": [f"text {i}" for i in range(100)], "key": [str(i) for i in range(100)]})
        for k in range(shards):
            pq.write_table(table, d / f"{k:05d}.parquet")
            (d / f"{k:05d}.tar").write_bytes(b"\0" * 10240)
            (d / f"{k:05d}_stats.json").write_text("{}")
        (d / "_done").write_text("")
    return d


def bench_find(args) -> None:
    pool = find_pool([str(find_pool_dir(args.shards))])
    identity = input_identity(pool.files, verify=args.verify)
    if len(pool.files) != args.shards or len(pool.skipped) != 2 * args.shards + 1 or len(identity) != args.shards:
        fail(f"{len(pool.files)} files, {len(pool.skipped)} skipped")
    print(json.dumps({"bench": "find", **vars(args), "files": len(pool.files), "skipped": len(pool.skipped)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bench", required=True)
    rows = sub.add_parser("rows")
    rows.add_argument("--how", choices=["read_rows", "take", "none"], required=True)  # none: start-up alone
    rows.add_argument("--kept", type=float, default=0.05)
    rows.add_argument("--row-group", type=int, default=1000)
    tar = sub.add_parser("tar")
    tar.add_argument("--samples", type=int, default=10_000)
    tar.add_argument("--image-kb", type=int, default=40)
    find = sub.add_parser("find")
    find.add_argument("--shards", type=int, default=5000)
    find.add_argument("--verify", action="store_true")
    args = parser.parse_args()
    {"rows": bench_rows, "tar": bench_tar, "find": bench_find}[args.bench](args)


if __name__ == "__main__":
    main()
