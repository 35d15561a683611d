"""The GPU kernels compile everywhere CI runs, with no GPU needed.

nvcc compiles kernels/gpu_curate.cu for sm_90 (the code a GPU would run);
NVRTC, CuPy's run-time compiler, compiles the same source as gpu_engine hands
it over (headers inlined, same name expressions, CuPy's options for sm_90)
from the nvidia-cuda-nvrtc wheel of the test extra, without CuPy; g++
compiles the shared headers, and the emulated device's host build of the
kernels, with every warning as an error.
"""

import ctypes
import ctypes.util
import importlib.metadata
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import gpu_curate as gc
from gpu_curate import gpu_engine, kernels

KERNEL_DIR = Path(kernels.KERNEL_DIR)
CU = KERNEL_DIR / "gpu_curate.cu"


def _nvcc() -> str:
    roots = [os.environ.get("CUDA_HOME"), "/usr/local/cuda"]
    for candidate in [shutil.which("nvcc"), *(str(Path(r, "bin", "nvcc")) for r in roots if r)]:
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("nvcc not found (CUDA toolkit not installed here)")


def _run(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_nvcc_compiles_every_kernel_for_sm90(tmp_path):
    nvcc = _nvcc()
    flags = ["-arch=sm_90", "-std=c++17", f"-I{KERNEL_DIR}", "--Werror", "all-warnings"]
    _run([nvcc, *flags, "-Xcompiler", "-Wall,-Wextra,-Werror", "-c", CU, "-o", tmp_path / "gpu_curate.o"], tmp_path)
    _run([nvcc, *flags, "-ptx", CU, "-o", tmp_path / "gpu_curate.ptx"], tmp_path)
    entries = re.findall(r"\.entry\s+(\w+)", (tmp_path / "gpu_curate.ptx").read_text())
    # Mangled names carry the unqualified kernel name; the templates have an
    # instance per offset type (int32, int64).
    expected = {"count_matches": 2, "write_matches": 2, "compact_matches": 1, "keep_rows": 1, "hash_rows": 2}
    assert {name: sum(name in e for e in entries) for name in expected} == expected, entries


# What CuPy adds to a RawModule's options when NVRTC (12.x/13.x) compiles for
# an sm_90 device (cupy/cuda/compiler.py, cupy/_core/core.pyx): -ftz=true;
# -arch=sm_90, a cubin straight away (PTX only with CUPY_COMPILE_WITH_PTX);
# --device-as-default-execution-space (no jitify); --std=c++17 only where the
# options have no -std, and ours do. Its -I paths name headers our inlined
# source never includes.
CUPY_SM90_OPTIONS = ("-ftz=true", "-arch=sm_90", "--device-as-default-execution-space")


def _libnvrtc() -> ctypes.CDLL:
    """libnvrtc without CuPy: the nvidia-cuda-nvrtc wheel of the test extra,
    else one on the library path. Missing under CI is a failure, not a skip."""
    candidates = []
    try:
        dist = importlib.metadata.distribution("nvidia-cuda-nvrtc")
        candidates += [dist.locate_file(f) for f in dist.files or () if f.name.startswith("libnvrtc.so")]
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates += [name for name in [ctypes.util.find_library("nvrtc")] if name]
    for candidate in candidates:
        try:
            return ctypes.CDLL(str(candidate))
        except OSError:
            continue
    reason = "libnvrtc not found (pip install nvidia-cuda-nvrtc, part of the test extra)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class _Program:
    """An NVRTC program through its C API (nvrtc.h): the calls CuPy makes."""

    def __init__(self, lib: ctypes.CDLL, source: str, name: str):
        self.lib, self.handle = lib, ctypes.c_void_p()
        self.check(lib.nvrtcCreateProgram(ctypes.byref(self.handle), source.encode(), name.encode(), 0, None, None))

    def check(self, status: int) -> None:
        if status != 0:
            self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p
            pytest.fail(f"NVRTC: {self.lib.nvrtcGetErrorString(status).decode()}\n{self.log()}")

    def log(self) -> str:
        size = ctypes.c_size_t()
        self.lib.nvrtcGetProgramLogSize(self.handle, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        self.lib.nvrtcGetProgramLog(self.handle, buf)
        return buf.value.decode()

    def compile(self, options) -> None:
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        self.check(self.lib.nvrtcCompileProgram(self.handle, len(options), opts))

    def lowered_name(self, expression: str) -> str:
        name = ctypes.c_char_p()
        self.check(self.lib.nvrtcGetLoweredName(self.handle, expression.encode(), ctypes.byref(name)))
        return name.value.decode()

    def cubin(self) -> bytes:
        size = ctypes.c_size_t()
        self.check(self.lib.nvrtcGetCUBINSize(self.handle, ctypes.byref(size)))
        buf = ctypes.create_string_buffer(size.value)
        self.check(self.lib.nvrtcGetCUBIN(self.handle, buf))
        return buf.raw

    def close(self) -> None:
        self.lib.nvrtcDestroyProgram(ctypes.byref(self.handle))


def test_nvrtc_compiles_the_source_gpu_engine_loads():
    """kernels.raw_module's source, name expressions and options, plus
    CuPy's own for sm_90, through NVRTC: a warning-free cubin with every kernel."""
    prog = _Program(_libnvrtc(), kernels.source(), "gpu_curate.cu")
    try:
        for name in kernels.KERNEL_NAMES:
            prog.check(prog.lib.nvrtcAddNameExpression(prog.handle, name.encode()))
        prog.compile([*kernels.NVRTC_OPTIONS, *CUPY_SM90_OPTIONS])
        assert prog.log().strip("\x00\n ") == ""  # no warnings either
        lowered = [prog.lowered_name(name) for name in kernels.KERNEL_NAMES]
        assert all(s.startswith("_ZN2gc") for s in lowered) and len(set(lowered)) == len(lowered)
        cubin = prog.cubin()
        assert cubin[:4] == b"\x7fELF" and all(s.encode() in cubin for s in lowered)
    finally:
        prog.close()


def test_source_inlines_each_header_once_with_line_directives():
    text = kernels.source()
    assert '#include "' not in text and "#pragma once" not in text
    directive = re.compile(r'^#line (\d+) "(.+)"$')
    files: dict[str, list[str]] = {}
    where = None
    for line in text.splitlines():
        m = directive.match(line)
        if m:
            path = m.group(2)
            files.setdefault(path, Path(path).read_text(encoding="utf-8").splitlines())
            where = [path, int(m.group(1))]
            continue
        original = files[where[0]][where[1] - 1]
        # Every line is the real file's line at the position #line claims,
        # except `#pragma once`, which is blanked.
        assert line == original or (line == "" and "pragma once" in original), (where, line)
        where[1] += 1
    assert {Path(p).name for p in files} == {"gpu_curate.cu", "walk.cuh", "sample.cuh", "common.cuh"}
    assert sum(line.startswith('#line 1 "') for line in text.splitlines()) == 4


def _table_params_of_kernels() -> list[tuple[str, str]]:
    """(C type, name) of GC_TABLE_PARAMS, expanded by the C preprocessor."""
    cpp = shutil.which("cpp") or pytest.skip("no C preprocessor")
    defines = re.findall(r"^#define GC_\w+.*?(?<!\\)$", CU.read_text(), flags=re.M | re.S)
    proc = subprocess.run([cpp, "-P"], input="\n".join(defines) + "\nGC_TABLE_PARAMS\n", capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    params = []
    for p in " ".join(proc.stdout.split()).split(","):
        m = re.fullmatch(r"\s*(?:const\s+)?(\w+)\s*(\*?)\s*(\w+)\s*", p)
        params.append((m.group(1) + m.group(2), m.group(3)))
    return params


def test_table_arguments_follow_kernel_parameters():
    tables = gc.Automaton.build(gc.Metadata(["red", "red car", "中国"], padding="worldwide")).tables
    args = gpu_engine.table_arguments(tables)
    params = _table_params_of_kernels()
    assert [name for name, _ in args] == [name for _, name in params]
    dtypes = {"int32_t": np.int32, "int64_t": np.int64, "uint64_t": np.uint64, "uint8_t": np.uint8}
    for (name, value), (ctype, _) in zip(args, params):
        expected = np.dtype(dtypes[ctype.rstrip("*")])
        if ctype.endswith("*"):
            assert isinstance(value, np.ndarray) and value.flags.c_contiguous, name
        else:
            assert isinstance(value, np.generic), name
        assert value.dtype == expected, (name, value.dtype, expected)


def test_shared_headers_compile_warning_free_on_the_host(tmp_path):
    gxx = shutil.which("g++") or pytest.skip("g++ not found")
    driver = tmp_path / "driver.cpp"
    driver.write_text(
        '#include "sample.cuh"\n#include "walk.cuh"\n'
        "struct Count { long n = 0; void operator()(int32_t) { ++n; } };\n"
        "long count(const gc::Tables& t, const gc::StringColumn<int64_t>& c) { Count e; gc::match_row(t, c, 0, e); return e.n; }\n"
        "bool keep(const int32_t* ids, const double* p) { return gc::keep_row(1, 2, ids, 1, p); }\n"
    )
    _run(
        [gxx, "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{KERNEL_DIR}", "-c", driver, "-o", tmp_path / "d.o"],
        tmp_path,
    )


def test_emulated_device_kernels_compile_warning_free_on_the_host(tmp_path):
    """gpu_curate.cu under emulation.cuh, as gpu_curate/_emulated_device.cpp builds it."""
    gxx = shutil.which("g++") or pytest.skip("g++ not found")
    driver = tmp_path / "driver.cpp"
    driver.write_text(
        '#include "emulation.cuh"\n#include "gpu_curate.cu"\n'
        "#if !defined(__CUDA_ARCH__) || defined(GC_HOST_WIDE) || defined(GC_HOST_SIMD)\n"
        '#error "the emulated kernels must take the device branches"\n#endif\n'
        "void run(const void* const* params) { gc_emu::launch(&gc::count_matches<int64_t>, dim3(2), dim3(32), params, 2); }\n"
    )
    # Unused parameters are expected: the device branches drop the host's
    # prefetch hints (walk.cuh, GC_PREFETCH), and nvcc does not warn there either.
    flags = ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", f"-I{KERNEL_DIR}"]
    _run([gxx, *flags, "-c", driver, "-o", tmp_path / "d.o"], tmp_path)
