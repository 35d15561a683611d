"""The GPU engine equals the CPU engine: match sets, counts and keep decisions.

Tests marked `gpu` need CuPy and a CUDA device, or the emulated device
(GPU_CURATE_EMULATE=1), and are skipped without them (conftest.gpu); the
cuDF ones also need cuDF, which the emulated device does not have. The
unmarked tests check the GPU engine's host-side parts everywhere, against
the CPU engine.
"""

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpu_curate as gc
from conftest import shared
from gpu_curate import _core, gpu_backend, gpu_engine, gpu_strings
from gpu_curate.match import match_cpu


def _equal(a: gc.MatchResult, b: gc.MatchResult) -> None:
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.entry_ids, b.entry_ids)
    assert a.offsets.dtype == np.int64 and a.entry_ids.dtype == np.int32


def read_lines(rel: str, column: int | None = None) -> list[str]:
    lines = shared(rel).read_text(encoding="utf-8").split("\n")[:-1]
    return lines if column is None else [line.split("\t")[column] for line in lines]


# Arrow inputs with every layout the kernels read: 32/64-bit offsets, slices
# at odd and byte-aligned offsets, nulls, empty strings, chunks.
TEXTS = ["x", "a red car.", None, "car red", "", "the red car, red", "no", None, "red\tcar", "red car red car"] * 3
SLICES = [(0, None), (1, 5), (3, 17), (8, 8), (9, 0), (13, None)]


def arrow_layouts():
    for arrow_type in (pa.string(), pa.large_string(), pa.binary(), pa.large_binary()):
        binary = pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type)
        arr = pa.array([t.encode() if binary and t is not None else t for t in TEXTS], type=arrow_type)
        for start, length in SLICES:
            yield f"{arrow_type}[{start}:{length}]", arr.slice(start, length)


LAYOUTS = list(arrow_layouts())


@pytest.fixture(scope="module")
def small():
    return gc.Automaton.build(gc.Metadata(["red", "red car", "car", "x"]))


# -- host-side parts (run everywhere) --------------------------------------------------
@pytest.mark.parametrize("name,arr", LAYOUTS, ids=[n for n, _ in LAYOUTS])
def test_arrow_window_is_what_the_cpu_engine_reads(small, name, arr):
    """The bytes copied to the GPU, fed to the host build of the same walk."""
    w = gpu_strings.arrow_window(arr)
    assert w.offset < 8 and w.offsets[0] == 0 and len(w.chars) == w.offsets[-1]
    offs, ids = _core.match(small.tables, w.chars, w.offsets, w.validity, w.offset, len(arr), 1)
    _equal(gc.MatchResult(offs, ids), match_cpu(arr, small))


def test_importing_the_gpu_engine_imports_no_gpu_library():
    code = "import sys, gpu_curate.gpu_engine; sys.exit(bool({'cupy', 'cudf'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_require_names_what_is_missing_in_one_line(monkeypatch):
    monkeypatch.delenv(gpu_backend.EMULATE_ENV, raising=False)
    monkeypatch.setattr(gpu_backend, "_probe", lambda emulate: ("CuPy", "a CUDA device", "cuDF"))
    with pytest.raises(gc.DeviceError) as err:
        gpu_engine.require()
    message = str(err.value)
    assert "\n" not in message and all(m in message for m in ("CuPy", "a CUDA device", "cuDF"))
    assert gpu_engine.missing(need_cudf=False) == ["CuPy", "a CUDA device"]
    assert not gpu_engine.available()


# -- on the GPU ------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("name,arr", LAYOUTS, ids=[n for n, _ in LAYOUTS])
def test_arrow_layouts_equal_cpu(gpu, small, name, arr):
    _equal(gpu_engine.match_gpu(arr, small), match_cpu(arr, small))


@pytest.mark.gpu
def test_chunked_empty_and_all_null(gpu, small):
    chunked = pa.chunked_array([pa.array(TEXTS[:4]), pa.array([], pa.string()), pa.array(TEXTS[4:])])
    _equal(gpu_engine.match_gpu(chunked, small), match_cpu(chunked, small))
    for texts in (pa.array([], pa.string()), pa.array([None] * 11, pa.string()), pa.nulls(5)):
        _equal(gpu_engine.match_gpu(texts, small), gc.match(texts, small))


ALPHABET = st.sampled_from(list("ab c,.;:?!`'\t\n\r-") + ["é", "中", "国", "ไ", "\u00a0"])


@pytest.mark.gpu
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    entries=st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=6).filter(str.strip), min_size=1, max_size=12),
    texts=st.lists(st.one_of(st.none(), st.text(alphabet=ALPHABET, max_size=40)), max_size=40),
    padding=st.sampled_from(["metaclip1", "worldwide"]),
)
def test_random_inputs_equal_cpu(gpu, entries, texts, padding):
    automaton = gc.Automaton.build(gc.Metadata(entries, padding=padding))
    _equal(gpu_engine.match_gpu(texts, automaton), gc.match(texts, automaton))


REAL = [
    ("metadata/en_500k.json", "metaclip1", "alt_text/laion_style_10k.txt", None),
    ("metadata/en_500k.json", "metaclip1", "alt_text/cc3m_validation.tsv", 0),
    ("metadata/en_500k.json", "metaclip1", "captions/coco_val2017_en.txt", None),
    ("metadata/nl_wordfreq_100k.txt", "worldwide", "captions/dutch_descriptions_nl.txt", None),
    ("metadata/zh_wordfreq_100k.txt", "worldwide", "captions/coco_cn_zh.tsv", 1),
]


@pytest.fixture(scope="module")
def automata():
    built = {}

    def get(rel: str, padding: str) -> gc.Automaton:
        if (rel, padding) not in built:
            built[rel, padding] = gc.Automaton.for_metadata(gc.Metadata.load(shared(rel), padding=padding))
        return built[rel, padding]

    return get


@pytest.mark.gpu
@pytest.mark.parametrize(
    "meta,padding,corpus,column", REAL, ids=[f"{r[0].split('/')[1]}-{r[2].split('/')[1]}" for r in REAL]
)
def test_real_data_equals_cpu(gpu, automata, meta, padding, corpus, column):
    automaton = automata(meta, padding)
    texts = read_lines(corpus, column)
    cpu = gc.match(texts, automaton)
    assert len(cpu.entry_ids) > len(texts)  # the data really matches
    for arrow_type in (pa.string(), pa.large_string()):
        arr = pa.array(texts, type=arrow_type)
        _equal(gpu_engine.match_gpu(arr, automaton), cpu)
        part = arr.slice(101, len(arr) // 2)
        _equal(gpu_engine.match_gpu(part, automaton), match_cpu(part, automaton))


@pytest.mark.gpu
def test_counts_and_keep_decisions_equal_cpu(gpu, automata):
    automaton = automata("metadata/en_500k.json", "metaclip1")
    texts = read_lines("alt_text/laion_style_10k.txt")
    texts[::17] = [None] * len(texts[::17])
    on_gpu = gpu_engine.match_gpu_device(pa.array(texts), automaton)
    cpu = gc.match(texts, automaton)
    counts = cpu.counts(automaton.n_entries)
    np.testing.assert_array_equal(on_gpu.counts(automaton.n_entries).get(), counts)
    np.testing.assert_array_equal(gpu_engine.counts_gpu(cpu.entry_ids, automaton.n_entries).get(), counts)
    uid_keys = np.random.default_rng(0).integers(0, 2**64, len(texts), dtype=np.uint64)
    for t in (1, 5, 50):
        p = np.where(counts < t, 1.0, t / np.maximum(counts, 1))
        for seed in (0, 2**64 - 1):
            cpu_keep = _core.keep_rows(cpu.offsets, cpu.entry_ids, uid_keys, p, seed, 2)
            gpu_keep = gpu_engine.keep_rows_gpu(on_gpu.offsets, on_gpu.entry_ids, uid_keys, p, seed).get()
            np.testing.assert_array_equal(gpu_keep, cpu_keep)
            assert 0 < gpu_keep.sum() < len(texts)


@pytest.mark.gpu
def test_uid_keys_equal_cpu(gpu):
    from gpu_curate.balance import uid_keys

    words = ["", "a", "uid-1", "héllo", "12345678901234567890", "中国", None] * 5
    ints = pa.array([0, 1, -1, 2**63 - 1, -(2**63), 42] * 5, pa.int64())
    cases = [ints, pa.array([7, -7, 0], pa.int32()), pa.chunked_array([ints[:7], ints[7:]])]
    for t in (pa.string(), pa.large_string()):
        arr = pa.array(words, type=t)
        cases += [arr, arr.slice(3, 20), pa.chunked_array([arr[:5], arr[5:]])]
    for uids in cases:
        np.testing.assert_array_equal(gpu_engine.uid_keys_gpu(uids).get(), uid_keys(uids))


@pytest.mark.gpu
def test_tables_are_uploaded_once(gpu, small):
    first = gpu_engine.device_tables(small)
    assert gpu_engine.device_tables(small) is first
    assert gpu_engine.device_tables(gc.Automaton(dict(small.tables))) is first  # same content, new object


@pytest.mark.gpu
def test_cudf_columns_are_read_in_place(cudf, small, automata):
    series = cudf.Series(TEXTS)
    expected = gc.match(TEXTS, small)
    _equal(gpu_engine.match_gpu(series, small), expected)
    for start, stop in ((3, 17), (8, None), (1, 2), (5, 5)):
        part = series.iloc[start:stop]
        _equal(gpu_engine.match_gpu(part, small), gc.match(TEXTS[start:stop], small))
    for texts in ([None] * 9, [""] * 4, ["", None]):
        _equal(gpu_engine.match_gpu(cudf.Series(texts, dtype="str"), small), gc.match(texts, small))
    automaton = automata("metadata/en_500k.json", "metaclip1")
    texts = read_lines("alt_text/laion_style_10k.txt")
    _equal(gpu_engine.match_gpu(cudf.Series(texts), automaton), gc.match(texts, automaton))


@pytest.mark.gpu
def test_cudf_uid_keys_equal_cpu(cudf):
    from gpu_curate.balance import uid_keys

    words = ["", "a", "uid-1", "héllo", "中国"] * 4
    for series, arrow in (
        (cudf.Series(words), pa.array(words)),
        (cudf.Series(words).iloc[3:17], pa.array(words[3:17])),
        (cudf.Series([5, -1, 2**40], dtype="int64"), pa.array([5, -1, 2**40])),
    ):
        np.testing.assert_array_equal(gpu_engine.uid_keys_gpu(series).get(), uid_keys(arrow))
