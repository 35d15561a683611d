"""Metadata -> flat automaton tables, one format for the CPU and GPU engines.

Two Aho-Corasick automata (see kernels/walk.cuh): one over vocabulary ids
for entries padded on both sides, one over bytes for the rest. Both are
built level by level with NumPy: at depth d every entry still longer than d
extends its node by one symbol, and np.unique over (node, symbol) names the
new nodes. Failure links follow level by level too, so the Python loops run
over depths (a few dozen), never over entries.

Tables are cached as .npz (allow_pickle=False) keyed by the metadata's
content hash: MetaCLIP ships pickled automata, which run code when loaded.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import _core
from .metadata import Metadata, string_buffers

FORMAT_VERSION = 1
AUTOMATA = ("tok", "byte")


def cache_dir() -> Path:
    """Where built automata are kept: $GPU_CURATE_CACHE or ~/.cache/gpu_curate."""
    return Path(os.environ.get("GPU_CURATE_CACHE", Path.home() / ".cache" / "gpu_curate"))


class Automaton:
    """The flat tables of one metadata list (a dict of NumPy arrays)."""

    def __init__(self, tables: dict[str, np.ndarray]):
        self.tables = tables

    @property
    def n_entries(self) -> int:
        return int(self.tables["n_entries"])

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.tables.values())

    def __repr__(self) -> str:
        n_tok, n_byte = (len(self.tables[f"{a}_fail"]) for a in AUTOMATA)
        return (
            f"Automaton({self.n_entries} entries, {n_tok} token nodes, {n_byte} byte nodes, "
            f"{self.nbytes / 2**20:.1f} MiB)"
        )

    @classmethod
    def build(cls, md: Metadata) -> "Automaton":
        left, right = md.pad_flags()
        both = left & right
        ids = np.arange(len(md), dtype=np.int32)
        tables = {"n_entries": np.array(len(md), dtype=np.int64)}
        tables.update(_token_automaton(md.entries, ids[both]))
        tables.update(_byte_automaton(md.entries, ids[~both], left[~both], right[~both]))
        return cls(tables)

    @classmethod
    def for_metadata(cls, md: Metadata, cache: bool = True) -> "Automaton":
        """Build, or load from the on-disk cache, the automaton of `md`."""
        path = cache_dir() / f"automaton-v{FORMAT_VERSION}-{md.fingerprint}.npz"
        if cache and path.is_file():
            with np.load(path, allow_pickle=False) as npz:
                return cls({k: npz[k] for k in npz.files})
        automaton = cls.build(md)
        if cache:
            automaton.save(path)
        return automaton

    def save(self, path: Path) -> None:
        """Write atomically: a crash never leaves a truncated cache file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **self.tables)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# -- hash tables ----------------------------------------------------------------
def _hash_table(keys: np.ndarray, values: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """Open-addressing table keys -> values, laid out exactly as kernels/ probe it."""
    log2 = max(1, int(np.ceil(np.log2(2 * len(keys) + 1))))  # load factor <= 1/2
    slot_keys, slot_pos = _core.build_table(np.ascontiguousarray(keys, np.uint64), log2)
    slot_vals = np.append(values, -1).astype(np.int32)[slot_pos]  # position -1 -> empty (-1)
    return {f"{prefix}_slot_keys": slot_keys, f"{prefix}_slot_vals": slot_vals}


# -- generic Aho-Corasick over integer symbol sequences ------------------------
def build_aho_corasick(
    seq_offsets: np.ndarray, symbols: np.ndarray, entry_ids: np.ndarray, n_symbols: int, prefix: str
) -> dict[str, np.ndarray]:
    """Aho-Corasick tables for sequences symbols[seq_offsets[k]:seq_offsets[k+1]].

    Sequence k reports entry_ids[k]; equal sequences share a node and report
    all their ids.
    """
    n_seq = len(entry_ids)
    if n_seq == 0:
        return _empty_automaton(prefix)
    lengths = np.diff(seq_offsets)
    if lengths.min() < 1:
        raise ValueError("empty symbol sequence")
    node = np.zeros(n_seq, np.int64)
    edge_keys = []  # per level, sorted; levels come in increasing parent order
    n_nodes = 1
    for depth in range(int(lengths.max())):
        active = np.flatnonzero(lengths > depth)
        keys = (node[active] << 32) | symbols[seq_offsets[active] + depth].astype(np.int64)
        uniq, inverse = np.unique(keys, return_inverse=True)
        node[active] = n_nodes + inverse
        edge_keys.append(uniq)
        n_nodes += len(uniq)
    # Node v >= 1 is the child of edge v - 1; edge keys are globally sorted.
    keys = np.concatenate(edge_keys)
    parent = np.concatenate([[-1], keys >> 32])
    symbol = np.concatenate([[-1], keys & 0xFFFFFFFF])
    level_ends = np.cumsum([1] + [len(k) for k in edge_keys])

    def child(state: np.ndarray, sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = (state << 32) | sym
        pos = np.minimum(np.searchsorted(keys, k), len(keys) - 1)
        return pos + 1, keys[pos] == k

    # Outputs: entries grouped by their terminal node, in id order.
    order = np.argsort(node, kind="stable")
    out_entries = entry_ids[order].astype(np.int32)
    out_offsets = np.zeros(n_nodes + 1, np.int64)
    np.add.at(out_offsets, node + 1, 1)
    out_offsets = np.cumsum(out_offsets)
    has_out = np.diff(out_offsets) > 0

    fail = np.zeros(n_nodes, np.int64)
    dict_link = np.full(n_nodes, -1, np.int64)
    for lo, hi in zip(level_ends[:-1], level_ends[1:]):
        v = np.arange(lo, hi)
        if lo > 1:  # depth >= 2: follow the parent's failure chain
            f, s, pending = fail[parent[v]], symbol[v], v
            while len(pending):
                c, found = child(f, s)
                done = found | (f == 0)
                fail[pending[done]] = np.where(found, c, 0)[done]
                pending, f, s = pending[~done], fail[f[~done]], s[~done]
        fv = fail[v]
        dict_link[v] = np.where(has_out[fv], fv, dict_link[fv])

    root_next = np.zeros(n_symbols, np.int32)
    level1 = np.arange(1, level_ends[1])
    root_next[symbol[level1]] = level1
    deep = np.arange(level_ends[1], n_nodes)
    tables = {
        f"{prefix}_root_next": root_next,
        f"{prefix}_fail": fail.astype(np.int32),
        f"{prefix}_dict_link": dict_link.astype(np.int32),
        f"{prefix}_out_offsets": out_offsets.astype(np.int32),
        f"{prefix}_out_entries": out_entries,
    }
    tables.update(_hash_table(keys[deep - 1].astype(np.uint64), deep, f"{prefix}_edge"))
    return tables


def _empty_automaton(prefix: str) -> dict[str, np.ndarray]:
    tables = {f"{prefix}_{k}": np.zeros(0, np.int32) for k in ("root_next", "fail", "dict_link", "out_entries")}
    tables[f"{prefix}_out_offsets"] = np.zeros(1, np.int32)
    tables.update(_hash_table(np.zeros(0, np.uint64), np.zeros(0, np.int32), f"{prefix}_edge"))
    return tables


# -- the two automata ------------------------------------------------------------
def _token_automaton(entries: pa.Array, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Entries padded on both sides, as sequences of vocabulary ids.

    " e " occurs in the spaced text exactly when e's tokens (e split on
    single spaces, empty tokens kept) occur as consecutive text tokens.
    """
    data, off = string_buffers(entries.take(pa.array(ids)))
    is_space = data == ord(" ")
    spaces = np.flatnonzero(is_space)
    # Tokens: starts are entry starts and bytes after a space; ends are
    # spaces and entry ends. Sorted separately, they pair up in order.
    starts = np.sort(np.concatenate([off[:-1], spaces + 1]))
    ends = np.sort(np.concatenate([spaces, off[1:]]))
    tokens_per_entry = 1 + np.diff(np.concatenate([[0], np.cumsum(is_space)[off[1:] - 1]]))
    token_offsets = np.concatenate([[0], np.cumsum(tokens_per_entry)])

    # Exact vocabulary by Arrow's hash-based dictionary encoding.
    token_bytes = data[~is_space]
    token_off = np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64)
    tokens = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(starts), [None, pa.py_buffer(token_off), pa.py_buffer(token_bytes)]
    )
    encoded = tokens.dictionary_encode()
    token_ids = encoded.indices.to_numpy().astype(np.int32)
    vocab_bytes, vocab_off = string_buffers(encoded.dictionary)
    hashes = _core.hash_slices(vocab_bytes, vocab_off[:-1].copy(), vocab_off[1:].copy())
    tables = {"vocab_offsets": vocab_off.astype(np.int64), "vocab_bytes": np.ascontiguousarray(vocab_bytes)}
    tables.update(_hash_table(hashes, np.arange(len(hashes)), "vocab"))
    tables.update(build_aho_corasick(token_offsets, token_ids, ids, len(hashes), "tok"))
    return tables


def _byte_automaton(entries: pa.Array, ids: np.ndarray, left: np.ndarray, right: np.ndarray) -> dict[str, np.ndarray]:
    """Entries with an unpadded end, as padded byte strings."""
    data, off = string_buffers(entries.take(pa.array(ids)))
    lengths = np.diff(off) + left + right
    new_off = np.concatenate([[0], np.cumsum(lengths)])
    padded = np.full(new_off[-1], ord(" "), np.uint8)
    owner = np.repeat(np.arange(len(ids)), np.diff(off))
    padded[np.arange(len(data)) - off[owner] + new_off[owner] + left[owner]] = data
    return build_aho_corasick(new_off, padded.astype(np.int32), ids, 256, "byte")
