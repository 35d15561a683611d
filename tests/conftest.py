import os
from pathlib import Path

import pytest

# Real corpora (see shared/data/README.md there): beside the repository by default;
# GPU_CURATE_SHARED_DATA points elsewhere, or at nothing to run the suite without them.
SHARED_DATA = Path(os.environ.get("GPU_CURATE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _gpu_ready() -> bool:
    try:
        from gpu_curate import gpu_engine
    except ImportError:
        return False
    return gpu_engine.available()


# One engine list for every test that compares against the oracle: the GPU
# engine runs where a CUDA device is present and is skipped elsewhere.
ENGINES = ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)]


@pytest.fixture(params=ENGINES)
def engine(request):
    if request.param == "gpu" and not _gpu_ready():
        pytest.skip("no CUDA device with CuPy here")
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
