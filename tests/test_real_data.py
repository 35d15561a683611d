"""Every shared corpus against real metadata: zero differences from the oracle.

The naive oracle is quadratic, so it checks a sample; all rows are checked
against a pyahocorasick reference (MetaCLIP's own method), which the oracle
in turn validates on that sample.
"""

import csv
import random

import pytest

import gpu_curate as gc
from conftest import shared
from oracle import naive_match, padded_entries, spaced

ahocorasick = pytest.importorskip("ahocorasick")


def read_texts(rel: str, column: int | None = None) -> list[str]:
    path = shared(rel)
    if column is None:
        return path.read_text(encoding="utf-8").split("\n")[:-1]
    with path.open(encoding="utf-8", newline="") as f:
        return [row[column] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def aho_reference(texts, padded):
    auto = ahocorasick.Automaton()
    for i, e in enumerate(padded):
        if e in auto:
            auto.get(e).append(i)
        else:
            auto.add_word(e, [i])
    auto.make_automaton()
    return [sorted({i for _, ids in auto.iter(spaced(t)) for i in ids}) for t in texts]


CORPORA = [
    ("alt_text/laion_style_10k.txt", None),
    ("alt_text/cc3m_validation.tsv", 0),
    ("captions/coco_val2017_en.txt", None),
    ("captions/dutch_descriptions_nl.txt", None),
]
METADATA = [
    ("metadata/en_500k.json", "metaclip1"),
    ("metadata/wordnet30_synset_heads.txt", "metaclip1"),
    ("metadata/nl_wordfreq_100k.txt", "worldwide"),
]


@pytest.fixture(scope="module", params=METADATA, ids=[m[0].split("/")[1] for m in METADATA])
def metadata(request):
    rel, padding = request.param
    md = gc.Metadata.load(shared(rel), padding=padding)
    return md, padded_entries(md)


@pytest.mark.parametrize("rel,column", CORPORA, ids=[c[0].split("/")[1] for c in CORPORA])
def test_corpus_equals_reference(engine, metadata, rel, column):
    md, padded = metadata
    texts = read_texts(rel, column)
    got = gc.match(texts, md, device=engine).to_lists()
    assert got == aho_reference(texts, padded)
    sample = random.Random(0).sample(range(len(texts)), 25)
    assert [got[i] for i in sample] == naive_match([texts[i] for i in sample], padded)


def test_chinese_worldwide(engine):
    md = gc.Metadata.load(shared("metadata/zh_wordfreq_100k.txt"), padding="worldwide")
    padded = padded_entries(md)
    texts = read_texts("captions/coco_cn_zh.tsv", 1)
    got = gc.match(texts, md, device=engine).to_lists()
    assert got == aho_reference(texts, padded)
    assert sum(map(len, got)) > 10 * len(texts)  # CJK entries match inside unspaced text
    sample = random.Random(1).sample(range(len(texts)), 25)
    assert [got[i] for i in sample] == naive_match([texts[i] for i in sample], padded)
