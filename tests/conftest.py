import os
from pathlib import Path

import pytest

# Real corpora (see shared/data/README.md there): beside the repository by default;
# GPU_CURATE_SHARED_DATA points elsewhere, or at nothing to run the suite without them.
SHARED_DATA = Path(os.environ.get("GPU_CURATE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def skip_unless_gpu(need_cudf: bool = False) -> None:
    """The one readiness check of every GPU test: CuPy and a CUDA device, or
    the emulated device under GPU_CURATE_EMULATE=1 (which has no cuDF)."""
    from gpu_curate import gpu_backend

    absent = gpu_backend.missing(need_cudf)
    if absent:
        hint = "" if gpu_backend.emulated() else f" ({gpu_backend.EMULATE_ENV}=1 runs these on the emulated device)"
        pytest.skip(f"no GPU engine here: missing {', '.join(absent)}{hint}")


@pytest.fixture
def gpu():
    skip_unless_gpu()


@pytest.fixture
def cudf(gpu):
    skip_unless_gpu(need_cudf=True)
    return pytest.importorskip("cudf", exc_type=ImportError)


# One engine list for every test that compares against the oracle: the GPU
# engine runs where a CUDA device (or the emulated one) is present and is
# skipped elsewhere.
ENGINES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]


@pytest.fixture(params=ENGINES)
def engine(request):
    if request.param == "gpu":
        skip_unless_gpu()
    return request.param


@pytest.fixture(autouse=True, scope="session")
def _automaton_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GPU_CURATE_CACHE", str(tmp_path_factory.mktemp("automaton-cache")))
    yield
    mp.undo()


def shared(rel: str) -> Path:
    path = SHARED_DATA / rel
    if not path.exists():
        pytest.skip(f"shared data {rel} not found in {SHARED_DATA} (set GPU_CURATE_SHARED_DATA)")
    return path
