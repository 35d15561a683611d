// The matching walk (SPEC.md sections 2-4), shared by the CPU and GPU engines.
//
// A text is read as the virtual byte stream of its spaced form
// " " + spacing(text) + " ", never materialized. Two Aho-Corasick automata
// run over it in one pass:
//   * the token automaton, for entries padded on both sides (all entries
//     under the MetaCLIP 1 rule): the stream is split on single spaces and
//     each token is mapped to a vocabulary id; " e1 e2 ... ek " occurs in the
//     stream exactly when the tokens e1..ek occur consecutively;
//   * the byte automaton, for entries with an unpadded end (worldwide rule,
//     CJK-like first or last character), over the raw stream bytes.
// Both share one table layout: a dense root row, non-root edges in a hash
// table keyed by (node << 32 | symbol), failure links, and per-node outputs
// reached through dictionary-suffix links.
#pragma once
#include "common.cuh"

namespace gc {

struct Automaton {
  int32_t n_nodes;           // 0 means: no entries, skip this automaton
  const int32_t* root_next;  // [n_symbols] child of the root, 0 if none
  HashTable edges;           // (node << 32 | symbol) -> child, non-root nodes
  const int32_t* fail;       // [n_nodes] longest proper suffix state
  const int32_t* dict_link;  // [n_nodes] nearest suffix state with outputs, -1
  const int32_t* out_offsets;  // [n_nodes + 1] CSR of entries ending here
  const int32_t* out_entries;
};

struct Vocab {
  HashTable table;         // hash_bytes(token) -> vocabulary id
  const int64_t* offsets;  // [n_vocab + 1] into bytes, to verify a hit
  const uint8_t* bytes;
};

struct Tables {
  Automaton tok;
  Vocab vocab;
  Automaton byte;
};

GC_HD bool is_space_like(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

GC_HD bool is_wrapped_punct(uint8_t c) {
  return c == ',' || c == '.' || c == ';' || c == ':' || c == '?' || c == '!' || c == '`';
}

// Vocabulary id of a token, or -1 if no entry contains it.
GC_HD int32_t vocab_id(const Vocab& v, const uint8_t* p, int64_t n) {
  uint64_t key = hash_bytes(p, n);
  for (uint64_t s = slot_of(key, v.table.mask);; s = (s + 1) & v.table.mask) {
    int32_t id = v.table.vals[s];
    if (id < 0) return -1;
    if (v.table.keys[s] != key) continue;
    int64_t a = v.offsets[id];
    if (v.offsets[id + 1] - a != n) continue;
    bool same = true;
    for (int64_t i = 0; i < n && same; ++i) same = v.bytes[a + i] == p[i];
    if (same) return id;
  }
}

// One Aho-Corasick transition; symbol < 0 (a token outside the vocabulary)
// resets to the root, since no entry can span it.
GC_HD int32_t ac_step(const Automaton& a, int32_t state, int32_t symbol) {
  if (symbol < 0) return 0;
  while (state != 0) {
    int32_t next = table_find(a.edges, ((uint64_t)state << 32) | (uint32_t)symbol);
    if (next >= 0) return next;
    state = a.fail[state];
  }
  return a.root_next[symbol];
}

template <class Emit>
GC_HD void ac_emit(const Automaton& a, int32_t state, Emit& emit) {
  if (a.out_offsets[state] == a.out_offsets[state + 1]) state = a.dict_link[state];
  for (; state > 0; state = a.dict_link[state])
    for (int32_t k = a.out_offsets[state]; k < a.out_offsets[state + 1]; ++k) emit(a.out_entries[k]);
}

// Feeds one virtual byte to the byte automaton.
template <class Emit>
GC_HD int32_t feed_byte(const Automaton& a, int32_t state, uint8_t c, Emit& emit) {
  state = ac_step(a, state, c);
  ac_emit(a, state, emit);
  return state;
}

// Feeds one token (a slice of the original text) to the token automaton.
template <class Emit>
GC_HD int32_t feed_token(const Tables& t, int32_t state, const uint8_t* p, int64_t n, Emit& emit) {
  state = ac_step(t.tok, state, vocab_id(t.vocab, p, n));
  ac_emit(t.tok, state, emit);
  return state;
}

// Calls emit(entry_id) once per occurrence of every entry in the spaced
// text; ids may repeat and are unordered (see sort_unique).
template <class Emit>
GC_HD void match_text(const Tables& t, const uint8_t* s, int64_t n, Emit& emit) {
  const bool tok = t.tok.n_nodes > 0, byt = t.byte.n_nodes > 0;
  int32_t ts = 0, bs = 0;
  int64_t start = 0;  // first byte of the current token
  if (byt) bs = feed_byte(t.byte, bs, ' ', emit);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t c = s[i];
    if (is_space_like(c)) {
      if (tok) ts = feed_token(t, ts, s + start, i - start, emit);
      if (byt) bs = feed_byte(t.byte, bs, ' ', emit);
      start = i + 1;
    } else if (is_wrapped_punct(c)) {
      // " c ": ends the current token, then c is a token of its own.
      if (tok) {
        ts = feed_token(t, ts, s + start, i - start, emit);
        ts = feed_token(t, ts, s + i, 1, emit);
      }
      if (byt) {
        bs = feed_byte(t.byte, bs, ' ', emit);
        bs = feed_byte(t.byte, bs, c, emit);
        bs = feed_byte(t.byte, bs, ' ', emit);
      }
      start = i + 1;
    } else if (byt) {
      bs = feed_byte(t.byte, bs, c, emit);
    }
  }
  if (tok) feed_token(t, ts, s + start, n - start, emit);
  if (byt) feed_byte(t.byte, bs, ' ', emit);
}

// In-place heap sort then dedup; returns the number of unique ids.
// Iterative and allocation-free so that it runs inside a GPU thread.
GC_HD void sift_down(int32_t* a, int64_t root, int64_t n) {
  for (int64_t child; (child = 2 * root + 1) < n; root = child) {
    if (child + 1 < n && a[child] < a[child + 1]) ++child;
    if (a[root] >= a[child]) return;
    int32_t tmp = a[root]; a[root] = a[child]; a[child] = tmp;
  }
}

GC_HD int64_t sort_unique(int32_t* a, int64_t n) {
  if (n < 2) return n;
  if (n <= 16) {  // insertion sort: most rows match a handful of entries
    for (int64_t i = 1; i < n; ++i) {
      int32_t x = a[i]; int64_t j = i;
      for (; j > 0 && a[j - 1] > x; --j) a[j] = a[j - 1];
      a[j] = x;
    }
  } else {
    for (int64_t i = n / 2 - 1; i >= 0; --i) sift_down(a, i, n);
    for (int64_t end = n - 1; end > 0; --end) {
      int32_t tmp = a[0]; a[0] = a[end]; a[end] = tmp;
      sift_down(a, 0, end);
    }
  }
  int64_t m = 1;
  for (int64_t i = 1; i < n; ++i) if (a[i] != a[m - 1]) a[m++] = a[i];
  return m;
}

// Arrow string/binary column: row i is bytes[offsets[offset + i] ...
// offsets[offset + i + 1]), null where the validity bit (offset + i) is 0.
template <class Offset>
struct StringColumn {
  const uint8_t* bytes;
  const Offset* offsets;
  const uint8_t* validity;  // nullptr: no nulls
  int64_t offset;
};

template <class Offset>
GC_HD bool row_is_valid(const StringColumn<Offset>& c, int64_t i) {
  if (!c.validity) return true;
  int64_t k = c.offset + i;
  return (c.validity[k >> 3] >> (k & 7)) & 1;
}

// Matches row i of a column; nulls match nothing.
template <class Offset, class Emit>
GC_HD void match_row(const Tables& t, const StringColumn<Offset>& c, int64_t i, Emit& emit) {
  if (!row_is_valid(c, i)) return;
  const int64_t a = c.offsets[c.offset + i], b = c.offsets[c.offset + i + 1];
  match_text(t, c.bytes + a, b - a, emit);
}

}  // namespace gc
