"""The emulated device (GPU_CURATE_EMULATE=1): strict where a GPU is, counts
what crosses host<->device, catches out-of-bounds writes, and computes what
the CPU engine computes. Runs everywhere: it needs no GPU, only the
gpu_curate._emulated_device extension that every install builds."""

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import gpu_curate as gc
from conftest import shared
from gpu_curate import _core, _emulated_device, demo_data, emulated_cupy, gpu_backend, gpu_engine, gpu_strings, kernels
from gpu_curate.balance import uid_keys
from gpu_curate.match import match_cpu, resolve_device


@pytest.fixture
def cp(monkeypatch):
    """The emulated device, switched on for this test, with its transfer counts at zero."""
    monkeypatch.setenv(gpu_backend.EMULATE_ENV, "1")
    emulated_cupy.reset_transfers()
    return gpu_backend.cupy()


@pytest.fixture(scope="module")
def small():
    return gc.Automaton.build(gc.Metadata(["red", "red car", "car", "x"]))


@pytest.fixture
def keep_args(cp):
    """Valid gc::keep_rows arguments for 5 rows, each row matching entry 0."""
    n = 5
    return [
        cp.asarray(np.arange(n + 1, dtype=np.int64)),  # offsets
        cp.zeros(n, dtype=cp.int32),  # ids
        cp.asarray(np.arange(n, dtype=np.uint64)),  # uid_keys
        cp.asarray(np.array([1.0])),  # p: keep everything
        np.uint64(7),  # seed
        np.int64(n),  # n_rows
        cp.zeros(n, dtype=cp.bool_),  # keep
    ]


def keep_rows(cp):
    return kernels.raw_module(cp).get_function("gc::keep_rows")


# -- the host build of the kernels ------------------------------------------------------
def test_every_nvrtc_kernel_is_emulated():
    assert sorted(_emulated_device.kernels()) == sorted(kernels.KERNEL_NAMES)


def test_the_device_branches_are_compiled():
    """__CUDA_ARCH__ is defined: walk.cuh's host-only paths (SIMD, wide loads) are out."""
    assert _emulated_device.CUDA_ARCH == 900 and _emulated_device.HOST_FAST_PATHS is False


def test_parameter_lists_come_from_the_kernel_types():
    params = _emulated_device.kernels()
    # __global__ void keep_rows(const int64_t*, const int32_t*, const uint64_t*, const double*, uint64_t, int64_t, bool*)
    assert params["gc::keep_rows"] == [
        ("pointer", "int64", False, 8),
        ("pointer", "int32", False, 8),
        ("pointer", "uint64", False, 8),
        ("pointer", "float64", False, 8),
        ("scalar", "uint64", False, 8),
        ("scalar", "int64", False, 8),
        ("pointer", "bool", True, 8),
    ]
    tables = gc.Automaton.build(gc.Metadata(["red", "中国"], padding="worldwide")).tables
    for wide, offset in ((False, "int32"), (True, "int64")):
        count = params[f"gc::count_matches<{offset}_t>"]
        table_args = gpu_engine.table_arguments(tables)
        for (name, value), (kind, dtype, writable, _) in zip(table_args, count):
            assert (kind, dtype, writable) == (
                "pointer" if isinstance(value, np.ndarray) else "scalar",
                str(value.dtype),
                False,
            ), name
        column = count[len(table_args) :]
        assert [(k, d) for k, d, _, _ in column] == [
            ("pointer", "uint8"),
            ("pointer", offset),
            ("pointer", "uint8"),
            ("scalar", "int64"),
            ("pointer", "int64"),  # the rows to match (a null pointer: every row)
            ("scalar", "int64"),
            ("pointer", "int64"),
        ]


def test_a_stale_build_is_refused(cp):
    with pytest.raises(gc.DeviceError, match="rebuild"):
        cp.RawModule(code=kernels.source() + "\n// edited\n", name_expressions=kernels.KERNEL_NAMES)


# -- strictness ---------------------------------------------------------------------------
def test_no_implicit_conversion_to_numpy(cp):
    a = cp.arange(4)
    with pytest.raises(TypeError, match="get()"):
        np.asarray(a)
    with pytest.raises(TypeError, match="host"):
        a + np.arange(4)
    with pytest.raises(TypeError, match="host"):
        np.arange(4) + a
    with pytest.raises(TypeError, match="cupy.cumsum"):
        cp.cumsum(np.arange(4))
    with pytest.raises(TypeError, match="cupy.concatenate"):
        cp.concatenate([a, np.arange(4)])


def test_a_host_array_argument_is_refused(cp, keep_args):
    keep_args[2] = np.arange(5, dtype=np.uint64)
    with pytest.raises(TypeError, match=r"gc::keep_rows: argument 2 \(const uint64_t\*\) is a host"):
        keep_rows(cp)((1,), (256,), tuple(keep_args))


@pytest.mark.parametrize(
    "k,value,message",
    [
        (0, lambda cp: cp.zeros(6, dtype=cp.int32), r"argument 0 \(const int64_t\*\) is a device array of int32"),
        (6, lambda cp: cp.zeros(5, dtype=cp.uint8), r"argument 6 \(bool\*\) is a device array of uint8"),
        (1, lambda cp: cp.zeros(10, dtype=cp.int32)[::2], r"argument 1 \(const int32_t\*\) is a strided view"),
        (3, lambda cp: 1.0, r"argument 3 \(const double\*\): needs a device array"),
        (3, lambda cp: np.uint64(12345), r"argument 3 \(const double\*\): needs a device array"),
        (4, lambda cp: 7, r"argument 4 \(uint64_t\): needs np.uint64\(...\), got int"),
        (4, lambda cp: np.int64(7), r"argument 4 \(uint64_t\): needs np.uint64\(...\), got int64 of int64"),
        (5, lambda cp: np.int32(5), r"argument 5 \(int64_t\): needs np.int64\(...\), got int32 of int32"),
        (5, lambda cp: cp.asarray(np.int64(5)), r"argument 5 \(int64_t\): needs np.int64\(...\), got ndarray"),
    ],
)
def test_an_argument_of_another_type_is_refused(cp, keep_args, k, value, message):
    keep_args[k] = value(cp)
    with pytest.raises(TypeError, match=message):
        keep_rows(cp)((1,), (256,), tuple(keep_args))


def test_launch_shape_and_count_are_checked(cp, keep_args):
    kernel = keep_rows(cp)
    with pytest.raises(TypeError, match="takes 7 arguments, got 6"):
        kernel((1,), (256,), tuple(keep_args[:-1]))
    with pytest.raises(TypeError, match="grid must be a tuple"):
        kernel(1, (256,), tuple(keep_args))
    with pytest.raises(ValueError, match="1024 threads"):
        kernel((1,), (2048,), tuple(keep_args))
    with pytest.raises(ValueError, match="no shared memory"):
        kernel((1,), (256,), tuple(keep_args), shared_mem=1024)
    module = cp.RawModule(code=kernels.source(), name_expressions=("gc::keep_rows",))
    with pytest.raises(ValueError, match="name_expressions"):
        module.get_function("gc::compact_matches")
    with pytest.raises(cp.cuda.CUDARuntimeError, match="invalid device"):
        cp.cuda.Device(1)


def test_a_valid_launch_computes_and_a_null_pointer_passes(cp, keep_args):
    keep_rows(cp)((1,), (256,), tuple(keep_args))
    assert keep_args[6].get().tolist() == [True] * 5
    keep_args[5] = np.int64(0)  # no rows: nothing is read, so null pointers are fine
    keep_args[:4] = [np.uint64(0)] * 4
    keep_rows(cp)((1,), (256,), tuple(keep_args))


# -- memory -------------------------------------------------------------------------------
def test_an_out_of_bounds_write_is_caught(cp, keep_args):
    keep_args[6] = cp.zeros(4, dtype=cp.bool_)  # one row short: row 4 writes past the end
    with pytest.raises(emulated_cupy.EmulationError, match=r"gc::keep_rows wrote outside argument 6 \(bool\*, 4"):
        keep_rows(cp)((1,), (256,), tuple(keep_args))


def test_guards_on_both_sides():
    from gpu_curate.emulated_cupy._memory import ALIGN, Allocation

    for side in (-1, 10):
        a = Allocation(10)
        assert a.guards_intact() and (a.raw.ctypes.data + a.start) % ALIGN == 0
        a.raw[a.start + side] ^= 0xFF
        assert not a.guards_intact()


def test_empty_is_visibly_unwritten_and_views_share_memory(cp):
    assert cp.empty(3, dtype=cp.int32).get().view(np.uint8).tolist() == [0xCD] * 12
    a = cp.arange(6, dtype=cp.int64)
    a[1:][:2] = cp.asarray(np.array([10, 11]))
    a.view(cp.uint64)[5] = 2**63
    assert a.get().tolist() == [0, 10, 11, 3, 4, -(2**63)]
    assert int(a[2]) == 11 and a[-1].shape == () and isinstance(a[2], cp.ndarray)


def test_whitelisted_numpy_functions_give_device_arrays(cp):
    host = np.array([5, 1, 4, 1, 5, 9, 2, 6], dtype=np.int64)
    a = cp.asarray(host)
    for name in ("argsort", "diff", "flatnonzero", "cumsum"):
        got = getattr(cp, name)(a)
        assert isinstance(got, cp.ndarray) and np.array_equal(got.get(), getattr(np, name)(host)), name
    assert cp.take(a, cp.asarray(np.array([7, 0]))).get().tolist() == [6, 5]
    assert cp.searchsorted(cp.asarray(np.sort(host)), a).get().tolist() == np.searchsorted(np.sort(host), host).tolist()
    assert (a.sum() == 33).item() and isinstance(a.max(), cp.ndarray)


# -- transfers ----------------------------------------------------------------------------
def test_transfers_are_counted_by_site(cp):
    a = cp.asarray(np.arange(10, dtype=np.int32))  # 40 bytes up
    b = a[cp.asarray(np.array([1, 2]))] * 2  # 16 up (the index), the rest on the device
    a[np.array([0])] = 7  # 8 up (the index; a scalar value is a kernel argument)
    assert b.get().tolist() == [2, 4] and int(a[0]) == 7 and bool(a[0] > 0)  # 8 + 4 + 1 down
    c = a.copy()  # 40 on the device
    site = __name__ + ".test_transfers_are_counted_by_site"
    moved = cp.transfers()
    assert moved.to_device == {site: 40 + 16 + 8} and moved.to_host == {site: 13}
    assert moved.on_device == {site: c.nbytes}
    cp.reset_transfers()
    assert cp.transfers().bytes_to_device == cp.transfers().bytes_to_host == 0


def test_matching_moves_only_the_column_and_two_totals(cp, small):
    arr = pa.array(["x", "a red car.", None, "red red car", "car red"] * 50).slice(3)
    window = gpu_strings.arrow_window(arr)
    table_bytes = sum(v.nbytes for _, v in gpu_engine.table_arguments(small.tables) if isinstance(v, np.ndarray))
    column_bytes = window.chars.nbytes + window.offsets.nbytes + window.validity.nbytes
    gpu_engine.clear_device_tables()
    on_device = gpu_engine.match_gpu_device(arr, small)
    moved = cp.transfers()
    assert moved.to_device == {
        "gpu_curate.gpu_engine.device_tables": table_bytes,
        "gpu_curate.gpu_strings.strings_from_arrow": column_bytes,
    }
    assert moved.to_host == {
        "gpu_curate.gpu_engine.match_groups": 24
    }  # two totals and the walk-agreement check, int64 each
    cp.reset_transfers()
    gpu_engine.match_gpu_device(arr, small)  # tables stay on the device
    assert cp.transfers().to_device == {"gpu_curate.gpu_strings.strings_from_arrow": column_bytes}
    cp.reset_transfers()
    result = on_device.to_host()
    assert cp.transfers().bytes_to_host == result.offsets.nbytes + result.entry_ids.nbytes
    _equal(result, match_cpu(arr, small))


def test_sampling_on_device_inputs_uploads_only_p(cp, small):
    texts = ["red car", "x", None, "car", "red"] * 40
    res = gpu_engine.match_gpu_device(texts, small)
    keys = gpu_engine.uid_keys_gpu(pa.array([f"u{i}" for i in range(len(texts))]))
    p = np.full(small.n_entries, 0.5)
    cp.reset_transfers()
    keep = gpu_engine.keep_rows_gpu(res.offsets, res.entry_ids, keys, p, seed=3)
    assert cp.transfers().to_device == {"gpu_curate.gpu_engine._device_array": p.nbytes}
    assert cp.transfers().bytes_to_host == 0
    host = res.to_host()
    expected = _core.keep_rows(host.offsets, host.entry_ids, uid_keys(pa.array([f"u{i}" for i in range(200)])), p, 3, 1)
    np.testing.assert_array_equal(keep.get(), expected)


# -- results equal the CPU engine's -------------------------------------------------------
def _equal(a: gc.MatchResult, b: gc.MatchResult) -> None:
    np.testing.assert_array_equal(a.offsets, b.offsets)
    np.testing.assert_array_equal(a.entry_ids, b.entry_ids)


def test_real_data_equals_cpu_engine(cp):
    md = gc.Metadata.load(shared("metadata/en_500k.json"))
    automaton = gc.Automaton.for_metadata(md)
    texts = shared("alt_text/laion_style_10k.txt").read_text(encoding="utf-8").split("\n")[:-1]
    for arr in (pa.array(texts), pa.array(texts, pa.large_string()).slice(77, 5000)):
        got = gpu_engine.match_gpu(arr, automaton)
        assert len(got.entry_ids) > len(arr)
        _equal(got, match_cpu(arr, automaton))


# -- the switch ---------------------------------------------------------------------------
def test_auto_never_picks_the_emulated_device(cp):
    assert resolve_device("auto") == "cpu"
    assert resolve_device("gpu") == "gpu"
    assert gpu_backend.device_label("gpu") == "gpu (emulated)" and gpu_backend.device_label("cpu") == "cpu"
    assert gpu_backend.missing(need_cudf=True) == ["cuDF (the emulated device has none)"]


def test_the_switch_takes_only_yes_or_no(monkeypatch):
    monkeypatch.setenv(gpu_backend.EMULATE_ENV, "maybe")
    with pytest.raises(gc.DeviceError, match="GPU_CURATE_EMULATE"):
        gpu_backend.emulated()
    monkeypatch.setenv(gpu_backend.EMULATE_ENV, "0")
    assert not gpu_backend.emulated()


def test_cli_run_says_emulated(tmp_path, monkeypatch):
    monkeypatch.setenv(gpu_backend.EMULATE_ENV, "1")
    pool = tmp_path / "pool.parquet"
    pq.write_table(pq.read_table(demo_data.POOL).slice(0, 300), pool)

    def curate(device: str) -> tuple[str, dict]:
        out = tmp_path / device
        cmd = [sys.executable, "-m", "gpu_curate", "curate", str(pool), "--metadata", str(demo_data.METADATA)]
        cmd += ["--text-column", demo_data.TEXT_COLUMN, "--out", str(out), "--device", device, "--in-process", "-q"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return res.stdout, json.loads((out / "summary.json").read_text())

    log, summary = curate("gpu")
    assert "on gpu (emulated)" in log and summary["device"] == "gpu (emulated)"
    log, summary = curate("auto")
    assert "on cpu" in log and summary["device"] == "cpu"
