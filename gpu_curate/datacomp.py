"""DataComp's subset format: the kept uids as a sorted .npy of 128-bit values."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .config import UID
from .errors import InputError
from .storage import write_npy_atomic

DATACOMP_DTYPE = np.dtype("u8,u8")  # a 128-bit uid as (high, low) 64-bit halves


def datacomp_uids(uids: Iterable[str]) -> np.ndarray:
    """DataComp's subset format: 32-hex-digit uids as sorted (high, low) pairs."""
    uids = list(uids)
    bad = next((u for u in uids if not (isinstance(u, str) and len(u) == 32 and _is_hex(u))), None)
    if bad is not None:
        raise InputError(f"--datacomp-subset needs DataComp uids (32 hex digits); got {bad!r}")
    out = np.array([(int(u[:16], 16), int(u[16:], 16)) for u in uids], DATACOMP_DTYPE)
    out.sort()
    return out


def first_non_datacomp_uid(uids: pa.Array) -> int | None:
    """Position of the first uid that is not 32 hex digits, or None: pass 1
    checks every partition with it, so a bad uid fails the run early."""
    if not (pa.types.is_string(uids.type) or pa.types.is_large_string(uids.type)):
        return 0 if len(uids) else None
    ok = pc.fill_null(pc.match_substring_regex(uids, "^[0-9a-fA-F]{32}$"), False)
    return None if pc.all(ok).as_py() else int(pc.index(ok, False).as_py())


def _is_hex(s: str) -> bool:
    try:
        int(s, 16)
        return True
    except ValueError:
        return False


def kept_subset(kept_dir: Path) -> np.ndarray:
    """The kept uids of a kept/ directory in DataComp's subset format."""
    uids = []
    for shard in sorted(Path(kept_dir).glob("part-*.parquet")):
        uids.extend(pq.read_table(shard, columns=[UID]).column(0).to_pylist())
    return datacomp_uids(uids)


def write_datacomp_subset(kept_dir: Path, path: str) -> None:
    write_npy_atomic(kept_subset(kept_dir), path)
