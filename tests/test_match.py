"""Every engine equals the naive oracle (docs/semantics.md section 4) on a table of cases,
on random inputs, and on sliced / 64-bit / binary Arrow columns."""

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpu_curate as gc
from oracle import naive_match, padded_entries

# (name, entries, padding, texts, expected match sets)
CASES = [
    ("case matters", ["dog"], "metaclip1", ["Dog", "dog"], [[], [0]]),
    ("attached punctuation", ["dog"], "metaclip1", ["dog's", "(dog)", "dog-lover", '"dog"'], [[], [], [], []]),
    ("wrapped punctuation splits", ["dog"], "metaclip1", ["dog,", "dog.cat", "a;dog!", "`dog`"], [[0], [0], [0], [0]]),
    ("double space", ["hot dog"], "metaclip1", ["hot  dog", "hot dog", "hot\tdog", "hot\ndog"], [[], [0], [0], [0]]),
    ("wrapped punct entry never matches", ["St. Louis"], "metaclip1", ["St. Louis", "St . Louis"], [[], []]),
    ("nested and overlapping", ["a", "a b", "b", "b c", "a b c"], "metaclip1", ["a b c"], [[0, 1, 2, 3, 4]]),
    ("duplicates keep every id", ["cat", "dog", "cat"], "metaclip1", ["cat dog cat"], [[0, 1, 2]]),
    ("null and empty", ["x"], "metaclip1", [None, "", " "], [[], [], []]),
    ("prefix entries", ["new", "new york", "new york city"], "metaclip1", ["new york", "new yorker"], [[0, 1], [0]]),
    ("unicode", ["café", "日本"], "metaclip1", ["un café noir", "日本語", "日本 です"], [[0], [], [1]]),
    ("leading-space entry", [" dog"], "metaclip1", ["a  dog", "a dog"], [[0], []]),
    ("punct entry", ["!", "?"], "metaclip1", ["wow!", "what?!"], [[0], [0, 1]]),
    ("CJK unpadded", ["中国", "好"], "worldwide", ["我爱中国", "中国人", "好"], [[0], [0], [1]]),
    (
        "worldwide mixed ends",
        ["dog-", "中国 man", "man 中"],
        "worldwide",
        ["a dog-lover", "hotdog-", "中国 man", "a man 中国"],
        [[0], [], [1], [2]],
    ),
    ("worldwide thai", ["สวัสดี"], "worldwide", ["ไทยสวัสดีครับ"], [[0]]),
]


@pytest.mark.parametrize("name,entries,padding,texts,expected", CASES, ids=[c[0] for c in CASES])
def test_cases(engine, name, entries, padding, texts, expected):
    md = gc.Metadata(entries, padding=padding)
    assert naive_match(texts, padded_entries(md)) == expected  # the table itself follows docs/semantics.md
    assert gc.match(texts, md, device=engine).to_lists() == expected


ALPHABET = st.sampled_from(list("ab c,.;:?!`'\t\n\r-") + ["é", "中", "国", "ไ", "\u00a0"])
TEXT = st.text(alphabet=ALPHABET, max_size=30)
ENTRY = st.text(alphabet=ALPHABET, min_size=1, max_size=6).filter(lambda e: e.strip())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entries=st.lists(ENTRY, min_size=1, max_size=12),
    texts=st.lists(st.one_of(st.none(), TEXT), max_size=12),
    padding=st.sampled_from(["metaclip1", "worldwide"]),
)
def test_random_inputs_equal_oracle(entries, texts, padding):
    md = gc.Metadata(entries, padding=padding)
    assert gc.match(texts, md, threads=2).to_lists() == naive_match(texts, padded_entries(md))


@settings(max_examples=100, deadline=None)
@given(
    words=st.lists(st.sampled_from(["a", "b", "ab", "ba", "c", ""]), min_size=1, max_size=4),
    n_entries=st.integers(1, 10),
    texts=st.lists(st.lists(st.sampled_from(["a", "b", "ab", "ba", "c", ""]), max_size=8).map(" ".join), max_size=8),
    seed=st.randoms(use_true_random=False),
)
def test_random_multiword_entries(words, n_entries, texts, seed):
    # Multi-word entries built from a tiny vocabulary hit every trie/failure-link path.
    pool = ["a", "b", "ab", "ba", "c"]
    entries = [" ".join(seed.choice(pool) for _ in range(seed.randint(1, 4))) for _ in range(n_entries)]
    md = gc.Metadata(entries)
    assert gc.match(texts, md).to_lists() == naive_match(texts, padded_entries(md))


@pytest.mark.parametrize("arrow_type", [pa.string(), pa.large_string(), pa.binary(), pa.large_binary()])
def test_arrow_layouts(engine, arrow_type):
    md = gc.Metadata(["red", "red car", "car"])
    texts = ["x", "a red car.", None, "car red", "", "the red car, red", "no"]
    arr = pa.array([t.encode() if t is not None and "binary" in str(arrow_type) else t for t in texts], type=arrow_type)
    expected = naive_match(texts, padded_entries(md))
    assert gc.match(arr, md, device=engine).to_lists() == expected
    assert gc.match(arr.slice(2, 4), md, device=engine).to_lists() == expected[2:6]
    chunked = pa.chunked_array([arr.slice(0, 3), arr.slice(3)])
    assert gc.match(chunked, md, device=engine).to_lists() == expected


def test_pandas_and_list_inputs():
    pd = pytest.importorskip("pandas")
    md = gc.Metadata(["blue"])
    assert gc.match(pd.Series(["blue sky", None, "sky"]), md).to_lists() == [[0], [], []]
    assert gc.match(["blue"], md).to_lists() == [[0]]


def test_invalid_utf8_matches_raw_bytes(engine):
    md = gc.Metadata(["dog"])
    arr = pa.array([b"\xff dog \xfe", b"\xffdog"], type=pa.binary())
    assert gc.match(arr, md, device=engine).to_lists() == [[0], []]


def test_threads_do_not_change_results():
    md = gc.Metadata(["a", "a b", "b"])
    texts = [("a b " * (i % 7)) + "c" for i in range(10_000)]
    one = gc.match(texts, md, threads=1)
    many = gc.match(texts, md, threads=4)
    assert (one.offsets == many.offsets).all() and (one.entry_ids == many.entry_ids).all()


def test_huge_text(engine):
    md = gc.Metadata(["dog", "hot dog"])
    text = "hot dog " * 131_072  # 1 MiB
    assert gc.match([text, "dog"], md, device=engine).to_lists() == [[0, 1], [0]]


def test_counts_and_arrow_output():
    md = gc.Metadata(["a", "b", "c"])
    res = gc.match(["a b", "b", None, "c c"], md)
    assert res.counts(3).tolist() == [1, 2, 1]
    assert res.to_arrow().to_pylist() == [[0, 1], [1], [], [2]]
