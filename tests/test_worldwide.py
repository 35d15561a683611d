"""Worldwide curation (MetaCLIP 2): rows matched against their own language's
list, per-language counts and thresholds, languages without lists counted."""

import csv
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import shared
from oracle import naive_match, padded_entries

import gpu_curate as gc
from gpu_curate.balance import threshold_for_share, worldwide_probabilities, worldwide_thresholds
from gpu_curate.pipeline import CurateConfig, curate


# -- thresholds against a direct computation ----------------------------------------
def direct_threshold(counts, share):
    """docs/semantics.md section 6 spelled out: walk the ascending counts, keep the count whose
    cumulative share is closest to `share`, the smaller count on ties."""
    c = sorted(int(x) for x in counts if x > 0)
    if not c:
        return None
    total, running, best = sum(c), 0, None
    for value in c:
        running += value
        key = (abs(running / total - share), value)
        best = key if best is None or key < best else best
    return best[1]


def direct_thresholds(counts, ranges, t_en):
    lo, hi = ranges["en"]
    en = counts[lo:hi]
    p_tail = en[en < t_en].sum() / en.sum() if en.sum() else 0.0
    return {lang: (t_en if lang == "en" else direct_threshold(counts[a:b], p_tail)) for lang, (a, b) in ranges.items()}


@pytest.mark.parametrize("seed", range(30))
def test_thresholds_equal_the_direct_rule(seed):
    rng = np.random.default_rng(seed)
    sizes = {"en": 200, "de": int(rng.integers(0, 50)), "ja": 30, "zz": 10}
    parts = []
    for lang, n in sizes.items():
        heavy = rng.zipf(1.3, n).clip(max=10**6)
        parts.append(np.where(rng.random(n) < 0.3, 0, heavy))  # zeros: unmatched entries
    parts[3][:] = 0  # a language with no matches at all
    counts = np.concatenate(parts).astype(np.uint64)
    bounds = np.concatenate([[0], np.cumsum(list(sizes.values()))])
    ranges = {lang: (int(bounds[k]), int(bounds[k + 1])) for k, lang in enumerate(sizes)}
    t_en = float(rng.choice([3, 10, 50]))
    got = worldwide_thresholds(counts, ranges, t_en)
    assert got == direct_thresholds(counts, ranges, t_en)
    assert got["zz"] is None
    p = worldwide_probabilities(counts, ranges, got)
    assert np.all(p[ranges["zz"][0] : ranges["zz"][1]] == 0)


def test_threshold_ties_take_the_smallest_count():
    # cumulative shares 0.25, 0.5, 1.0: 0.375 is equally close to the first two
    assert threshold_for_share(np.array([2, 1, 1], np.uint64), 0.375) == 1
    assert threshold_for_share(np.array([1, 1, 2], np.uint64), 0.375) == direct_threshold([1, 1, 2], 0.375)
    assert threshold_for_share(np.array([0, 0], np.uint64), 0.5) is None


# -- a mixed-language pool -----------------------------------------------------------
def _tsv_column(path, column):
    with path.open(encoding="utf-8", newline="") as f:
        return [row[column] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Rows in en, zh, nl and fr (no list for fr), interleaved; one metadata dir."""
    d = tmp_path_factory.mktemp("worldwide")
    en = shared("captions/coco_val2017_en.txt").read_text(encoding="utf-8").split("\n")[:2000]
    zh = _tsv_column(shared("captions/coco_cn_zh.tsv"), 1)[:2000]
    nl = shared("captions/dutch_descriptions_nl.txt").read_text(encoding="utf-8").split("\n")[:2000]
    fr = ["un chat sur la table", "a dog in French?"] * 50
    rows = [(t, lang) for lang, texts in (("en", en), ("zh", zh), ("nl", nl), ("fr", fr)) for t in texts]
    random.Random(0).shuffle(rows)
    pool = d / "pool.parquet"
    pq.write_table(
        pa.table(
            {
                "caption": [r[0] for r in rows],
                "language": [r[1] for r in rows],
                "uid": [f"r{i}" for i in range(len(rows))],
            }
        ),
        pool,
    )
    md_dir = d / "metadata"
    md_dir.mkdir()
    (md_dir / "en.txt").write_bytes(shared("metadata/wordnet30_synset_heads.txt").read_bytes())
    (md_dir / "zh.txt").write_bytes(shared("metadata/zh_wordfreq_100k.txt").read_bytes())
    (md_dir / "nl.txt").write_bytes(shared("metadata/nl_wordfreq_100k.txt").read_bytes())
    return pool, md_dir, rows


def run_mixed(mixed, out, **kw):
    pool, md_dir, _ = mixed
    kw = {"text_column": "caption", "lang_column": "language", "t_en": 50, "seed": 11, **kw}
    return curate(CurateConfig(inputs=(str(pool),), metadata=str(md_dir), out=str(out), **kw), progress=False)


def test_mixed_pool_counts_per_language(tmp_path, mixed):
    pool, md_dir, rows = mixed
    summary = run_mixed(mixed, tmp_path / "out", partition_rows=1500)
    table = pq.read_table(tmp_path / "out" / "entry_counts.parquet")
    assert table.column_names == ["entry_id", "entry", "lang", "count", "kept_count"]
    for lang in ("en", "nl", "zh"):
        md = gc.Metadata.load(md_dir / f"{lang}.txt", padding="worldwide")
        texts = [t for t, row_lang in rows if row_lang == lang]
        mine = table.filter(pa.compute.equal(table.column("lang"), lang))
        assert mine.column("entry").to_pylist()[:5] == [md[i] for i in range(5)]
        res = gc.match(texts, md)
        assert np.array_equal(mine.column("count").to_numpy(), res.counts(len(md))), lang
        sample = random.Random(2).sample(range(len(texts)), 15)
        assert [res.to_lists()[i] for i in sample] == naive_match([texts[i] for i in sample], padded_entries(md))
        assert summary["languages"][lang]["rows_in"] == len(texts)
        assert summary["languages"][lang]["rows_matched"] == int((np.diff(res.offsets) > 0).sum())
    assert summary["rows_no_metadata_lang"] == 100 and summary["languages"]["fr"]["rows_in"] == 100
    assert summary["languages"]["fr"].get("rows_matched", 0) == 0
    counts = table.column("count").to_numpy()
    langs = table.column("lang").to_numpy(zero_copy_only=False)
    ranges = {
        lang: (int(np.flatnonzero(langs == lang)[0]), int(np.flatnonzero(langs == lang)[-1]) + 1)
        for lang in ("en", "nl", "zh")
    }
    assert summary["thresholds"] == direct_thresholds(counts, ranges, 50)


def test_mixed_pool_is_partitioning_independent(tmp_path, mixed):
    run_mixed(mixed, tmp_path / "a", partition_rows=100_000)
    run_mixed(mixed, tmp_path / "b", partition_rows=777)
    a = pq.read_table(tmp_path / "a" / "kept").sort_by("uid")
    assert a.num_rows > 0 and a.equals(pq.read_table(tmp_path / "b" / "kept").sort_by("uid"))
    assert set(a.column("language").to_pylist()) <= {"en", "zh", "nl"}


def test_other_list_catches_languages_without_their_own(tmp_path, mixed):
    pool, md_dir, rows = mixed
    md2 = tmp_path / "metadata"
    md2.mkdir()
    for f in md_dir.iterdir():
        (md2 / f.name).write_bytes(f.read_bytes())
    (md2 / "other.txt").write_text("chat\ntable\n", encoding="utf-8")
    summary = run_mixed((pool, md2, rows), tmp_path / "out", partition_rows=100_000)
    assert summary["rows_no_metadata_lang"] == 0
    assert summary["languages"]["fr"]["rows_matched"] == 50
    counts = pq.read_table(tmp_path / "out" / "entry_counts.parquet").to_pandas()
    assert counts[counts.lang == "other"].set_index("entry")["count"].to_dict() == {"chat": 50, "table": 50}


def test_per_language_parquet_metadata(tmp_path):
    md = tmp_path / "md.parquet"
    pq.write_table(pa.table({"lang": ["en", "en", "zh"], "entry": ["dog", "cat", "狗"]}), md)
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.table({"text": ["a dog", "一只狗", "a cat", "狗"], "lang": ["en", "zh", "en", "en"]}), pool)
    summary = curate(
        CurateConfig(inputs=(str(pool),), metadata=str(md), out=str(tmp_path / "o"), lang_column="lang", t_en=10),
        progress=False,
    )
    counts = pq.read_table(tmp_path / "o" / "entry_counts.parquet").to_pandas()
    assert counts.set_index(["lang", "entry"])["count"].to_dict() == {
        ("en", "dog"): 1,
        ("en", "cat"): 1,
        ("zh", "狗"): 1,
    }
    assert summary["padding"] == "worldwide" and summary["rows_kept"] == 3
