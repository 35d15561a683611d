"""The on-disk cache of automata, which a damaged file must never fool.

Tables are cached as .npz (allow_pickle=False: MetaCLIP ships pickled
automata, which run code when loaded) keyed by the metadata's content hash,
so a bad file would be loaded by every later run. Hence:

- a SHA-256 of every table (name, dtype, shape, bytes) is written with them
  and compared on load: a flipped bit, a truncated or foreign file is caught;
- the tables are bounds-checked (check_tables) against what the walk in
  kernels/walk.cuh assumes, so that even tables with a matching checksum
  (written by a buggy build, or by hand) cannot send it outside an array or
  around a loop forever: every node, symbol and output record index lies
  inside its table, every hash table has an empty slot (probes end there),
  trie children are deeper than their parents, failure links and
  output-record chains lead to strictly smaller indices (so they end), and
  every entry id is below the entry count.

A bad entry is said once in the log ("gpu_curate" logger, a warning) and
rebuilt; never trusted. The checks cost a few vectorized passes over the
tables (measured in README.md's Development section).
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

import numpy as np

from .fs import quote_path
from .storage import write_atomic

CHECKSUM = "checksum_sha256"  # stored beside the tables in the .npz, not part of them
NODE_MASK = 0x7FFFFFFF  # gc::kNodeMask: a slot's target word without kHasChildren

log = logging.getLogger("gpu_curate")


class BadTables(ValueError):
    """Tables the walk must not use; the message says why."""


def checksum(tables: dict[str, np.ndarray]) -> np.ndarray:
    h = hashlib.sha256()
    for name in sorted(tables):
        a = np.ascontiguousarray(tables[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.reshape(-1).view(np.uint8))
    return np.frombuffer(h.digest(), np.uint8)


def save(tables: dict[str, np.ndarray], path: Path) -> None:
    """Write atomically, with the checksum: a crash never leaves a truncated cache file."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
            np.savez(f, **tables, **{CHECKSUM: checksum(tables)})

    write_atomic(path, write)


def load(path: Path, n_entries: int) -> dict[str, np.ndarray] | None:
    """The verified tables of a cache file, or None (said in the log) when it cannot be trusted."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            tables = {k: npz[k] for k in npz.files}
        stored = tables.pop(CHECKSUM, None)
        if stored is None:
            raise BadTables("no checksum")
        if not np.array_equal(stored, checksum(tables)):
            raise BadTables("checksum mismatch")
        check_tables(tables, n_entries)
    except Exception as e:  # a zip, npy or bounds error alike: the file is only a cache
        log.warning(
            "automaton cache %s: %s; rebuilding it", quote_path(path), " ".join(str(e).split()) or type(e).__name__
        )
        return None
    return tables


# -- bounds -----------------------------------------------------------------------
def check_tables(tables: dict[str, np.ndarray], n_entries: int) -> None:
    """Raise BadTables unless the walk can run on `tables` without leaving
    an array or looping forever (layout: kernels/walk.cuh)."""
    _require(_scalar(tables, "n_entries") == n_entries, f"n_entries is not {n_entries}")
    tok_nodes, tok_symbols, tok_codes = _automaton(tables, "tok", n_entries)
    byte_nodes, byte_symbols, byte_codes = _automaton(tables, "byte", n_entries)
    if tok_nodes:
        target, out = _slots(tables, "vocab_slots")
        offsets = _array(tables, "vocab_offsets", np.int64, 1)
        n_bytes = len(_array(tables, "vocab_bytes", np.uint8, 1))
        _require(len(offsets) == tok_symbols + 1, "vocab_offsets does not have one offset per symbol + 1")
        _require(offsets[0] >= 0 and (np.diff(offsets) >= 0).all() and offsets[-1] <= n_bytes, "vocab_offsets")
        node = target & NODE_MASK  # the root's child on the token's symbol: node = symbol + 1
        _require(not ((target != 0) & ((node < 1) | (node > tok_symbols))).any(), "vocab_slots: a symbol outside")
        tok_codes.append(out)
    _require(_array(tables, "byte_needs", np.uint8, 1).shape == (256,), "byte_needs: not one flag per byte")
    if byte_nodes:
        root = _array(tables, "byte_root", np.uint64, 2)
        _require(root.shape == (256, 2) and byte_symbols == 256, "byte_root: not one slot per byte")
        target, out = _words(root)
        _require(((target & NODE_MASK) < byte_nodes).all(), "byte_root: a node outside the automaton")
        byte_codes.append(out)
    _out_codes(tok_codes, _array(tables, "tok_out_lists", np.int32, 1), n_entries, "tok")
    _out_codes(byte_codes, _array(tables, "byte_out_lists", np.int32, 1), n_entries, "byte")


def _automaton(tables, prefix: str, n_entries: int) -> tuple[int, int, list[np.ndarray]]:
    """n_nodes, n_symbols and the out codes of one automaton's edge table:
    the token trie (no failure links) or the byte automaton (with them)."""
    n_nodes, n_symbols = _scalar(tables, f"{prefix}_n_nodes"), _scalar(tables, f"{prefix}_n_symbols")
    slots = _array(tables, f"{prefix}_edge_slots", np.uint64, 2)
    target, out = _slots(tables, f"{prefix}_edge_slots")
    if n_nodes == 0:  # the walk skips an automaton without nodes
        return 0, n_symbols, [np.zeros(0, np.int32)]
    _require(0 <= n_symbols < n_nodes < 2**31, f"{prefix}: {n_symbols} symbols, {n_nodes} nodes")
    node = target & NODE_MASK
    used = target != 0
    outside = used & ((node <= n_symbols) | (node >= n_nodes))
    _require(not outside.any(), f"{prefix}_edge_slots: a child outside the automaton")
    # Nodes are numbered by depth: a child is deeper than its parent (the key's high half),
    # so every path down the table ends.
    parent = (slots[:, 0] >> np.uint64(32)).astype(np.int64)
    _require((node[used].astype(np.int64) > parent[used]).all(), f"{prefix}_edge_slots: a child not deeper")
    if f"{prefix}_cfail" in tables or prefix == "byte":
        # A failure link (a proper suffix) goes to a smaller node: following them always reaches the root.
        cfail = _array(tables, f"{prefix}_cfail", np.int32, 1)
        _require(len(cfail) == n_nodes, f"{prefix}_cfail: not one link per node")
        deep = cfail[n_symbols + 1 :]
        _require(
            deep.min(initial=0) >= 0 and (deep < np.arange(n_symbols + 1, n_nodes, dtype=np.int32)).all(),
            f"{prefix}_cfail: a link to a node not shallower",
        )
    return n_nodes, n_symbols, [out]  # an empty slot's out is 0, a valid code: no need to mask


def _out_codes(codes: list[np.ndarray], records: np.ndarray, n_entries: int, what: str) -> None:
    """Out codes (walk.cuh, emit_out): -1, an entry id, or -2 - offset of a
    record [count, next code, count entry ids]; check every record that the
    codes reach, following `next` (which must go to an earlier record)."""
    _require(all(c.max(initial=-1) < n_entries for c in codes), f"{what}: an entry id out of range")
    n = len(records)
    seen = np.zeros(n + 1, bool)  # a mark per record offset (sets by mask: np.unique is slow here)
    offsets = np.concatenate([-2 - c[c <= -2].astype(np.int64) for c in codes])
    todo = _new_offsets(offsets, seen, n, what)
    starts, ends = [], []
    while len(todo):
        count = records[todo].astype(np.int64)
        _require(((count >= 0) & (todo + 2 + count <= n)).all(), f"{what}_out_lists: a record past the end")
        starts.append(todo + 2)
        ends.append(todo + 2 + count)
        nxt = records[todo + 1].astype(np.int64)
        _require((nxt < n_entries).all(), f"{what}_out_lists: a next code out of range")
        chained = nxt <= -2
        _require((-2 - nxt[chained] < todo[chained]).all(), f"{what}_out_lists: a chain that does not go back")
        todo = _new_offsets(-2 - nxt[chained], seen, n, what)
    if starts:  # the entry ids of every record reached: positions covered by [start, end) ranges
        depth = np.cumsum(
            np.bincount(np.concatenate(starts), minlength=n + 1) - np.bincount(np.concatenate(ends), minlength=n + 1)
        )
        entries = records[depth[:n] > 0]
        _require(entries.min(initial=0) >= 0 and entries.max(initial=0) < n_entries, f"{what}_out_lists: an entry id")


def _new_offsets(offsets: np.ndarray, seen: np.ndarray, n: int, what: str) -> np.ndarray:
    """The record offsets not checked before, sorted and unique; marks them seen."""
    _require(((offsets >= 0) & (offsets + 2 <= n)).all(), f"{what}_out_lists: a record past the end")
    mark = np.zeros(len(seen), bool)
    mark[offsets] = True
    mark &= ~seen
    seen |= mark
    return np.flatnonzero(mark)


def _slots(tables, name: str) -> tuple[np.ndarray, np.ndarray]:
    a = _array(tables, name, np.uint64, 2)
    n = a.shape[0]
    _require(a.shape[1] == 2 and n >= 1 and n & (n - 1) == 0, f"{name}: not a power-of-two slot table")
    target, out = _words(a)
    _require((target == 0).any(), f"{name}: no empty slot (a probe for a missing key would never end)")
    return target, out


def _words(slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """target (node | kHasChildren, 0: empty) and out code of each slot: the
    two 32-bit halves of word 1, read in place as the walk reads gc::Slot."""
    word = slots[:, 1]
    if sys.byteorder == "little":
        halves = np.ascontiguousarray(slots).view(np.uint32).reshape(len(slots), 4)
        return halves[:, 2], halves[:, 3].view(np.int32)
    return (word & 0xFFFFFFFF).astype(np.uint32), (word >> np.uint64(32)).astype(np.uint32).view(np.int32)


def _array(tables, name: str, dtype, ndim: int) -> np.ndarray:
    _require(name in tables, f"no table {name}")
    a = tables[name]
    _require(a.dtype == dtype and a.ndim == ndim, f"{name}: {a.dtype}[{a.ndim}d], expected {np.dtype(dtype)}[{ndim}d]")
    return a


def _scalar(tables, name: str) -> int:
    return int(_array(tables, name, np.int64, 0))


def _require(ok, why: str) -> None:
    if not ok:
        raise BadTables(why)
