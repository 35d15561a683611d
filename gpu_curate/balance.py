"""Entry probabilities and the keep decision (docs/semantics.md sections 6-7).

The decision itself lives in kernels/sample.cuh (shared with the GPU); this
module computes its inputs: p per entry and a 64-bit key per uid.
"""

from __future__ import annotations

import hashlib

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from . import _core
from .results import MatchResult
from .texts import string_buffers


def entry_probabilities(counts: np.ndarray, t: float) -> np.ndarray:
    """p[i] = 1 if count[i] < t else t / count[i] (float64)."""
    if not t > 0:
        raise ValueError(f"t must be > 0, got {t}")
    counts = counts.astype(np.float64)
    return np.where(counts < t, 1.0, t / np.maximum(counts, 1.0))


def tail_share(counts: np.ndarray, t: float) -> float:
    """Share of all matches that fall on entries with count < t."""
    total = counts.sum(dtype=np.float64)
    return float(counts[counts < t].sum(dtype=np.float64) / total) if total else 0.0


def threshold_for_share(counts: np.ndarray, share: float) -> int | None:
    """The count value at which the cumulative share of the ascending sorted
    (non-zero) counts is closest to `share`; ties take the smallest count.
    None for a language with no matches."""
    c = np.sort(counts[counts > 0]).astype(np.float64)
    if not len(c):
        return None
    cumulative = np.cumsum(c) / c.sum()
    return int(c[np.argmin(np.abs(cumulative - share))])  # argmin: first, i.e. smallest, on ties


def worldwide_thresholds(
    counts: np.ndarray, ranges: dict[str, tuple[int, int]], t_en: float
) -> dict[str, float | None]:
    """t per language: English keeps t_en; every other language gets the
    count matching English's tail share (MetaCLIP 2)."""
    if "en" not in ranges:
        raise ValueError("worldwide thresholds need an 'en' metadata list")
    lo, hi = ranges["en"]
    p_tail = tail_share(counts[lo:hi], t_en)
    out: dict[str, float | None] = {}
    for lang, (lo, hi) in ranges.items():
        out[lang] = float(t_en) if lang == "en" else threshold_for_share(counts[lo:hi], p_tail)
    return out


def worldwide_probabilities(counts: np.ndarray, ranges: dict[str, tuple[int, int]], thresholds: dict) -> np.ndarray:
    p = np.zeros(len(counts), np.float64)  # a language without threshold keeps nothing
    for lang, (lo, hi) in ranges.items():
        if thresholds[lang] is not None:
            p[lo:hi] = entry_probabilities(counts[lo:hi], thresholds[lang])
    return p


def lang_ranges(counts_table: pa.Table) -> dict[str, tuple[int, int]] | None:
    """[first, end) entry ids per language of a worldwide entry_counts table
    (languages own contiguous id ranges, worldwide.py); None for one list."""
    if "lang" not in counts_table.column_names:
        return None
    langs = counts_table.column("lang").to_numpy(zero_copy_only=False)
    names, starts, sizes = np.unique(langs, return_index=True, return_counts=True)
    return {str(n): (int(s), int(s + k)) for n, s, k in zip(names, starts, sizes)}


@dataclass(frozen=True)
class Balancing:
    """What sampling needs from the counts: p per entry, which entries are
    head (count >= their threshold: sampled down, or at exactly t), and the
    per-language thresholds of a worldwide run (None for one list)."""

    p: np.ndarray  # float64
    head: np.ndarray  # bool
    thresholds: dict[str, float | None] | None

    def head_only(self) -> np.ndarray:
        """p with tail entries zeroed: a row that passes it was kept by a head draw."""
        return np.where(self.head, self.p, 0.0)

    def fingerprint(self) -> str:
        """A content hash of p and head: what a worker caches p on its GPU under."""
        return probabilities_key(self.p) + probabilities_key(self.head)


def probabilities_key(values: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(values).view(np.uint8), digest_size=12).hexdigest()


def balancing(counts: np.ndarray, t: float, t_en: float, ranges: dict[str, tuple[int, int]] | None) -> Balancing:
    """docs/semantics.md section 6 for one list (t) or per language (t_en, ranges from lang_ranges)."""
    if ranges is None:
        return Balancing(entry_probabilities(counts, t), counts >= t, None)
    thresholds = worldwide_thresholds(counts, ranges, t_en)
    head = np.zeros(len(counts), bool)  # a language without threshold keeps nothing: no head either
    for lang, (lo, hi) in ranges.items():
        if thresholds[lang] is not None:
            head[lo:hi] = counts[lo:hi] >= thresholds[lang]
    return Balancing(worldwide_probabilities(counts, ranges, thresholds), head, thresholds)


def uid_keys(uids: pa.Array) -> np.ndarray:
    """64-bit sampling key per uid: the value of integer uids, hash_bytes of
    the UTF-8 bytes of string uids (kernels/common.cuh)."""
    uids = uids.combine_chunks() if isinstance(uids, pa.ChunkedArray) else uids
    if pa.types.is_integer(uids.type):
        return uids.cast(pa.int64()).to_numpy(zero_copy_only=False).view(np.uint64)
    data, off = string_buffers(uids)
    return _core.hash_slices(data, off[:-1].copy(), off[1:].copy())


def keep_mask(result: MatchResult, keys: np.ndarray, p: np.ndarray, seed: int, threads: int = 1) -> np.ndarray:
    """docs/semantics.md section 7: keep when u(seed, uid, i) < p[i] for some matched i."""
    return _core.keep_rows(result.offsets, result.entry_ids, keys, p, np.uint64(seed), threads)
