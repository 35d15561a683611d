"""Metadata -> flat automaton tables, one format for the CPU and GPU engines.

Two automata (layout: kernels/walk.cuh): a trie over vocabulary symbols for
entries padded on both sides (the walk starts at every token, so a node
reports only the entries that end there), and an Aho-Corasick automaton over
bytes for the rest. Both are built level by level with NumPy: at depth d
every entry still longer than d extends its node by one symbol, and
np.unique over (node, symbol) names the new nodes. The byte automaton's
failure links, their shortcuts (cfail) and output records follow level by
level too, so the Python loops run over depths (a few dozen), never over
entries. Hash-table placement and look-ups run in _core (C++), with the very
probe sequence the walk uses.

Tables are cached on disk keyed by the metadata's content hash, verified
on load (automaton_cache.py).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import _core, automaton_cache
from .metadata import Metadata
from .metadata_text import NEVER_MATCH_PATTERN
from .texts import string_buffers

FORMAT_VERSION = 6  # 4: the token trie; 5: the cache file holds a checksum; 6: byte_needs
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
        n_tok, n_byte = (int(self.tables[f"{a}_n_nodes"]) for a in AUTOMATA)
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
            tables = automaton_cache.load(path, len(md))  # None (and a warning) when it cannot be trusted
            if tables is not None:
                return cls(tables)
        automaton = cls.build(md)
        if cache:
            automaton.save(path)
        return automaton

    def save(self, path: Path) -> None:
        """Write atomically, with a checksum that loading verifies."""
        automaton_cache.save(self.tables, path)


# -- hash tables ----------------------------------------------------------------
MAX_LOAD = 0.7  # measured (benchmarks/RESULTS.md): lower loads save little time for up to 2x the memory


def _layout(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """build_table's placement of keys (slot keys, slot -> key position or -1)."""
    log2 = max(1, int(np.ceil(np.log2(len(keys) / MAX_LOAD + 1))))
    return _core.build_table(np.ascontiguousarray(keys, np.uint64), log2)


def _slot_table(keys: np.ndarray, words: np.ndarray, layout=None) -> np.ndarray:
    """Open-addressing table of gc::Slot {key, target | out << 32}, as kernels/ probe it.

    Returned as a (n_slots, 2) uint64 array; word 1 == 0 marks an empty slot.
    """
    slot_keys, slot_pos = layout if layout is not None else _layout(keys)
    return _core.slot_words(slot_keys, slot_pos, np.ascontiguousarray(words, np.uint64))


# -- tries and Aho-Corasick automata over integer symbol sequences -------------
HAS_CHILDREN = np.uint32(0x80000000)  # gc::kHasChildren
FLAT_MAX = 16  # output records longer than this chain to their dict suffix instead


class _Trie:
    """The trie of sequences symbols[seq_offsets[k]:seq_offsets[k+1]] over
    symbols 0..n_symbols-1, in the node numbering of kernels/walk.cuh.

    Node x + 1 is the root's child on symbol x; deeper nodes are numbered
    level by level, each level in (parent, symbol) order, so deep node v has
    edge key keys[v - first_deep] and keys are globally sorted. Sequence k
    ends at node end[k]; equal sequences share it.
    """

    def __init__(self, seq_offsets: np.ndarray, symbols: np.ndarray, n_symbols: int):
        lengths = np.diff(seq_offsets)
        if len(lengths) and lengths.min() < 1:
            raise ValueError("empty symbol sequence")
        symbols = symbols.astype(np.int64)
        node = symbols[seq_offsets[:-1]] + 1
        n_nodes = n_symbols + 1
        edge_keys, level_ends = [], [n_nodes]
        for depth in range(1, int(lengths.max()) if len(lengths) else 0):
            active = np.flatnonzero(lengths > depth)
            keys = (node[active] << 32) | symbols[seq_offsets[active] + depth]
            uniq, inverse = np.unique(keys, return_inverse=True)
            node[active] = n_nodes + inverse.reshape(-1)
            edge_keys.append(uniq)
            n_nodes += len(uniq)
            level_ends.append(n_nodes)
        if n_nodes >= 2**31:  # node ids share a 32-bit word with kHasChildren
            raise ValueError(f"{n_nodes} automaton nodes: more than 2^31 - 1")
        self.n_symbols, self.n_nodes, self.first_deep = n_symbols, n_nodes, n_symbols + 1
        self.end = node
        self.keys = np.concatenate(edge_keys) if edge_keys else np.zeros(0, np.int64)
        self.parent = self.keys >> 32
        self.symbol = self.keys & 0xFFFFFFFF
        self.levels = [np.arange(1, self.first_deep)] + [np.arange(lo, hi) for lo, hi in itertools.pairwise(level_ends)]
        self.layout = _layout(self.keys.astype(np.uint64))  # the edge table, also used for child look-ups
        self.has_children = np.zeros(n_nodes, bool)
        self.has_children[self.parent] = True

    def own_entries(self, entry_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per node: how many sequences end there, and their ids (CSR: start, ids)."""
        own = np.bincount(self.end, minlength=self.n_nodes)
        order = np.argsort(self.end, kind="stable")
        return own, np.concatenate([[0], np.cumsum(own)]), entry_ids[order].astype(np.int32)

    def child(self, state: np.ndarray, sym: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Child of each state on sym, and whether it exists (always, at the root)."""
        node, found = sym + 1, state == 0
        deep = np.flatnonzero(~found)
        if len(deep):
            pos = _core.find_keys(*self.layout, ((state[deep] << 32) | sym[deep]).astype(np.uint64))
            node[deep] = self.first_deep + pos
            found[deep] = pos >= 0
        return node, found

    def tables(
        self, out_code: np.ndarray, records: np.ndarray, prefix: str
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The tables every walk reads (node count, edge slots, out records) and,
        per symbol x, the slot word (target | out << 32) of the root's child x + 1."""
        if len(records) >= 2**31 - 2:
            raise ValueError("output records exceed 2^31 ints")
        target = np.arange(self.n_nodes, dtype=np.uint64) | np.where(self.has_children, HAS_CHILDREN, 0).astype(
            np.uint64
        )
        word = target | ((out_code.astype(np.uint64) & np.uint64(0xFFFFFFFF)) << np.uint64(32))
        deep = np.arange(self.first_deep, self.n_nodes)
        tables = {
            f"{prefix}_n_nodes": np.array(self.n_nodes, np.int64),
            f"{prefix}_n_symbols": np.array(self.n_symbols, np.int64),
            f"{prefix}_out_lists": records.astype(np.int32),
            f"{prefix}_edge_slots": _slot_table(self.keys, word[deep], self.layout),
        }
        return tables, word[1 : self.first_deep]


def build_trie(
    seq_offsets: np.ndarray, symbols: np.ndarray, entry_ids: np.ndarray, n_symbols: int, prefix: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A plain trie (layout: kernels/walk.cuh) whose nodes report only the
    sequences that end there: the token walk starts one walk per text token,
    so each occurrence is found at its own start and no suffix links are needed.

    Out codes: -1 none, >= 0 the one entry id, <= -2 a record [count, -1,
    ids...] at out_lists[-2 - code] (equal sequences: duplicate entries).
    Returns the tables and the root children's slot words (see _Trie.tables).
    """
    trie = _Trie(seq_offsets, symbols, n_symbols)
    own, own_start, own_entries = trie.own_entries(entry_ids)
    out_code = np.full(trie.n_nodes, -1, np.int64)
    one = np.flatnonzero(own == 1)
    out_code[one] = own_entries[own_start[one]]
    rec = np.flatnonzero(own > 1)
    size = 2 + own[rec]
    base = np.cumsum(size) - size
    records = np.empty(int(size.sum()), np.int32)
    records[base] = own[rec]
    records[base + 1] = -1
    records[np.repeat(base + 2, own[rec]) + _ranges(own[rec])] = own_entries[
        np.repeat(own_start[rec], own[rec]) + _ranges(own[rec])
    ]
    out_code[rec] = -2 - base
    return trie.tables(out_code, records, prefix)


def build_aho_corasick(
    seq_offsets: np.ndarray, symbols: np.ndarray, entry_ids: np.ndarray, n_symbols: int, prefix: str
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Aho-Corasick tables (layout: kernels/walk.cuh): the trie's tables plus
    cfail, with out codes that report every sequence ending at a node's
    position (its own, then its dict suffix's, flattened up to FLAT_MAX).

    Sequence k reports entry_ids[k]; equal sequences share a node and report
    all their ids. Returns the tables and the root children's slot words.
    """
    trie = _Trie(seq_offsets, symbols, n_symbols)
    n_nodes, first_deep, parent, symbol = trie.n_nodes, trie.first_deep, trie.parent, trie.symbol
    has_children = trie.has_children
    own, own_start, own_entries = trie.own_entries(entry_ids)

    # Per node, level by level (every link below points to a shallower node):
    # fail, cfail (nearest suffix state with children), dict link (nearest
    # suffix state with own outputs), closure size and out code.
    fail = np.zeros(n_nodes, np.int64)
    cfail = np.zeros(n_nodes, np.int64)
    dict_link = np.zeros(n_nodes, np.int64)
    closure = own.copy()
    out_code = np.full(n_nodes, -1, np.int64)
    records: list[np.ndarray] = []
    record_base = 0
    for depth, v in enumerate(trie.levels):
        if depth > 0:
            f, s, pending = fail[parent[v - first_deep]], symbol[v - first_deep], v
            while len(pending):
                c, found = trie.child(f, s)
                fail[pending[found]] = c[found]
                pending, f, s = pending[~found], fail[f[~found]], s[~found]
            fv = fail[v]
            cfail[v] = np.where(has_children[fv] | (fv == 0), fv, cfail[fv])
            dict_link[v] = np.where(own[fv] > 0, fv, dict_link[fv])
            closure[v] += closure[dict_link[v]]
        # Out codes: none, one entry inline, or a record.
        dl = dict_link[v]
        out_code[v] = np.where(own[v] == 0, out_code[dl], -1)
        one = (own[v] == 1) & (closure[v] == 1)
        out_code[v[one]] = own_entries[own_start[v[one]]]
        rec = v[(own[v] > 0) & (closure[v] > 1)]
        if len(rec):
            flat = closure[rec] <= FLAT_MAX
            # A flat record lists the whole closure: own entries, then the
            # dict suffix's (itself inline or a flat record, by induction).
            count = np.where(flat, closure[rec], own[rec])
            size = 2 + count
            base = record_base + np.concatenate([[0], np.cumsum(size)[:-1]])
            block = np.empty(int(size.sum()), np.int32)
            local = base - record_base
            block[local] = count
            block[local + 1] = np.where(flat, -1, out_code[dict_link[rec]])
            # own entries
            n_own = own[rec]
            dst = np.repeat(local + 2, n_own) + _ranges(n_own)
            block[dst] = own_entries[np.repeat(own_start[rec], n_own) + _ranges(n_own)]
            # flat records: append the dict suffix's closure
            fr = rec[flat]
            d = dict_link[fr]
            n_tail = closure[d]
            tail_dst = np.repeat(local[flat] + 2 + own[fr], n_tail) + _ranges(n_tail)
            dcode = np.repeat(out_code[d], n_tail)
            from_rec = dcode <= -2
            flat_records = np.concatenate(records) if records else np.zeros(0, np.int32)
            src = -2 - dcode[from_rec] + 2 + _ranges(n_tail)[from_rec]
            block[tail_dst[from_rec]] = flat_records[src]
            block[tail_dst[~from_rec]] = dcode[~from_rec]
            records.append(block)
            out_code[rec] = -2 - base
            record_base += len(block)

    tables, root_words = trie.tables(out_code, np.concatenate(records) if records else np.zeros(0, np.int32), prefix)
    tables[f"{prefix}_cfail"] = cfail.astype(np.int32)
    return tables, root_words


def _ranges(counts: np.ndarray) -> np.ndarray:
    """concatenate([arange(c) for c in counts]), vectorized."""
    counts = np.asarray(counts, np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(counts)
    return np.arange(total) - np.repeat(ends - counts, counts)


def _empty_automaton(prefix: str) -> dict[str, np.ndarray]:
    return {
        f"{prefix}_n_nodes": np.array(0, np.int64),
        f"{prefix}_n_symbols": np.array(0, np.int64),
        f"{prefix}_out_lists": np.zeros(0, np.int32),
        f"{prefix}_edge_slots": _slot_table(np.zeros(0, np.uint64), np.zeros(0, np.uint64)),
    }


# -- the two automata ------------------------------------------------------------
def _token_automaton(entries: pa.Array, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Entries padded on both sides, as sequences of vocabulary symbols.

    " e " occurs in the spaced text exactly when e's tokens (e split on
    single spaces, empty tokens kept) occur as consecutive text tokens.
    """
    if len(ids) == 0:
        tables = _empty_automaton("tok")
        tables["vocab_offsets"] = np.zeros(1, np.int64)
        tables["vocab_bytes"] = np.zeros(0, np.uint8)
        tables["vocab_slots"] = _slot_table(np.zeros(0, np.uint64), np.zeros(0, np.uint64))
        return tables
    chosen = entries.take(pa.array(ids))
    data, off = string_buffers(chosen)
    is_space = data == ord(" ")
    spaces = np.flatnonzero(is_space)
    # Tokens: starts are entry starts and bytes after a space; ends are
    # spaces and entry ends. Sorted separately, they pair up in order.
    starts = np.sort(np.concatenate([off[:-1], spaces + 1]))
    ends = np.sort(np.concatenate([spaces, off[1:]]))
    tokens_per_entry = 1 + np.searchsorted(spaces, off[1:]) - np.searchsorted(spaces, off[:-1])
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
    vocab_off = vocab_off.astype(np.int64)
    vocab_bytes = np.ascontiguousarray(vocab_bytes)
    keys = _core.token_keys(vocab_bytes, vocab_off)
    tables, root_words = build_trie(token_offsets, token_ids, ids, len(keys), "tok")
    tables["vocab_offsets"] = vocab_off
    tables["vocab_bytes"] = vocab_bytes
    tables["vocab_slots"] = _slot_table(keys, root_words)
    return tables


def _byte_automaton(entries: pa.Array, ids: np.ndarray, left: np.ndarray, right: np.ndarray) -> dict[str, np.ndarray]:
    """Entries with an unpadded end, as padded byte strings."""
    if len(ids) == 0:
        tables = _empty_automaton("byte")
        tables["byte_cfail"] = np.zeros(0, np.int32)
        tables["byte_root"] = np.zeros((256, 2), np.uint64)
        tables["byte_needs"] = np.zeros(256, np.uint8)
        return tables
    chosen = entries.take(pa.array(ids))
    data, off = string_buffers(chosen)
    lengths = np.diff(off) + left + right
    new_off = np.concatenate([[0], np.cumsum(lengths)])
    padded = np.full(new_off[-1], ord(" "), np.uint8)
    owner = np.repeat(np.arange(len(ids)), np.diff(off))
    padded[np.arange(len(data)) - off[owner] + new_off[owner] + left[owner]] = data
    tables, root_words = build_aho_corasick(new_off, padded, ids, 256, "byte")
    root = np.empty((256, 2), np.uint64)
    root[:, 0] = np.arange(256)
    root[:, 1] = root_words
    tables["byte_root"] = root
    tables["byte_needs"] = _needed_bytes(chosen, padded, new_off)
    return tables


# Bytes from most to least common in the rows of a spaced script (a guess:
# any order is correct): lowercase letters by English frequency, then
# common punctuation and digits, uppercase letters, the rest of ASCII, and
# bytes of other scripts. The prefilter keeps each key's rarest byte.
_LOWER = b"etaoinshrdlcumwfgypbvkjxqz"
_FIRST = [*_LOWER, *b".,-'\"()/:;!?&0123456789", *_LOWER.upper()]
_COMMON_FIRST = np.array([*_FIRST, *(b for b in range(0x80) if b not in _FIRST), *range(0x80, 0x100)], np.uint8)
_RARITY = np.empty(256, np.int32)
_RARITY[_COMMON_FIRST] = np.arange(256)


def _needed_bytes(entries: pa.Array, keys: np.ndarray, off: np.ndarray) -> np.ndarray:
    """byte_needs[b] = 1 for one byte of each key (`entries` padded: `keys`,
    `off`) that can match: its rarest by _COMMON_FIRST, never a space. A text
    with none of these bytes holds no key of the byte automaton, and the CPU
    walk skips its byte walk. Entries that can never match the spaced text
    (NEVER_MATCH_PATTERN: MetaCLIP's "Jr.", "et al.") flag nothing; else
    their '.' would send most rows to the walk."""
    needs = np.zeros(256, np.uint8)
    never = pc.match_substring_regex(entries, NEVER_MATCH_PATTERN).to_numpy(zero_copy_only=False)
    rarity = np.where(keys == 0x20, -1, _RARITY[keys]).astype(np.int64)
    rarest = np.maximum.reduceat(rarity, off[:-1])[~never]
    needs[_COMMON_FIRST[rarest[rarest >= 0]]] = 1
    return needs
