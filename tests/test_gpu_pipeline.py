"""The GPU pipeline equals the CPU pipeline on every real corpus, and moves
across the bus only what it must.

Marked `gpu`: on a machine with CuPy and a CUDA device these run on the GPU;
with GPU_CURATE_EMULATE=1 on the emulated device (CI), which also counts
every byte that crosses host <-> device. The cuDF reader needs cuDF and is
skipped without it; the pyarrow reader runs everywhere a GPU engine does.
"""

import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import shared, skip_unless_gpu

from gpu_curate import gpu_backend, matchindex
from gpu_curate.config import CurateConfig
from gpu_curate.outdir import OutDir
from gpu_curate.storage import write_npy_atomic
from gpu_curate.pass1 import match_partition
from gpu_curate.pass2 import balance_partition
from gpu_curate.pipeline import curate
from gpu_curate.pool import find_pool, plan_partitions

pytestmark = pytest.mark.gpu

READERS = ["pyarrow", pytest.param("cudf", id="cudf")]


@pytest.fixture(params=READERS)
def reader(request):
    skip_unless_gpu(need_cudf=request.param == "cudf")
    return request.param


def lines(rel: str, column: int | None = None) -> list[str]:
    text = shared(rel).read_text(encoding="utf-8").split("\n")[:-1]
    return text if column is None else [line.split("\t")[column] for line in text]


def parquet_pool(path, texts, **columns):
    """A pool file of these texts (invalid UTF-8 and nulls mixed in) in row groups of 1,000."""
    texts = [t.encode() for t in texts]
    texts[3::401] = [b"bad \xff\xfe " + t for t in texts[3::401]]  # matches on its bytes, counted
    texts[5::353] = [None] * len(texts[5::353])
    table = pa.table({"text": pa.array(texts, pa.large_binary()), **columns})
    pq.write_table(table, path, row_group_size=1000)
    return path


def kept_uids(out) -> list[str]:
    return sorted(pq.read_table(out / "kept", columns=["uid"]).column(0).to_pylist())


def assert_same_outputs(cpu_out, gpu_out, cpu, gpu):
    assert kept_uids(gpu_out) == kept_uids(cpu_out) and cpu["rows_kept"] > 0
    for a, b in ((cpu_out, gpu_out),):
        ca, cb = pq.read_table(a / "entry_counts.parquet"), pq.read_table(b / "entry_counts.parquet")
        assert ca.equals(cb)
    for key in (
        "rows_in",
        "rows_null_text",
        "rows_invalid_utf8",
        "rows_matched",
        "pairs_matched",
        "rows_kept",
        "rows_kept_invalid_utf8",
        "rows_kept_only_through_tail",
        "rows_no_metadata_lang",
    ):
        assert cpu[key] == gpu[key], key
    assert cpu["languages"] == gpu["languages"]
    assert gpu["device"] == gpu_backend.device_label("gpu") and cpu["device"] == "cpu"


def run_both(tmp_path, reader, **kw):
    cpu = curate(CurateConfig(out=str(tmp_path / "cpu"), device="cpu", **kw), progress=False)
    gpu = curate(CurateConfig(out=str(tmp_path / "gpu"), device="gpu", gpu_reader=reader, **kw), progress=False)
    assert gpu["gpu_reader"] == reader
    assert_same_outputs(tmp_path / "cpu", tmp_path / "gpu", cpu, gpu)
    return cpu, gpu


CORPORA = [
    ("alt_text/laion_style_10k.txt", None),
    ("alt_text/cc3m_validation.tsv", 0),
    ("captions/coco_val2017_en.txt", None),
]


@pytest.mark.parametrize("corpus,column", CORPORA, ids=[c[0].split("/")[1] for c in CORPORA])
def test_every_english_corpus_curates_alike(tmp_path, reader, corpus, column):
    pool = parquet_pool(tmp_path / "pool.parquet", lines(corpus, column))
    metadata = str(shared("metadata/en_500k.json"))
    cpu, _ = run_both(tmp_path, reader, inputs=(str(pool),), metadata=metadata, t=5, seed=3, partition_rows=3000)
    assert cpu["rows_invalid_utf8"] > 0 and cpu["rows_null_text"] > 0


def test_text_formats_read_on_the_host_curate_alike(tmp_path, reader):
    """A txt pool (line ranges) goes through the pyarrow reader under either choice."""
    pool = tmp_path / "pool.txt"
    pool.write_bytes(b"\n".join(t.encode() for t in lines("captions/coco_val2017_en.txt")[:5000]) + b"\n\xff dog\n")
    run_both(
        tmp_path,
        reader,
        inputs=(str(pool),),
        metadata=str(shared("metadata/wordnet30_synset_heads.txt")),
        t=10,
        partition_rows=1700,
    )


def test_worldwide_curates_alike(tmp_path, reader):
    """Per-language lists matched on the device (one launch per language over its rows)."""
    en = lines("captions/coco_val2017_en.txt")[:3000]
    zh = lines("captions/coco_cn_zh.tsv", 1)[:3000]
    nl = lines("captions/dutch_descriptions_nl.txt")[:3000]
    rows = [(t, lang) for lang, texts in (("en", en), ("zh", zh), ("nl", nl), ("fr", ["un chat"] * 40)) for t in texts]
    random.Random(0).shuffle(rows)
    md = tmp_path / "metadata"
    md.mkdir()
    for lang, rel in (
        ("en", "wordnet30_synset_heads.txt"),
        ("zh", "zh_wordfreq_100k.txt"),
        ("nl", "nl_wordfreq_100k.txt"),
    ):
        (md / f"{lang}.txt").write_bytes(shared(f"metadata/{rel}").read_bytes())
    pool = parquet_pool(tmp_path / "pool.parquet", [r[0] for r in rows], language=[r[1] for r in rows])
    cpu, gpu = run_both(
        tmp_path, reader, inputs=(str(pool),), metadata=str(md), lang_column="language", t_en=30, partition_rows=2500
    )
    assert cpu["rows_no_metadata_lang"] == 40 and gpu["thresholds"] == cpu["thresholds"]


def test_pool_uids_and_one_text_per_image_curate_alike(tmp_path, reader):
    texts = lines("alt_text/laion_style_10k.txt")
    pool = parquet_pool(
        tmp_path / "pool.parquet",
        texts,
        uid=[f"{i:032x}" for i in range(len(texts))],
        url=[f"img{i // 3}" for i in range(len(texts))],
    )
    run_both(
        tmp_path,
        reader,
        inputs=(str(pool),),
        metadata=str(shared("metadata/en_500k.json")),
        t=20,
        image_column="url",
        keep_matched_ids=True,
        partition_rows=4000,
    )


# -- what crosses the bus (the emulated device counts every byte) --------------------------
@pytest.fixture
def counted():
    if not gpu_backend.emulated():
        pytest.skip("transfers are counted on the emulated device (GPU_CURATE_EMULATE=1)")
    skip_unless_gpu()
    from gpu_curate import emulated_cupy

    return emulated_cupy


def test_transfer_budget_of_both_passes(tmp_path, counted):
    """100k real rows, one partition: no text byte comes back to the host;
    what does is the match index, sparse counts, a keep flag per matched row
    and a few totals. Bytes per row are printed for the report (-s)."""
    rng = np.random.default_rng(0)
    corpus = lines("captions/coco_val2017_en.txt") + lines("alt_text/laion_style_10k.txt")
    texts = [corpus[i] for i in rng.integers(0, len(corpus), 100_000)]
    pool = parquet_pool(tmp_path / "pool.parquet", texts)
    text_bytes = sum(len(t.encode()) for t in texts)
    cfg = CurateConfig(
        inputs=(str(pool),),
        metadata=str(shared("metadata/en_500k.json")),
        out=str(tmp_path / "out"),
        device="gpu",
        gpu_reader="pyarrow",
        t=50,
        partition_rows=100_000,
    )
    (part,) = plan_partitions(find_pool([str(pool)]).files, cfg.partition_rows, "text")
    OutDir(cfg.out).out.mkdir()

    from gpu_curate.worldwide import load_cached

    load_cached(cfg.metadata_ref).automaton(None)  # tables built on the host beforehand, as curate() does
    counted.reset_transfers()
    stats, ids, n = match_partition(part, cfg)
    pass1 = counted.transfers()
    index = matchindex.read(OutDir(cfg.out).shard("matches", part))
    index_bytes = index.column("row").nbytes + index.column("matched_entry_ids").nbytes
    sparse_bytes = ids.nbytes + n.nbytes
    # Up: the text once (bytes + offsets + validity), the tables once, nothing per row besides.
    assert pass1.bytes_to_device < text_bytes + 8 * 100_001 + 100_000 // 8 + 64 + _table_bytes(cfg)
    # Down: the index, the sparse counts and a few scalars, from these call sites only: no room for
    # the text (text_bytes more), which stays on the device.
    assert pass1.bytes_to_host <= index_bytes + sparse_bytes + 64
    assert set(pass1.to_host) <= {
        "gpu_curate.engines.GpuEngine.match",  # matched rows and their CSR: the match index
        "gpu_curate.gpu_engine.sparse_counts_gpu",  # (entry id, count) of the entries hit
        "gpu_curate.gpu_engine.match_groups",  # totals: pairs, walk agreement, unique pairs
        "gpu_curate.engines.GpuEngine.invalid_utf8",  # the number of invalid rows
    }, pass1.to_host

    counts = np.zeros(load_cached(cfg.metadata_ref).n_entries, np.uint64)
    counts[ids] = n
    p = np.where(counts < cfg.t, 1.0, cfg.t / np.maximum(counts, 1))
    generation = OutDir(cfg.out).generation(cfg.balance_id)  # pass 2 reads p and p_head from there
    write_npy_atomic(p, generation.probabilities)
    write_npy_atomic(np.where(counts >= cfg.t, p, 0.0), generation.head_probabilities)
    counted.reset_transfers()
    kept_stats, _, _ = balance_partition(part, cfg)
    pass2 = counted.transfers()
    matched = stats["rows_matched"]
    # Down: one keep flag per matched row, for each of the two decisions; up: the index and p, once each.
    assert pass2.bytes_to_host == 2 * matched
    assert pass2.bytes_to_device <= index_bytes + 2 * p.nbytes + 8 * matched + 64
    assert 0 < kept_stats["rows_kept"] < matched
    once = ("gpu_curate.gpu_engine.device_tables", "gpu_curate.engines._device_p")  # per worker, not per partition
    up1 = pass1.bytes_to_device - sum(pass1.to_device.get(k, 0) for k in once)
    up2 = pass2.bytes_to_device - sum(pass2.to_device.get(k, 0) for k in once)
    print(
        f"\ntransfers per row, 100k rows, one partition (emulated device): pass 1 up {up1 / 1e5:.1f} B "
        f"(the text: {text_bytes / 1e5:.1f} B), down {pass1.bytes_to_host / 1e5:.1f} B (the match index and "
        f"sparse counts); pass 2 up {up2 / 1e5:.1f} B, down {pass2.bytes_to_host / 1e5:.1f} B; once per worker: "
        f"automaton tables {_table_bytes(cfg) / 1e6:.1f} MB, p {pass2.to_device.get(once[1], 0) / 1e6:.1f} MB"
    )


def _table_bytes(cfg) -> int:
    from gpu_curate.gpu_engine import table_arguments
    from gpu_curate.worldwide import load_cached

    tables = load_cached(cfg.metadata_ref).automaton(None).tables
    return sum(v.nbytes for _, v in table_arguments(tables) if isinstance(v, np.ndarray))
