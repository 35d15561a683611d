"""Metadata builder (issue 5): sources, PMI, dedup/caps, stats, CLI, WordNet."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import shared
from oracle import spaced
from typer.testing import CliRunner

import gpu_curate as gc
from gpu_curate import metadata_build as mb
from gpu_curate import metadata_counts as mc
from gpu_curate import metadata_text as mt
from gpu_curate import metadata_wordnet as mw
from gpu_curate.cli import app
from gpu_curate.errors import CurateError, MetadataError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def counts_dict(table: pa.Table) -> dict:
    return dict(zip(table.column("key").to_pylist(), table.column("count").to_pylist()))


def split_on_pipe(text):
    """A plug-in segmenter for the tests ("test_metadata_build:split_on_pipe")."""
    return text.split("|")


# -- counting and PMI ------------------------------------------------------------
PMI_CORPUS = "new york is big\nnew york is old\nthe cat is old\n"


def test_pmi_equals_hand_computation(tmp_path):
    uni, bi = mc.count_corpus([write(tmp_path / "c.txt", PMI_CORPUS)], scheduler="synchronous")
    assert counts_dict(uni) == {"new": 2, "york": 2, "is": 3, "big": 1, "old": 2, "the": 1, "cat": 1}
    # N = 12 words. PMI(a b) = log2(c(ab) * N / (c(a) c(b))), by hand:
    expected = {
        "new york": math.log2(2 * 12 / (2 * 2)),  # log2 6
        "york is": 2.0,  # log2(2*12 / (2*3))
        "is big": 2.0,  # log2(1*12 / (3*1))
        "is old": 2.0,  # log2(2*12 / (3*2))
        "the cat": math.log2(12),
        "cat is": 2.0,  # log2(1*12 / (1*3))
    }
    got = mc.bigram_pmi(bi, uni).to_pydict()
    assert dict(zip(got["key"], got["pmi"])) == pytest.approx(expected, abs=1e-12)
    assert mc.high_pmi_bigrams(bi, uni, min_pmi=2.5) == ["the cat", "new york"]  # highest PMI first
    assert mc.high_pmi_bigrams(bi, uni, min_pmi=2.5, joiner="") == ["thecat", "newyork"]


def test_pmi_is_nltks_definition(tmp_path):
    collocations = pytest.importorskip("nltk.collocations")
    from nltk.probability import FreqDist

    uni, bi = mc.count_corpus([write(tmp_path / "c.txt", PMI_CORPUS)], scheduler="synchronous")
    finder = collocations.BigramCollocationFinder(
        FreqDist(counts_dict(uni)), FreqDist({tuple(k.split()): c for k, c in counts_dict(bi).items()})
    )
    theirs = {" ".join(k): v for k, v in finder.score_ngrams(collocations.BigramAssocMeasures.pmi)}
    got = mc.bigram_pmi(bi, uni).to_pydict()
    assert dict(zip(got["key"], got["pmi"])) == pytest.approx(theirs, abs=1e-12)


def test_bigram_with_unknown_word_gets_no_score():
    uni = mc.sum_counts([pa.table({"key": ["a", "b"], "count": [1, 1]})])
    bi = mc.sum_counts([pa.table({"key": ["a b", "a z"], "count": [1, 1]})])
    assert mc.bigram_pmi(bi, uni).column("key").to_pylist() == ["a b"]
    with pytest.raises(MetadataError, match="not two words"):
        mc.bigram_pmi(mc.sum_counts([pa.table({"key": ["a b c"], "count": [1]})]), uni)


def test_words_segmenter_splits_like_the_matcher(tmp_path):
    assert mt.words("Hello, world.St. Louis's (dog)") == ["Hello", ",", "world", ".", "St", ".", "Louis's", "(dog)"]
    uni, bi = mc.count_corpus([write(tmp_path / "c.txt", "big, old dog\n")], scheduler="synchronous")
    assert counts_dict(uni) == {"big": 1, "old": 1, "dog": 1}  # punctuation is not a word
    assert counts_dict(bi) == {"old dog": 1}  # and no bigram spans it


def test_chars_segmenter():
    assert mt.chars("我爱北京 hello world，好") == ["我", "爱", "北", "京", "hello", "world", "，", "好"]


def test_counts_do_not_depend_on_partitioning(tmp_path):
    lines = [f"w{i % 7} w{i % 5} w{i % 3}, w{i % 2}" for i in range(300)]
    corpus = [
        write(tmp_path / "a.txt", "\n".join(lines[:150]) + "\n"),
        write(tmp_path / "b.txt", "\n".join(lines[150:])),
    ]
    one = mc.count_corpus(corpus, scheduler="synchronous", blocksize="64MiB")
    many = mc.count_corpus(corpus, scheduler="processes", blocksize="200B")  # ~20 partitions, 2 processes
    assert [counts_dict(t) for t in one] == [counts_dict(t) for t in many]
    assert sum(counts_dict(one[0]).values()) == 1200


def test_plugin_segmenter(tmp_path):
    uni, bi = mc.count_corpus(
        [write(tmp_path / "c.txt", "new york|is||big\n")],
        segmenter="test_metadata_build:split_on_pipe",
        scheduler="synchronous",
    )
    assert counts_dict(uni) == {"new": 1, "york": 1, "is": 1, "big": 1}  # tokens split again on whitespace
    assert counts_dict(bi) == {"new york": 1, "york is": 1, "is big": 1}
    with pytest.raises(CurateError, match="cannot be loaded"):
        mt.resolve_segmenter("no_such_module_xyz:cut")


def test_segmenter_per_language():
    assert mt.parse_segmenters(["jieba:lcut"]) == {None: "jieba:lcut"}
    assert mt.parse_segmenters(["words", "zh=jieba:lcut"]) == {None: "words", "zh": "jieba:lcut"}


def test_read_counts_sums_repeats_and_names_bad_lines(tmp_path):
    a = write(tmp_path / "a.tsv", 'dog\t3\n"quoted\t2\nNA\t1\n')
    b = write(tmp_path / "b.tsv", "dog\t4\n")
    assert counts_dict(mc.sum_counts([mc.read_counts(a), mc.read_counts(b)])) == {"dog": 7, '"quoted': 2, "NA": 1}
    with pytest.raises(MetadataError, match=r"bad.tsv line 2: expected key<TAB>count"):
        mc.read_counts(write(tmp_path / "bad.tsv", "dog\t3\ncat\tmany\n"))
    with pytest.raises(MetadataError, match="line 2"):
        mc.read_counts(write(tmp_path / "bad2.tsv", "dog\t3\nhot\tdog\t2\n"))


# -- assembling -----------------------------------------------------------------------
def test_assemble_cleans_dedups_and_caps():
    entries, reports = mb.assemble(
        [
            ("numbers", ["0", "1"]),
            ("unigrams", ["dog", " cat ", "", "!", "1", "dog", "hot\tdog", "a.m.", "fox", "owl"]),
            ("titles", ["cat", "St. Louis", "New York"]),
        ],
        caps={"unigrams": 3},
        drop_unmatchable=True,
    )
    assert entries == ["0", "1", "dog", "cat", "hot dog", "New York"]
    by = {r.source: r for r in reports}
    u = by["unigrams"]
    assert (u.candidates, u.added, u.duplicates, u.rejected, u.capped) == (10, 3, 2, 3, 2)
    t = by["titles"]
    assert (t.candidates, t.added, t.duplicates, t.rejected, t.capped) == (3, 1, 1, 1, 0)


@pytest.mark.parametrize(
    "entry,witness",
    [
        ("dog", "a dog"),
        ("x . y", "x.y"),  # a mark with spaces on both sides can match
        ("hello !", "hello!"),
        (". a", ".a"),
        ("dog's", "the dog's bone"),
        ("St. Louis", None),
        ("a.m.", None),
        ("hello,", None),
        ("..", None),
        ("a\tb", None),
        ("`x", None),
    ],
)
def test_never_match_agrees_with_the_oracle(entry, witness):
    assert mt.can_never_match(entry) == (witness is None)
    padded = f" {entry} "
    if witness is not None:
        assert padded in spaced(witness)
    else:  # the most favourable texts still do not contain it
        for text in (entry, entry.replace(" ", ""), f"x {entry} y"):
            assert padded not in spaced(text)


def test_stats_flags_never_matching_entries(tmp_path):
    path = write(
        tmp_path / "m.json", json.dumps(["St. Louis", "dog", "dog", "x . y", "a.m.", "hot dog", "new york city"])
    )
    s = mb.metadata_stats(path)
    assert (s.entries, s.distinct, s.duplicate_copies) == (7, 6, 1)
    assert s.duplicate_examples == [("dog", 2)]
    assert (s.never_match, s.never_match_examples) == (2, ["St. Louis", "a.m."])
    assert s.words == {"1": 3, "2": 2, "3": 2, "4": 0, "5+": 0}
    assert s.multi_word_share == pytest.approx(4 / 7)
    assert (s.chars["min"], s.chars["max"]) == (3, 13)


def test_write_entries_is_atomic_json_or_txt(tmp_path):
    mb.write_entries(["dog", "日本", 'say "hi"'], tmp_path / "m.json")
    mb.write_entries(["dog", "日本"], tmp_path / "m.txt")
    assert json.loads((tmp_path / "m.json").read_text(encoding="utf-8")) == ["dog", "日本", 'say "hi"']
    assert (tmp_path / "m.txt").read_text(encoding="utf-8") == "dog\n日本\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.txt"]  # no temp files left


# -- CLI -----------------------------------------------------------------------------------
runner = CliRunner()


def test_cli_build_from_count_files(tmp_path):
    uni = write(tmp_path / "u.tsv", "dog\t500\ncat\t300\nemu\t99\nnew\t100\nyork\t100\n,\t1000\n")
    bi = write(tmp_path / "b.tsv", "new york\t100\ndog cat\t1\n")
    titles = write(tmp_path / "t.tsv", "New_York\t50\nNew_York\t30\nSt._Louis\t70\nObscure\t69\n")
    out = tmp_path / "out" / "m.txt"
    args = ["metadata", "build", "--out", str(out), "--no-wordnet", "--unigrams", str(uni), "--bigrams", str(bi)]
    args += ["--titles", str(titles), "--min-pmi", "1", "--max-unigrams", "3"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    entries = out.read_text(encoding="utf-8").splitlines()
    # N = 2099 (every word, "," and emu too): PMI(new york) = log2(100*2099/100^2) = 4.4, PMI(dog cat) < 0.
    assert entries == [str(i) for i in range(100)] + ["dog", "cat", "new", "new york", "New York", "St. Louis"]
    assert "106 entries" in res.output and "unigrams" in res.output

    res = runner.invoke(app, ["metadata", "stats", str(out)])
    assert res.exit_code == 0, res.output
    assert "106 entries" in res.output and "warning" in res.output and "St. Louis" in res.output


def test_cli_per_language_outputs(tmp_path):
    (tmp_path / "nl").mkdir()
    (tmp_path / "zh").mkdir()
    write(tmp_path / "nl" / "1.txt", "de hond, de kat\nde hond\n")
    write(tmp_path / "zh" / "1.txt", "我爱北京\n北京很大\n")
    out = tmp_path / "md"
    args = ["metadata", "build", "--out", str(out), "--lang", "nl", "--lang", "zh", "--no-numbers"]
    args += ["--corpus", str(tmp_path / "{lang}" / "*.txt"), "--min-count", "2", "--min-pmi", "0"]
    args += ["--counts-out", str(tmp_path / "counts"), "--scheduler", "synchronous", "--segmenter", "zh=chars"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "nl: counting 1 corpus file(s) with dask (segmenter words)" in res.output
    assert "zh: counting 1 corpus file(s) with dask (segmenter chars)" in res.output
    assert "English only" in res.output  # WordNet is skipped, not read, for nl and zh
    nl = json.loads((out / "nl.json").read_text(encoding="utf-8"))
    zh = json.loads((out / "zh.json").read_text(encoding="utf-8"))
    assert nl[:2] == ["de", "hond"] and "de hond" in nl and "hond de" not in nl  # "," breaks the pair
    assert zh[:2] == ["京", "北"] and "北京" in zh and "北 京" not in zh  # chars, joined without a space
    assert (tmp_path / "counts" / "zh.unigrams.tsv").read_text(encoding="utf-8").startswith("京\t2\n北\t2\n")


def test_cli_errors_are_one_line(tmp_path):
    cmd = [sys.executable, "-m", "gpu_curate", "metadata", "build"]
    cmd += ["--out", str(tmp_path / "m.json"), "--wordnet-dir", str(tmp_path)]
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "no WordNet database there" in res.stderr
    assert not (tmp_path / "m.json").exists()


# -- WordNet ---------------------------------------------------------------------------------
def test_missing_wordnet_says_how_to_get_it(monkeypatch):
    nltk = pytest.importorskip("nltk")

    def not_found(*args, **kwargs):
        raise LookupError("no")

    monkeypatch.setattr(nltk.data, "find", not_found)
    monkeypatch.setattr(mw, "_has_wordnet", lambda d: False)
    with pytest.raises(CurateError) as e:
        mw.locate_wordnet()
    msg = str(e.value)
    assert "\n" not in msg and "nltk.downloader wordnet" in msg and "wordnet-base" in msg and "--wordnet-dir" in msg


def test_wordnet_heads_equal_the_reference_set():
    pytest.importorskip("nltk", reason="nltk not installed: pip install 'gpu_curate[metadata]'")
    try:
        root = mw.locate_wordnet()
    except CurateError as e:
        pytest.skip(f"no WordNet data here: {e}")
    reference = set(shared("metadata/wordnet30_synset_heads.txt").read_text(encoding="utf-8").splitlines())
    had_lexnames = isinstance(root, Path) and (root / "lexnames").exists()
    entries = mw.wordnet_entries(lemmas=True)
    heads = entries[: len(reference)]
    assert len(reference) == 86_554 and set(heads) == reference and heads == sorted(heads)
    assert "wienerwurst" in entries[len(reference) :]  # a lemma that heads no synset
    if isinstance(root, Path):
        assert (root / "lexnames").exists() == had_lexnames  # nothing written into the data directory


def test_stats_with_a_pool_reports_what_the_entries_hit(tmp_path):
    from gpu_curate import demo_data

    res = runner.invoke(
        app,
        [
            "metadata",
            "stats",
            str(demo_data.METADATA),
            "--pool",
            str(demo_data.POOL),
            "--text-column",
            "TEXT",
            "--json",
            "--examples",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output.strip().splitlines()[-1])
    texts = pq.read_table(demo_data.POOL).column("TEXT")
    md = gc.Metadata.load(demo_data.METADATA)
    expected = gc.match(texts, md)
    counts = expected.counts(len(md))
    assert hits["pool_rows"] == 3000 and hits["rows_matched"] == int((np.diff(expected.offsets) > 0).sum())
    assert hits["entries_hit"] == int((counts > 0).sum())
    assert [n for _, n in hits["top"]] == sorted(counts.tolist(), reverse=True)[:3]
