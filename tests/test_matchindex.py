"""The match index (matchindex.py): what pass 1 writes is what pass 2, balance
and the rebalancer read back, and derived uids are rebuilt exactly."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpu_curate import _core, matchindex
from gpu_curate.balance import uid_keys
from gpu_curate.results import MatchResult


def string_keys(strings: list[str]) -> np.ndarray:
    return uid_keys(pa.array(strings, pa.string()))


@given(prefix=st.text(max_size=40), rows=st.lists(st.integers(0, 2**63 - 1), max_size=30))
def test_derived_keys_hash_the_uid_string(prefix, rows):
    """hash_prefixed_decimal(prefix, row) == hash_bytes(f"{prefix}{row}"): derived uids sample as if stored."""
    got = _core.derived_uid_keys(np.frombuffer(prefix.encode(), np.uint8), np.array(rows, np.int64))
    np.testing.assert_array_equal(got, string_keys([f"{prefix}{r}" for r in rows]))


RESULT = MatchResult(np.array([0, 2, 3, 3, 6], np.int64), np.array([1, 5, 0, 2, 3, 9], np.int32))


@pytest.mark.parametrize("kind", ["derived", "strings", "integers"])
def test_round_trip(tmp_path, kind):
    rows = np.array([4, 17, 18, 1000], np.int64)
    given_uids = {
        "derived": None,
        "strings": pa.array(["a", "bé", "c", "d"]),
        "integers": pa.array([7, -1, 2**40, 0], pa.int64()),
    }[kind]
    images = pa.array([1, None, 3, 1], pa.uint64())
    index = matchindex.build(
        rows,
        RESULT,
        uids=given_uids,
        uid_prefix="dir/pool.parquet:" if kind == "derived" else None,
        image_keys=images,
    )
    matchindex.write(index, tmp_path / "part-000000.arrow")
    back = matchindex.read(tmp_path / "part-000000.arrow")
    assert back.equals(index) and back.schema.metadata == index.schema.metadata
    res = matchindex.match_result(back)
    assert res.to_lists() == RESULT.to_lists() and res.offsets.dtype == np.int64 and res.entry_ids.dtype == np.int32
    expected_uids = [f"dir/pool.parquet:{r}" for r in rows] if kind == "derived" else given_uids.to_pylist()
    assert matchindex.uids(back).to_pylist() == expected_uids
    mask = np.array([True, False, False, True])
    assert matchindex.uids(back, mask).to_pylist() == [expected_uids[0], expected_uids[3]]
    np.testing.assert_array_equal(matchindex.uid_keys(back), uid_keys(pa.array(expected_uids)))
    assert back.column(matchindex.IMAGE_KEY).to_pylist() == [1, None, 3, 1]


def test_a_slice_of_the_index_reads_as_its_own_rows():
    index = matchindex.build(np.arange(4), RESULT, uid_prefix="p:")
    assert matchindex.match_result(index.slice(1, 3)).to_lists() == RESULT.to_lists()[1:4]


def test_uids_come_from_the_pool_or_a_prefix_never_both():
    with pytest.raises(ValueError):
        matchindex.build(np.arange(4), RESULT)
    with pytest.raises(ValueError):
        matchindex.build(np.arange(4), RESULT, uids=pa.array(list("abcd")), uid_prefix="p:")
