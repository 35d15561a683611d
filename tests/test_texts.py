"""The UTF-8 check (kernels/common.cuh: is_valid_utf8) accepts exactly what
Python's decoder accepts, on every layout the kernels read."""

import numpy as np
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from gpu_curate.texts import invalid_utf8_rows


def python_says_invalid(b: bytes | None) -> bool:
    if b is None:
        return False
    try:
        b.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


EDGE_CASES = [
    b"",
    b"plain ascii, long enough to use whole 8-byte words on the host",
    "héllo 中国 ไทย 😀".encode(),
    b"\x80",  # lone continuation byte
    b"\xc0\xaf",  # overlong '/'
    b"\xc1\xbf",  # overlong
    b"\xe0\x80\xaf",  # overlong, 3 bytes
    b"\xf0\x80\x80\xaf",  # overlong, 4 bytes
    b"\xed\xa0\x80",  # surrogate U+D800
    b"\xed\x9f\xbf",  # U+D7FF, valid
    b"\xf4\x8f\xbf\xbf",  # U+10FFFF, valid
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf5\x80\x80\x80",
    b"\xff",
    b"abcdefgh\xe4\xb8",  # truncated after a whole ASCII word
    b"abcdefg\xe4\xb8\xad",  # a character across the 8-byte word boundary
    b"a\xe4\xb8\xadb\xe4\xb8",  # truncated at the end
    None,
]


def test_edge_cases_on_every_layout():
    expected = [python_says_invalid(b) for b in EDGE_CASES]
    for arrow_type in (pa.binary(), pa.large_binary()):
        arr = pa.array(EDGE_CASES, arrow_type)
        assert invalid_utf8_rows(arr).tolist() == expected
        assert invalid_utf8_rows(arr.slice(3, 9)).tolist() == expected[3:12]
        chunked = pa.chunked_array([arr.slice(0, 5), arr.slice(5)])
        assert invalid_utf8_rows(chunked).tolist() == expected


@given(st.lists(st.one_of(st.none(), st.binary(max_size=24), st.text(max_size=12).map(str.encode)), max_size=40))
def test_random_bytes_agree_with_python(values):
    np.testing.assert_array_equal(
        invalid_utf8_rows(pa.array(values, pa.binary())), [python_says_invalid(v) for v in values]
    )
