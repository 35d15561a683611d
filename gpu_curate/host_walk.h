// The CPU engine's token walk: the very walks of kernels/walk.cuh's
// match_tokens (one down the trie from every token), run a batch of rows at
// a time in phases instead of one row after the other.
//
// Why: the walk is bound by memory latency. Walking one row, each table
// load waits for the one before it; here, the loads of one phase belong to
// independent walks (every token of the batch, then every walk still going
// one level deeper), so each is prefetched when its address is known and
// many are in flight at once. Same tables, same matches: tests compare this
// with the per-row walk and with the naive definition.
//
// Phases, for a batch of rows:
//   1. tokenize every row (walk.cuh's scanner), hash each token and
//      prefetch its vocabulary slot;
//   2. look every token up: its root child reports its entries, and a walk
//      one level deeper starts where that child has children and the next
//      token of the row is in the vocabulary (its edge slot is prefetched);
//   3. advance all those walks by one edge, level after level, until none
//      is left;
//   4. verify the tokens of 8 bytes or more: their keys are hashes, so phase
//      2 matched them by key alone and prefetched what the byte comparison
//      needs, which would otherwise put two dependent loads into every such
//      look-up. A row with a token that fails (a 64-bit hash collision with
//      a vocabulary token: it takes a crafted text) is walked again alone,
//      exactly as match_tokens does.
// Each phase adds the entry ids it finds to their row's slots; a sort and
// dedup per row gives the row's sorted unique ids.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "walk.cuh"

// The extension is built for baseline x86-64 (SSE2); the row sort, most of
// the time of dense rows, gets an AVX2 clone picked at load time where the
// CPU has it (GCC/Clang function multiversioning; same results either way).
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define GC_SORT_CLONES __attribute__((target_clones("avx2", "default"), flatten))
#else
#define GC_SORT_CLONES
#endif

namespace gc {

// walk.cuh's rank_sort_unique, with the ranks kept in vector registers
// (GCC/Clang vector extensions: 8 lanes, one AVX2 register or two SSE2
// ones): sorted unique ids of src[0..n), n <= 8 * V, into dst (not
// overlapping src); their number.
typedef int32_t Lanes __attribute__((vector_size(32)));

template <int V>
inline int64_t rank_sort_lanes(const int32_t* src, int64_t n, int32_t* dst) {
  const int32_t kEmpty = 0x7fffffff;
  int32_t in[8 * V], rank[8 * V];
  for (int i = 0; i < 8 * V; ++i) in[i] = i < n ? src[i] : kEmpty;
  Lanes x[V], r[V];
  for (int v = 0; v < V; ++v) {
    __builtin_memcpy(&x[v], in + 8 * v, sizeof(Lanes));
    r[v] = Lanes{};
  }
  for (int64_t j = 0; j < n; ++j) {
    const Lanes y = Lanes{} + src[j];
    for (int v = 0; v < V; ++v) r[v] -= y < x[v];  // a true lane compares as -1
  }
  // Empty lanes rank n (every id is smaller), so without repeats the ranks
  // sum to n(n-1)/2 + (8V - n) n.
  Lanes sum = Lanes{};
  for (int v = 0; v < V; ++v) {
    sum += r[v];
    __builtin_memcpy(rank + 8 * v, &r[v], sizeof(Lanes));
  }
  int64_t total = 0;
  for (int i = 0; i < 8; ++i) total += sum[i];
  if (total == n * (n - 1) / 2 + (8 * V - n) * n) {
    for (int64_t i = 0; i < n; ++i) dst[rank[i]] = in[i];
    return n;
  }
  int32_t out[8 * V];
  for (int i = 0; i < 8 * V; ++i) out[i] = kEmpty;
  for (int64_t i = 0; i < n; ++i) out[rank[i]] = in[i];
  int64_t m = 0;
  for (int64_t i = 0; i < n; ++i) {
    dst[m] = out[i];
    m += out[i] != kEmpty;
  }
  return m;
}

// Two sorted unique runs merged into dst, an id in both written once (no
// branch on the ids: they are random, and a mispredicted branch per id
// costs more than the merge).
static inline int64_t merge_unique(const int32_t* a, int64_t na, const int32_t* b, int64_t nb, int32_t* dst) {
  int64_t i = 0, j = 0, m = 0;
  while (i < na && j < nb) {
    const int32_t x = a[i], y = b[j];
    dst[m++] = x < y ? x : y;
    i += x <= y;
    j += y <= x;
  }
  while (i < na) dst[m++] = a[i++];
  while (j < nb) dst[m++] = b[j++];
  return m;
}

// Sorted unique ids of src[0..n) into dst (not overlapping src); their
// number. Rows over 64 ids (long documents) use `scratch`.
GC_SORT_CLONES static int64_t sorted_unique(const int32_t* src, int64_t n, int32_t* dst, std::vector<int32_t>& scratch) {
  if (n <= 1) {
    if (n == 1) dst[0] = src[0];
    return n;
  }
  if (n <= 8) return rank_sort_lanes<1>(src, n, dst);
  if (n <= 16) return rank_sort_lanes<2>(src, n, dst);
  if (n <= 32) return rank_sort_lanes<4>(src, n, dst);
  if (n <= 64) {  // two sorted halves, merged
    int32_t a[32], b[32];
    const int64_t na = rank_sort_lanes<4>(src, 32, a), nb = rank_sort_lanes<4>(src + 32, n - 32, b);
    return merge_unique(a, na, b, nb, dst);
  }
  // Blocks of 32 sorted as above, then merged pairwise, level by level
  // (std::sort mispredicts a branch on about every other id here). Run k
  // starts at 32 * 2^level * k in its buffer: a merged run fits in the
  // space of the two it replaces.
  scratch.resize(n);
  int32_t* cur = dst;
  int32_t* next = scratch.data();
  const int64_t n_runs = (n + 31) / 32;
  int64_t len_buf[64] = {};
  std::vector<int64_t> len_heap;
  int64_t* len = len_buf;
  if (n_runs > 64) {
    len_heap.resize(n_runs);
    len = len_heap.data();
  }
  for (int64_t k = 0; k < n_runs; ++k) {
    const int64_t s = 32 * k;
    len[k] = rank_sort_lanes<4>(src + s, std::min<int64_t>(32, n - s), cur + s);
  }
  for (int64_t width = 32, runs = n_runs; runs > 1; width *= 2, runs = (runs + 1) / 2) {
    for (int64_t k = 0; 2 * k < runs; ++k) {
      const int64_t a = 2 * width * k, b = a + width;
      len[k] = 2 * k + 1 < runs ? merge_unique(cur + a, len[2 * k], cur + b, len[2 * k + 1], next + a)
                                : (std::copy(cur + a, cur + a + len[2 * k], next + a), len[2 * k]);
    }
    std::swap(cur, next);
  }
  if (cur != dst) std::copy(cur, cur + len[0], dst);
  return len[0];
}

// Host prefetch of a probe's first two slots (ordered probes are short:
// mostly 1-2 slots), the second line fetched only when the run crosses it.
inline void prefetch_probe(const Slot* p) {
  __builtin_prefetch(p);
  __builtin_prefetch(p + 1);
}

class BatchWalker {
 public:
  // A batch takes rows until it holds this many tokens: enough walks to
  // overlap their loads, few enough that the prefetched lines are still in
  // cache when each phase reads them.
  static constexpr int64_t kBatchTokens = 1024;
  // ... and at most this many rows (null rows have no tokens).
  static constexpr int64_t kBatchRows = 128;
  // Ids a row keeps in its own slots; more go to a spill list (long rows).
  static constexpr int64_t kRowSlots = 64;
  // A longer row is walked alone (match_tokens), so that the buffers stay
  // bounded whatever the text length.
  static constexpr int64_t kMaxRowBytes = 1 << 16;

  // byte_needs (automaton.py's, 256 flags) or null: a row without any
  // flagged byte holds no key of the byte automaton, and skips its walk.
  BatchWalker(const Tables& t, const uint8_t* limit, const uint8_t* byte_needs = nullptr)
      : t_(t),
        limit_(limit),
        byte_needs_(byte_needs),
        row_text_(kBatchRows),
        row_ids_(kBatchRows * kRowSlots),
        row_n_(kBatchRows) {}

  // Matches rows [begin, end) of `col` and appends each row's sorted unique
  // ids to `ids`, their number to counts[row - begin].
  template <class Offset>
  void match_rows(const StringColumn<Offset>& col, int64_t begin, int64_t end, std::vector<int32_t>& ids,
                  int64_t* counts) {
    for (int64_t r = begin; r < end;) {
      n_tok_ = 0;
      std::fill(row_n_.begin(), row_n_.end(), 0);
      spill_.clear();
      int64_t stop = r;
      for (; stop < end && stop - r < kBatchRows && n_tok_ < kBatchTokens; ++stop) {
        if (!row_is_valid(col, stop)) continue;
        const int64_t a = col.offsets[col.offset + stop], b = col.offsets[col.offset + stop + 1];
        const int32_t row = (int32_t)(stop - r);
        if (t_.tok.n_nodes == 0) continue;
        row_text_[row] = {col.bytes + a, b - a};
        if (b - a > kMaxRowBytes) {
          walk_alone(row);
        } else {
          tokenize(col.bytes + a, b - a, row);
        }
      }
      walk_batch();
      if (t_.byte.n_nodes > 0) {
        for (int64_t i = r; i < stop; ++i) {
          if (!row_is_valid(col, i)) continue;
          const int64_t a = col.offsets[col.offset + i], b = col.offsets[col.offset + i + 1];
          if (!may_hold_byte_keys(col.bytes + a, b - a)) continue;
          Pairs emit{this, (int32_t)(i - r)};
          match_bytes(t_, col.bytes + a, b - a, emit);
        }
      }
      finish(stop - r, ids, counts + (r - begin));
      r = stop;
    }
  }

 private:
  // Whether the row has a byte that byte_needs_ flags. The byte walk is one
  // dependent table load per byte; this is one independent load per byte
  // (a 256-byte table), so rows of a spaced script whose list has a few
  // unpadded entries ("info@", a CJK word) skip most of that cost.
  bool may_hold_byte_keys(const uint8_t* s, int64_t n) const {
    if (byte_needs_ == nullptr) return true;
    uint8_t any = 0;
    for (int64_t i = 0; i < n; ++i) any |= byte_needs_[s[i]];
    return any != 0;
  }

  struct Pairs {  // an Emit functor: ids of one row of the batch
    BatchWalker* w;
    int32_t row;
    void operator()(int32_t id) const { w->add(row, id); }
  };

  // A walk one edge short of its next node: probe `key` (parent node,
  // symbol of token `tok`) from slot `home`.
  struct Step {
    uint64_t key, home;
    int64_t tok;
  };

  template <class T>
  static void reserve(std::vector<T>& v, size_t n) {
    if (v.size() < n) v.resize(std::max(n, 2 * v.size()));
  }

  void add(int32_t row, int32_t id) {
    const int32_t c = row_n_[row]++;
    if (c < kRowSlots) {
      row_ids_[row * kRowSlots + c] = id;
    } else {
      spill_.push_back({row, id});
    }
  }

  void add_out(int32_t row, int32_t code) {
    if (code >= 0) {
      add(row, code);
    } else if (code != -1) {
      Pairs emit{this, row};
      emit_out(t_.tok.out_lists, code, emit);
    }
  }

  // The per-row walk of one row of the batch, its ids so far dropped.
  void walk_alone(int32_t row) {
    row_n_[row] = 0;
    spill_.erase(std::remove_if(spill_.begin(), spill_.end(), [row](const auto& p) { return p.first == row; }),
                 spill_.end());
    Pairs emit{this, row};
    match_tokens(t_, row_text_[row].s, row_text_[row].n, limit_, emit);
  }

  // Phase 1 for one row: the tokens of walk.cuh's scanner (SPEC section 2).
  void tokenize(const uint8_t* s, int64_t n, int32_t row) {
    const uint8_t* limit = limit_;
    const int64_t most = n_tok_ + 2 * n + 2;  // every byte a wrapped mark: 2n + 1 tokens
    reserve(key_, most);
    reserve(home_, most);
    reserve(ptr_, most);
    reserve(len_, most);
    reserve(row_, most + 1);
    TokenScanner sc;
    scanner_init(sc, s, n, limit);
#ifdef GC_HOST_SIMD
    // A token ends at every delimiter and at the text's end (block_bits marks
    // both); a wrapped mark is a token of its own.
    for (int64_t block = 0, start = 0;; block += 64) {
      for (uint64_t bits = block_bits(sc, block); bits; bits &= bits - 1) {
        const int64_t i = block + __builtin_ctzll(bits);
        add_token(s + start, i - start, row);
        if (i == n) return;
        if (is_wrapped_punct(s[i])) add_token(s + i, 1, row);
        start = i + 1;
      }
    }
#else
    for (Token tok; next_token(sc, tok);) add_token(tok.p, tok.n, row);
#endif
  }

  void add_token(const uint8_t* p, int64_t n, int32_t row) {
    const uint64_t key = token_key_at(p, n, limit_);
    const uint64_t home = slot_of(key, t_.vocab.table.mask);
    prefetch_probe(t_.vocab.table.slots + home);
    const int64_t k = n_tok_++;
    key_[k] = key;
    home_[k] = home;
    ptr_[k] = p;
    len_[k] = (int32_t)n;
    row_[k] = row;
  }

  // A step from `node` (a node with children) on token k, if the token is
  // in the same row and in the vocabulary.
  void step_from(uint32_t node, int64_t k, std::vector<Step>& steps, size_t& n_steps) {
    if (row_[k] != row_[k - 1] || target_[k] == 0) return;
    const uint64_t key = edge_key(node & kNodeMask, (target_[k] & kNodeMask) - 1);
    const uint64_t home = slot_of(key, t_.tok.edges.mask);
    prefetch_probe(t_.tok.edges.slots + home);
    steps[n_steps++] = {key, home, k};
  }

  // Phases 2 to 4.
  void walk_batch() {
    const int64_t n = n_tok_;
    if (n == 0) return;
    row_[n] = -1;  // sentinel: token n is in no row
    reserve(target_, n + 1);
    target_[n] = 0;
    reserve(steps_, n);
    reserve(next_steps_, n);
    size_t n_steps = 0;
    verify_.clear();
    for (int64_t k = 0; k < n; ++k) {
      const Slot* v = probe(t_.vocab.table, home_[k], key_[k]);
      target_[k] = v ? v->target : 0;
      if (!v) continue;
      if (len_[k] >= 8) {  // a hash key: verified in phase 4
        verify_.push_back(k);
        __builtin_prefetch(t_.vocab.offsets + symbol_of(*v));
      }
      add_out(row_[k], v->out);
      if (k > 0 && (target_[k - 1] & kHasChildren)) step_from(target_[k - 1], k, steps_, n_steps);
    }
    while (n_steps > 0) {
      size_t n_next = 0;
      for (size_t i = 0; i < n_steps; ++i) {
        const Step& st = steps_[i];
        const Slot* e = probe(t_.tok.edges, st.home, st.key);
        if (!e) continue;
        add_out(row_[st.tok], e->out);
        if (e->target & kHasChildren) step_from(e->target, st.tok + 1, next_steps_, n_next);
      }
      steps_.swap(next_steps_);
      n_steps = n_next;
    }
    verify_long_tokens();
  }

  // Phase 4: each long token's bytes against its vocabulary symbol's.
  void verify_long_tokens() {
    bad_rows_.clear();
    at_.resize(verify_.size());
    for (size_t i = 0; i < verify_.size(); ++i) {
      const int64_t k = verify_[i], sym = (target_[k] & kNodeMask) - 1;
      at_[i] = t_.vocab.offsets[sym];
      if (t_.vocab.offsets[sym + 1] - at_[i] != len_[k]) {
        at_[i] = -1;
      } else {
        __builtin_prefetch(t_.vocab.bytes + at_[i]);
      }
    }
    for (size_t i = 0; i < verify_.size(); ++i) {
      const int64_t k = verify_[i];
      if (at_[i] < 0 || std::memcmp(t_.vocab.bytes + at_[i], ptr_[k], len_[k]) != 0) {
        if (bad_rows_.empty() || bad_rows_.back() != row_[k]) bad_rows_.push_back(row_[k]);
      }
    }
    for (int32_t row : bad_rows_) walk_alone(row);
  }

  // Each row's ids sorted, deduplicated and appended to `ids`.
  void finish(int64_t n_rows, std::vector<int32_t>& ids, int64_t* counts) {
    int64_t total = 0;
    for (int64_t r = 0; r < n_rows; ++r) total += row_n_[r];
    const size_t base = ids.size();
    ids.resize(base + total);
    int32_t* out = ids.data() + base;
    for (int64_t r = 0; r < n_rows; ++r) {
      const int32_t* src = row_ids_.data() + r * kRowSlots;
      int64_t n = row_n_[r];
      if (n > kRowSlots) {  // a long row: its slots, then its ids in the spill list
        long_row_.assign(src, src + kRowSlots);
        for (const auto& [row, id] : spill_)
          if (row == r) long_row_.push_back(id);
        src = long_row_.data();
      }
      counts[r] = sorted_unique(src, n, out, merge_);
      out += counts[r];
    }
    ids.resize(out - ids.data());
  }

  const Tables& t_;
  const uint8_t* limit_;  // end of the column's bytes: wide loads stay below it
  const uint8_t* byte_needs_;
  struct Text {
    const uint8_t* s;
    int64_t n;
  };
  std::vector<Text> row_text_;
  // Per token of the batch (phase 1), and its root child's target word (phase 2).
  int64_t n_tok_ = 0;
  std::vector<uint64_t> key_, home_;
  std::vector<const uint8_t*> ptr_;
  std::vector<int32_t> len_, row_;
  std::vector<uint32_t> target_;
  std::vector<Step> steps_, next_steps_;
  // Phase 4: tokens to verify, where their vocabulary bytes start, rows to walk again.
  std::vector<int64_t> verify_, at_;
  std::vector<int32_t> bad_rows_;
  // Per row of the batch: its first kRowSlots ids, how many it has, the rest.
  std::vector<int32_t> row_ids_, row_n_;
  std::vector<std::pair<int32_t, int32_t>> spill_;
  std::vector<int32_t> long_row_, merge_;
};

}  // namespace gc
