"""The CPU engine's batched token walk (gpu_curate/host_walk.h) equals the
per-row walk that a GPU thread runs (kernels/walk.cuh, compiled for the host
here) and the naive oracle, above all where batches begin and end: rows of
very different lengths, null and empty rows, rows with many ids, deeply
nested entries, duplicate entries."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpu_curate as gc
from gpu_curate.automaton import Automaton
from gpu_curate.match import match_cpu
from oracle import naive_match, padded_entries

# host_walk.h's limits, mirrored to build inputs that cross them.
BATCH_TOKENS, BATCH_ROWS, ROW_SLOTS, MAX_ROW_BYTES = 1024, 128, 64, 1 << 16


def check(entries, texts, padding="metaclip1", oracle=True):
    """Batched walk == per-row walk (== oracle), on 1 and 2 threads and on a slice."""
    md = gc.Metadata(entries, padding=padding)
    automaton = Automaton.build(md)
    arr = pa.array(texts, pa.large_string())
    batched = match_cpu(arr, automaton, threads=1)
    per_row = match_cpu(arr, automaton, threads=1, per_row=True)
    assert batched.to_lists() == per_row.to_lists()
    assert match_cpu(arr, automaton, threads=2).to_lists() == batched.to_lists()
    assert match_cpu(arr.slice(1), automaton, threads=1).to_lists() == batched.to_lists()[1:]
    if oracle:
        assert batched.to_lists() == naive_match(texts, padded_entries(md))
    return batched.to_lists()


WORDS = [f"w{i}" for i in range(1500)]


@pytest.mark.parametrize("n_ids", [1, 2, 7, 8, 9, 16, 17, 24, 25, 32, 33, 63, 64, 65, 66, 97, 200, 300, 1500])
def test_rows_with_many_ids_and_repeats(n_ids):
    # n_ids distinct ids per row (every sort path: 8, 16, 32 lanes, two
    # halves merged, blocks of 32 merged level by level, an odd block out,
    # over 64 blocks: 1500 ids are 3000 emits), each word twice, once more reversed,
    # so that repeats reach every path too and rows pass ROW_SLOTS emits.
    words = WORDS[:n_ids]
    texts = [" ".join(words + words[::-1]), " ".join(words), "w0 " * n_ids, None, ""]
    got = check(WORDS, texts, oracle=n_ids <= 64)
    assert got[0] == got[1] == list(range(n_ids))


def test_deeply_nested_entries():
    # Every run of 1..20 "a"s is an entry, and so is every prefix of a long
    # title: each token starts a walk 20 edges deep, most reporting at every step.
    entries = [" ".join(["a"] * k) for k in range(1, 21)] + [" ".join(WORDS[:k]) for k in range(1, 40)]
    texts = [" ".join(["a"] * 45), " ".join(WORDS[:45]), "a a b a", " ".join(WORDS[:39] + ["a"] * 3)]
    got = check(entries, texts)
    assert got[0] == list(range(20))


def test_duplicate_entries_report_every_id():
    entries = ["cat", "hot dog", "cat", "hot dog", "dog", "cat"]
    got = check(entries, ["a cat and a hot dog", "dog", "cat cat"])
    assert got == [[0, 1, 2, 3, 4, 5], [4], [0, 2, 5]]


def test_rows_of_very_different_lengths_in_one_batch():
    entries = ["red", "red car", "car red car", "blue sky", "x"]
    long_row = "red car " * (BATCH_TOKENS // 2 + 7)  # a batch of its own
    huge_row = "blue red car sky " * (MAX_ROW_BYTES // 16 + 5)  # walked alone
    texts = ["red", long_row, "car red car", None, huge_row, "", "blue sky red car x", long_row + "x"]
    texts = texts * 3
    got = check(entries, texts, oracle=False)
    assert got == naive_match(texts, padded_entries(gc.Metadata(entries)))


def test_null_and_empty_rows_across_batches():
    # Runs of null and empty rows longer than a batch, around matching rows.
    texts = [None] * (BATCH_ROWS * 2 + 3) + ["hot dog"] + [""] * (BATCH_ROWS + 1) + [None, "dog"] + [" "] * 5
    got = check(["dog", "hot dog", " dog"], texts)
    assert got[BATCH_ROWS * 2 + 3] == [0, 1]


def test_worldwide_rows_use_both_automata_in_batches():
    entries = ["中国", "好", "dog", "hot dog", "man 中"]
    texts = ["我爱中国 hot dog", None, "a man 中国", "好 dog"] * (BATCH_ROWS // 2)
    check(entries, texts, padding="worldwide")


def test_rows_without_a_needed_byte_skip_the_byte_walk_and_lose_nothing():
    # Under the worldwide rule these English entries have an unpadded end, so
    # they are byte-automaton keys; byte_needs flags one byte of each (its
    # rarest), and the batched walk skips the byte walk of rows that have none.
    # "King Jr." and "et al." can never match (the spaced text has a space
    # before every '.'): they flag nothing, or '.' would send most rows to the walk.
    # "月 ." can: the spaced text of "月." is " 月 . ".
    entries = ["info@", "'hood", "年", "o_", "dog", "hot dog", "x年y", "King Jr.", "et al.", "月 ."]
    md = gc.Metadata(entries, padding="worldwide")
    needs = Automaton.build(md).tables["byte_needs"]
    assert set(np.flatnonzero(needs)) == {ord("@"), ord("'"), 0xE5, ord("_"), 0xE6}
    texts = ["mail info@x", "info at x", "the 'hood", "the hood", "年年", "x年y", "dog", "hot dog o_o", "o o", "", None]
    texts += ["King Jr. et al.", "King Jr . et al .", "King Jr.年", "月.", "月"]
    got = check(entries, texts * (BATCH_ROWS // 5), padding="worldwide")
    assert got[:16] == [[0], [], [1], [], [2], [2, 6], [4], [3, 4, 5], [], [], [], [], [], [2], [9], []]


VOCAB = ["a", "b", "ab", "", "c,", "d.", ".", "年", "月.", "x@", "'"]  # the last five: unpadded ends under worldwide


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    entries=st.lists(st.lists(st.sampled_from(VOCAB), min_size=1, max_size=5).map(" ".join), min_size=1, max_size=25),
    rows=st.lists(
        st.one_of(
            st.none(),
            st.lists(st.sampled_from(VOCAB), max_size=12).map(" ".join),
            # long rows: the batch fills up after a few of them
            st.lists(st.sampled_from(VOCAB), min_size=100, max_size=400).map(" ".join),
        ),
        max_size=40,
    ),
)
def test_random_batches_equal_per_row_walk_and_oracle(entries, rows):
    entries = [e for e in entries if e.strip()] or ["a"]
    check(entries, rows)
    check(entries, rows, padding="worldwide")  # byte-automaton keys, and the batched walk's prefilter


def test_long_token_that_fails_verification_is_walked_again():
    # Tokens of 8+ bytes are looked up by a 64-bit hash and verified against
    # the vocabulary's bytes after the walk. A failure takes a hash collision,
    # which no test can craft; so change the vocabulary's copy of a long
    # token instead: its key still matches the text's, its bytes no longer do,
    # and the exact answer (per-row walk) is that the token is in no entry.
    entries = ["elephants", "two elephants", "giraffe", "two"]
    automaton = Automaton.build(gc.Metadata(entries))
    texts = ["two elephants and a giraffe", "elephants", "two giraffes", None, "giraffe"] * 40
    arr = pa.array(texts, pa.large_string())
    assert match_cpu(arr, automaton).to_lists()[:3] == [[0, 1, 2, 3], [0], [3]]
    tables = dict(automaton.tables)
    vocab_bytes, offsets = tables["vocab_bytes"].copy(), tables["vocab_offsets"]
    token = bytes(vocab_bytes).find(b"elephants")
    assert token >= 0 and token in offsets.tolist()
    vocab_bytes[token + 8] = ord("z")  # "elephantz"
    tables["vocab_bytes"] = vocab_bytes
    corrupted = Automaton(tables)
    batched = match_cpu(arr, corrupted, threads=1)
    assert batched.to_lists() == match_cpu(arr, corrupted, threads=1, per_row=True).to_lists()
    assert batched.to_lists()[:5] == [[2, 3], [], [3], [], [2]]
