// The matching walk (docs/semantics.md sections 2-4), shared by the CPU and GPU engines.
//
// A text is read as the virtual byte stream of its spaced form
// " " + spacing(text) + " ", never materialized. Two Aho-Corasick automata
// run over it:
//   * the token automaton, for entries padded on both sides (all entries
//     under the MetaCLIP 1 rule): the stream is split on single spaces and
//     each token is mapped to a vocabulary symbol; " e1 e2 ... ek " occurs in
//     the stream exactly when the tokens e1..ek occur consecutively;
//   * the byte automaton, for entries with an unpadded end (worldwide rule,
//     CJK-like first or last character), over the raw stream bytes.
//
// Layout, chosen so that a step touches as few cache lines as possible:
//   * node x + 1 is the root's child for symbol x (every symbol has one), so
//     the root row needs no table: for tokens the vocabulary slot carries it;
//   * every other edge is a 16-byte slot {key = parent << 32 | symbol,
//     target, out} in one open-addressing table. `target` is the child with
//     kHasChildren set when the child has edges of its own; `out` encodes the
//     child's outputs (see emit_out), so landing on a node costs no extra load;
//   * on a miss the walk jumps along cfail (the nearest proper suffix state
//     that has children), skipping suffix states that cannot have the edge.
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

// Host prefetch; the GPU hides latency with other warps instead.
#if defined(__CUDA_ARCH__) || defined(__CUDACC_RTC__)
#define GC_PREFETCH(p) ((void)0)
#else
#define GC_PREFETCH(p) __builtin_prefetch(p)
#endif
// Linear probing from a home slot often runs into the next cache line.
#define GC_PREFETCH_PROBE(p) (GC_PREFETCH(p), GC_PREFETCH((const char*)(p) + 64))

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
  Automaton tok;
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
// continues the same way (a dict-suffix chain, cut short by the builder).
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

GC_HD const Slot* edge_home(const Automaton& a, uint32_t node, uint32_t symbol) {
  return a.edges.slots + slot_of(((uint64_t)node << 32) | symbol, a.edges.mask);
}

// One Aho-Corasick transition from `state` (a target word) on `symbol`,
// whose root child is `root`. Returns the new state's slot.
GC_HD Slot ac_next(const Automaton& a, uint32_t state, uint32_t symbol, const Slot& root) {
  while (state != 0) {
    const uint32_t node = state & kNodeMask;
    if (state & kHasChildren) {
      const uint64_t key = ((uint64_t)node << 32) | symbol;
      for (uint64_t s = slot_of(key, a.edges.mask);; s = (s + 1) & a.edges.mask) {
        const Slot& e = a.edges.slots[s];
        if (e.target == 0) break;
        if (e.key == key) return e;
      }
    }
    // A root child's only proper suffix is the root.
    state = node <= (uint32_t)a.n_symbols ? 0 : (uint32_t)a.cfail[node];
    if (state) state |= kHasChildren;
  }
  return root;
}

// Vocabulary slot of a token, or nullptr when no padded entry contains it.
GC_HD const Slot* vocab_find(const Vocab& v, uint64_t key, const uint8_t* p, int64_t n) {
  for (uint64_t s = slot_of(key, v.table.mask);; s = (s + 1) & v.table.mask) {
    const Slot* e = v.table.slots + s;
    if (e->target == 0) return nullptr;
    if (e->key != key) continue;
    if (n < 8) return e;  // short keys are exact
    const int64_t sym = (int64_t)(e->target & kNodeMask) - 1;
    const int64_t a = v.offsets[sym];
    if (v.offsets[sym + 1] - a != n) continue;
    bool same = true;
    for (int64_t i = 0; i < n && same; ++i) same = v.bytes[a + i] == p[i];
    if (same) return e;
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

// The next token, its key, and a prefetch of its vocabulary slot; false
// after the last one. " " + text + " " has one more token than delimiters.
GC_HD bool next_token(const Vocab& v, TokenScanner& sc, Token& tok) {
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
  GC_PREFETCH_PROBE(v.table.slots + slot_of(tok.key, v.table.mask));
  return true;
}

// The token automaton over one text. Each load the walk needs is
// prefetched about one token early: the vocabulary slot of the next token
// (next_token), the edge slot of the next transition, the output record of
// a state (emitted one token late) and cfail of a deep state with children.
template <class Emit>
GC_HD void match_tokens(const Tables& t, const uint8_t* s, int64_t n, const uint8_t* limit, Emit& emit) {
  TokenScanner sc;
  scanner_init(sc, s, n, limit);
  Token tok;
  next_token(t.vocab, sc, tok);  // every text has at least one token
  const Slot* cur = vocab_find(t.vocab, tok.key, tok.p, tok.n);
  bool more = next_token(t.vocab, sc, tok);
  uint32_t state = 0;
  int32_t pending = -1;  // out code whose record is on its way
  for (;;) {
    if (cur) {
      const Slot next = ac_next(t.tok, state, (cur->target & kNodeMask) - 1, *cur);
      state = next.target;
      if (next.out >= 0) emit(next.out);
      else if (next.out != -1) GC_PREFETCH(t.tok.out_lists + (-2 - (int64_t)next.out));
      const uint32_t node = state & kNodeMask;
      if ((state & kHasChildren) && node > (uint32_t)t.tok.n_symbols) GC_PREFETCH(t.tok.cfail + node);
      emit_out(t.tok.out_lists, pending, emit);
      pending = next.out < -1 ? next.out : -1;
    } else {
      state = 0;  // no entry spans a token outside the vocabulary
    }
    if (!more) break;
    cur = vocab_find(t.vocab, tok.key, tok.p, tok.n);
    if (cur && (state & kHasChildren))
      GC_PREFETCH_PROBE(edge_home(t.tok, state & kNodeMask, (cur->target & kNodeMask) - 1));
    more = next_token(t.vocab, sc, tok);
  }
  emit_out(t.tok.out_lists, pending, emit);
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

// Sorted unique ids of a[0..n), n <= N, into a; returns their count. Each
// id goes to its rank (the number of smaller ids), so repeats land on one
// position and leave the next ones empty (INT32_MAX, never an entry id),
// which the compaction drops. Fixed trip counts and no branches on the
// data: the host vectorizes it, and it beats insertion sort's
// mispredictions at the sizes most rows have.
template <int N>
GC_HD int64_t rank_sort_unique(int32_t* a, int64_t n) {
  const int32_t kEmpty = 0x7fffffff;
  int32_t in[N], out[N];
  for (int j = 0; j < N; ++j) {
    in[j] = j < n ? a[j] : kEmpty;
    out[j] = kEmpty;
  }
  for (int i = 0; i < n; ++i) {
    int32_t rank = 0;
    for (int j = 0; j < N; ++j) rank += in[j] < in[i];
    out[rank] = in[i];
  }
  int64_t m = 0;
  for (int i = 0; i < n; ++i) {
    a[m] = out[i];
    m += out[i] != kEmpty;
  }
  return m;
}

GC_HD int64_t sort_unique(int32_t* a, int64_t n) {
  if (n < 2) return n;
  if (n <= 8) return rank_sort_unique<8>(a, n);
  if (n <= 16) return rank_sort_unique<16>(a, n);
  if (n <= 32) return rank_sort_unique<32>(a, n);
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
