// The matching walk (docs/semantics.md sections 2-4), shared by the CPU and GPU engines.
//
// A text is read as the virtual byte stream of its spaced form
// " " + spacing(text) + " ", never materialized. Two automata run over it:
//   * the token trie, for entries padded on both sides (all entries under
//     the MetaCLIP 1 rule): the stream is split on single spaces and each
//     token is mapped to a vocabulary symbol; " e1 e2 ... ek " occurs in the
//     stream exactly when the tokens e1..ek occur consecutively. The trie is
//     walked from every token, so each occurrence is found from its first
//     token, a node reports only the entries that end there, and no suffix
//     links or output chains are needed. The walks from different tokens are
//     independent, which lets the host overlap their memory loads (a batch
//     of rows at a time: host_walk.h in gpu_curate/); a GPU thread walks one
//     row here (match_tokens). A walk is as deep as the longest entry (in
//     tokens) that starts there;
//   * the byte automaton (Aho-Corasick), for entries with an unpadded end
//     (worldwide rule, CJK-like first or last character), over the raw
//     stream bytes.
//
// Layout, chosen so that a step touches as few cache lines as possible:
//   * node x + 1 is the root's child for symbol x (every symbol has one), so
//     the root row needs no table: for tokens the vocabulary slot carries it;
//   * every other edge is a 16-byte slot {key = parent << 32 | symbol,
//     target, out} in one open-addressing table. `target` is the child with
//     kHasChildren set when the child has edges of its own; `out` encodes the
//     child's outputs (see emit_out), so landing on a node costs no extra load;
//   * on a miss the byte automaton jumps along cfail (the nearest proper
//     suffix state that has children), skipping suffix states that cannot
//     have the edge.
#pragma once
#include "common.cuh"

// Host-only fast paths (wide loads, SIMD) assume a little-endian CPU, where
// they compute exactly what the portable code computes.
#if !defined(__CUDA_ARCH__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#include <cstring>
#define GC_HOST_WIDE 1
#if defined(__SSE2__)
#include <emmintrin.h>
#define GC_HOST_SIMD 1
#endif
#endif

namespace gc {

constexpr uint32_t kHasChildren = 0x80000000u;
constexpr uint32_t kNodeMask = 0x7fffffffu;

struct Slot {
  uint64_t key;
  uint32_t target;  // node | kHasChildren; 0 marks an empty slot
  int32_t out;      // see emit_out
};

struct SlotTable {
  const Slot* slots;
  uint64_t mask;  // number of slots - 1 (a power of two)
};

// The token trie: out codes report a node's own entries only.
struct Trie {
  int32_t n_nodes;           // 0 means: no entries, skip the token walk
  int32_t n_symbols;         // nodes 1..n_symbols are the root's children
  SlotTable edges;           // (parent << 32 | symbol) -> child, parent > 0
  const int32_t* out_lists;  // records [count, -1, entries...]
};

// The byte automaton: out codes report every entry ending at the node.
struct Automaton {
  int32_t n_nodes;    // 0 means: no entries, skip this automaton
  int32_t n_symbols;  // nodes 1..n_symbols are the root's children
  SlotTable edges;    // (parent << 32 | symbol) -> child, parent > 0
  const int32_t* cfail;      // [n_nodes] nearest suffix state with children, 0: root
  const int32_t* out_lists;  // records [count, next out code, entries...]
};

struct Vocab {
  SlotTable table;         // token_key(token) -> {key, root child, its out}
  const int64_t* offsets;  // [n_symbols + 1] into bytes, to verify long tokens
  const uint8_t* bytes;
};

struct Tables {
  Trie tok;
  Vocab vocab;
  Automaton byte;
  const Slot* byte_root;  // [256] the byte automaton's root row
};

// Spacing classes (docs/semantics.md section 2) as one 64-bit mask over bytes < 64;
// '`' (0x60) is the only delimiter above.
constexpr uint64_t kSpaceMask = (1ULL << ' ') | (1ULL << '\t') | (1ULL << '\n') | (1ULL << '\r');
constexpr uint64_t kPunctMask =
    (1ULL << ',') | (1ULL << '.') | (1ULL << ';') | (1ULL << ':') | (1ULL << '?') | (1ULL << '!');

GC_HD bool is_space_like(uint8_t c) { return c < 64 && ((kSpaceMask >> c) & 1); }
GC_HD bool is_wrapped_punct(uint8_t c) { return c < 64 ? ((kPunctMask >> c) & 1) : c == '`'; }
GC_HD bool is_delimiter(uint8_t c) { return c < 64 ? (((kSpaceMask | kPunctMask) >> c) & 1) : c == '`'; }

// Out codes: >= 0 one entry id; -1 nothing; <= -2 the record at
// out_lists[-2 - code]: [count, next code, count entry ids], then `next`
// continues the same way (byte automaton: a dict-suffix chain, cut short by
// the builder; token trie: always -1, the record lists duplicate entries).
template <class Emit>
GC_HD void emit_out(const int32_t* out_lists, int32_t code, Emit& emit) {
  while (code != -1) {
    if (code >= 0) {
      emit(code);
      return;
    }
    const int32_t* r = out_lists + (-2 - (int64_t)code);
    for (int32_t k = 0; k < r[0]; ++k) emit(r[2 + k]);
    code = r[1];
  }
}

GC_HD uint64_t edge_key(uint32_t node, uint32_t symbol) { return ((uint64_t)node << 32) | symbol; }

// The slot holding `key` in a table probed from `home`, or nullptr: an
// empty slot or a larger key ends the search (ordered tables: common.cuh).
GC_HD const Slot* probe(const SlotTable& t, uint64_t home, uint64_t key) {
  for (uint64_t s = home;; s = (s + 1) & t.mask) {
    const Slot* e = t.slots + s;
    if (e->target == 0 || e->key > key) return nullptr;
    if (e->key == key) return e;
  }
}

// One Aho-Corasick transition from `state` (a target word) on `symbol`,
// whose root child is `root`. Returns the new state's slot.
GC_HD Slot ac_next(const Automaton& a, uint32_t state, uint32_t symbol, const Slot& root) {
  while (state != 0) {
    const uint32_t node = state & kNodeMask;
    if (state & kHasChildren) {
      const uint64_t key = edge_key(node, symbol);
      const Slot* e = probe(a.edges, slot_of(key, a.edges.mask), key);
      if (e) return *e;
    }
    // A root child's only proper suffix is the root.
    state = node <= (uint32_t)a.n_symbols ? 0 : (uint32_t)a.cfail[node];
    if (state) state |= kHasChildren;
  }
  return root;
}

GC_HD uint32_t symbol_of(const Slot& root_child) { return (root_child.target & kNodeMask) - 1; }

// Whether vocabulary symbol `sym` is the token p[0..n).
GC_HD bool vocab_is(const Vocab& v, uint32_t sym, const uint8_t* p, int64_t n) {
  const int64_t a = v.offsets[sym];
  if (v.offsets[sym + 1] - a != n) return false;
  for (int64_t i = 0; i < n; ++i)
    if (v.bytes[a + i] != p[i]) return false;
  return true;
}

// Vocabulary slot of a token (key: token_key), or nullptr when no padded
// entry contains the token.
GC_HD const Slot* vocab_find(const Vocab& v, uint64_t key, const uint8_t* p, int64_t n) {
  for (uint64_t s = slot_of(key, v.table.mask);; s = (s + 1) & v.table.mask) {
    const Slot* e = v.table.slots + s;
    if (e->target == 0 || e->key > key) return nullptr;
    if (e->key != key) continue;  // a smaller key
    // Short keys are exact; a long token's equal hash may be another token's.
    if (n < 8 || vocab_is(v, symbol_of(*e), p, n)) return e;
  }
}

// token_key with a host fast path: one unaligned 8-byte load when the
// bytes up to p + 8 are readable (limit), else the portable definition.
GC_HD uint64_t token_key_at(const uint8_t* p, int64_t n, const uint8_t* limit) {
#ifdef GC_HOST_WIDE
  if (n < 8 && limit && p + 8 <= limit) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    return (n ? w & (~0ULL >> (64 - 8 * n)) : 0) | ((uint64_t)n << 56);
  }
#endif
  (void)limit;
  return token_key(p, n);
}

// Splits a text's spaced stream into tokens (docs/semantics.md section 2): tokens end at
// a space-like byte or a wrapped mark, and a wrapped mark is a token of its own.
struct TokenScanner {
  const uint8_t* s;
  int64_t n;
  const uint8_t* limit;  // readable end for wide host loads; nullptr: none
  int64_t pos;           // start of the next token
  int32_t punct;         // s[pos - 1] is a wrapped mark still to be returned
  int32_t done;          // the last token has been returned
  int64_t block;         // host: delimiter bits of s[block .. block + 64)
  uint64_t mask;
};

struct Token {
  const uint8_t* p;
  int64_t n;
  uint64_t key;  // token_key(p, n)
};

#ifdef GC_HOST_SIMD
// Bit k set when p[k] is a delimiter, for the 64 bytes at p (all readable).
inline uint64_t delimiter_bits64(const uint8_t* p) {
  uint64_t bits = 0;
  for (int part = 0; part < 4; ++part) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * part));
    __m128i m = _mm_cmpeq_epi8(v, _mm_set1_epi8(' '));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('\t')));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('\n')));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('\r')));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8(',')));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('.')));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8(';')));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8(':')));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('?')));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('!')));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, _mm_set1_epi8('`')));
    bits |= (uint64_t)(uint32_t)_mm_movemask_epi8(m) << (16 * part);
  }
  return bits;
}

// Delimiter bits of sc.s[block .. block + 64), with the text's end (byte n)
// marked too, so that the search below always stops.
inline uint64_t block_bits(const TokenScanner& sc, int64_t block) {
  const uint8_t* p = sc.s + block;
  const int64_t left = sc.n - block;
  uint64_t bits = 0;
  if (sc.limit && p + 64 <= sc.limit) {
    bits = delimiter_bits64(p);
  } else {
    for (int64_t k = 0; k < 64 && k < left; ++k) bits |= (uint64_t)is_delimiter(p[k]) << k;
  }
  if (left < 64) bits = (bits & ((1ULL << left) - 1)) | (1ULL << left);
  return bits;
}
#endif

// Index of the first delimiter at or after i, or n. The host finds it in
// a 64-bit mask (one SIMD pass per 64 bytes) instead of a branch per byte.
GC_HD int64_t find_delimiter(TokenScanner& sc, int64_t i) {
#ifdef GC_HOST_SIMD
  for (;;) {
    if (i >= sc.block + 64) {
      sc.block = i & ~(int64_t)63;
      sc.mask = block_bits(sc, sc.block);
    }
    const uint64_t m = sc.mask & (~0ULL << (i - sc.block));
    if (m) return sc.block + __builtin_ctzll(m);
    i = sc.block + 64;
  }
#else
  while (i < sc.n && !is_delimiter(sc.s[i])) ++i;
  return i;
#endif
}

GC_HD void scanner_init(TokenScanner& sc, const uint8_t* s, int64_t n, const uint8_t* limit) {
  sc.s = s;
  sc.n = n;
  sc.limit = limit;
  sc.pos = 0;
  sc.punct = 0;
  sc.done = 0;
  sc.block = -64;  // no block loaded yet
  sc.mask = 0;
}

// The next token and its key; false after the last one.
// " " + text + " " has one more token than delimiters.
GC_HD bool next_token(TokenScanner& sc, Token& tok) {
  if (sc.punct) {
    tok.p = sc.s + sc.pos - 1;
    tok.n = 1;
    sc.punct = 0;
  } else {
    if (sc.done) return false;
    const int64_t i = find_delimiter(sc, sc.pos);
    tok.p = sc.s + sc.pos;
    tok.n = i - sc.pos;
    if (i == sc.n) {
      sc.done = 1;
    } else {
      sc.punct = is_wrapped_punct(sc.s[i]);
      sc.pos = i + 1;
    }
  }
  tok.key = token_key_at(tok.p, tok.n, sc.limit);
  return true;
}

// The walk from one token down the trie: the entries that start with the
// token whose root child is `first` and go on with the tokens after it
// (`ahead` is the scanner positioned after that token). The vocabulary slot
// of the next token, when the walk looked it up, goes to *next (else
// `next_known` stays false), so that the walk from that token need not look
// it up again.
template <class Emit>
GC_HD void walk_from(const Tables& t, const Slot& first, TokenScanner ahead, Emit& emit, const Slot** next,
                     bool* next_known) {
  emit_out(t.tok.out_lists, first.out, emit);
  Token tok;
  for (uint32_t node = first.target; (node & kHasChildren) && next_token(ahead, tok);) {
    const Slot* v = vocab_find(t.vocab, tok.key, tok.p, tok.n);
    if (!*next_known) {
      *next = v;
      *next_known = true;
    }
    if (!v) return;
    const uint64_t key = edge_key(node & kNodeMask, symbol_of(*v));
    const Slot* e = probe(t.tok.edges, slot_of(key, t.tok.edges.mask), key);
    if (!e) return;
    emit_out(t.tok.out_lists, e->out, emit);
    node = e->target;
  }
}

// The token trie over one text, one walk from every token: the per-row form
// that a GPU thread runs (the host batches rows instead: host_walk.h).
template <class Emit>
GC_HD void match_tokens(const Tables& t, const uint8_t* s, int64_t n, const uint8_t* limit, Emit& emit) {
  TokenScanner sc;
  scanner_init(sc, s, n, limit);
  Token tok;
  const Slot* next = nullptr;
  bool next_known = false;
  while (next_token(sc, tok)) {
    const Slot* v = next_known ? next : vocab_find(t.vocab, tok.key, tok.p, tok.n);
    next_known = false;
    if (v) walk_from(t, *v, sc, emit, &next, &next_known);
  }
}

// Feeds one virtual byte to the byte automaton.
template <class Emit>
GC_HD uint32_t feed_byte(const Tables& t, uint32_t state, uint8_t c, Emit& emit) {
  const Slot next = ac_next(t.byte, state, c, t.byte_root[c]);
  emit_out(t.byte.out_lists, next.out, emit);
  return next.target;
}

// The byte automaton over the whole spaced stream of one text.
template <class Emit>
GC_HD void match_bytes(const Tables& t, const uint8_t* s, int64_t n, Emit& emit) {
  uint32_t st = feed_byte(t, 0, ' ', emit);
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t c = s[i];
    if (is_space_like(c)) {
      st = feed_byte(t, st, ' ', emit);
    } else if (is_wrapped_punct(c)) {
      st = feed_byte(t, st, ' ', emit);
      st = feed_byte(t, st, c, emit);
      st = feed_byte(t, st, ' ', emit);
    } else {
      st = feed_byte(t, st, c, emit);
    }
  }
  feed_byte(t, st, ' ', emit);
}

// Calls emit(entry_id) once per occurrence of every entry in the spaced
// text; ids may repeat and are unordered (see sort_unique).
template <class Emit>
GC_HD void match_text(const Tables& t, const uint8_t* s, int64_t n, Emit& emit, const uint8_t* limit = nullptr) {
  if (t.tok.n_nodes > 0) match_tokens(t, s, n, limit, emit);
  if (t.byte.n_nodes > 0) match_bytes(t, s, n, emit);
}

// In-place sort and dedup of a row's ids; returns the number of unique ids.
// Iterative and allocation-free so that it runs inside a GPU thread.
GC_HD void sift_down(int32_t* a, int64_t root, int64_t n) {
  for (int64_t child; (child = 2 * root + 1) < n; root = child) {
    if (child + 1 < n && a[child] < a[child + 1]) ++child;
    if (a[root] >= a[child]) return;
    int32_t tmp = a[root]; a[root] = a[child]; a[child] = tmp;
  }
}

// Sorted unique ids of src[0..n), n <= N, into dst (which may be src);
// returns their count. Each id goes to its rank (the number of smaller
// ids). Without repeats the ranks are 0..n-1 and sum to n(n-1)/2; repeats
// share the rank of their first copy (the sum falls short) and leave the
// positions after it empty (INT32_MAX, never an entry id), which a
// compaction drops. Fixed trip counts and no branches on the data: the host
// vectorizes the inner loop (all N ranks gain one compare per id, no
// horizontal sums), and it beats insertion sort's mispredictions at the
// sizes most rows have.
template <int N>
GC_HD int64_t rank_sort_unique(const int32_t* src, int64_t n, int32_t* dst) {
  const int32_t kEmpty = 0x7fffffff;
  int32_t in[N], rank[N];
  for (int j = 0; j < N; ++j) {
    in[j] = j < n ? src[j] : kEmpty;
    rank[j] = 0;
  }
  for (int j = 0; j < n; ++j) {
    const int32_t x = in[j];
    for (int i = 0; i < N; ++i) rank[i] += x < in[i];
  }
  int64_t sum = 0;
  for (int i = 0; i < N; ++i) sum += i < n ? rank[i] : 0;
  if (sum == n * (n - 1) / 2) {
    for (int i = 0; i < n; ++i) dst[rank[i]] = in[i];
    return n;
  }
  int32_t out[N];
  for (int j = 0; j < N; ++j) out[j] = kEmpty;
  for (int i = 0; i < n; ++i) out[rank[i]] = in[i];
  int64_t m = 0;
  for (int i = 0; i < n; ++i) {
    dst[m] = out[i];
    m += out[i] != kEmpty;
  }
  return m;
}

GC_HD int64_t sort_unique(int32_t* a, int64_t n) {
  if (n < 2) return n;
  if (n <= 8) return rank_sort_unique<8>(a, n, a);
  if (n <= 16) return rank_sort_unique<16>(a, n, a);
  if (n <= 32) return rank_sort_unique<32>(a, n, a);
  for (int64_t i = n / 2 - 1; i >= 0; --i) sift_down(a, i, n);
  for (int64_t end = n - 1; end > 0; --end) {
    int32_t tmp = a[0]; a[0] = a[end]; a[end] = tmp;
    sift_down(a, 0, end);
  }
  int64_t m = 1;
  for (int64_t i = 1, last = a[0]; i < n; ++i) {
    const int32_t x = a[i];
    a[m] = x;
    m += x != last;
    last = x;
  }
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
