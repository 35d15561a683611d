// The GPU engine's kernels: thin __global__ wrappers over walk.cuh and
// sample.cuh, the very code the CPU engine compiles for the host (_core.cpp),
// so that the two engines cannot drift apart (docs/design.md, "One C++ source for both engines").
//
// One thread per row. A row's number of matches is unknown until its text is
// walked and a GPU thread cannot grow a buffer, so matching takes two walks:
//   1. count_matches: raw emit count per row (repeats included);
//   2. the host scans the counts into one region per row;
//   3. write_matches: walks again into the row's region, sorts and dedups it
//      in place (gc::sort_unique) and writes the unique count;
//   Per-language metadata runs 1 and 3 once per language over that
//   language's rows (`rows`), writing global ids (`base`), into one CSR;
//   4. the host scans the unique counts; compact_matches closes the gaps
//      (skipped when no row repeated an id).
// keep_rows (the sampling decision) and hash_rows (string uid keys) are one
// call per row of sample.cuh / common.cuh.
// gpu_curate/gpu_engine.py drives these; CuPy compiles this file with NVRTC
// (kernels/__init__.py inlines the headers), CI compiles it with nvcc.
#include "sample.cuh"
#include "walk.cuh"

// gc::Tables as kernel parameters, one per flat array of Automaton.tables, in
// the order gpu_engine.table_arguments() passes them. Separate parameters
// rather than one struct: CuPy passes device pointers and NumPy scalars
// natively (no struct layout to mirror in Python), and kernel parameters live
// in the constant bank, so the walk reads them without spending registers.
#define GC_AUTOMATON_PARAMS(a)                                                                       \
  int32_t a##_n_nodes, int32_t a##_n_symbols, const uint64_t *a##_edge_slots, uint64_t a##_edge_mask, \
      const int32_t *a##_cfail, const int32_t *a##_out_lists
#define GC_AUTOMATON_ARGS(a) a##_n_nodes, a##_n_symbols, a##_edge_slots, a##_edge_mask, a##_cfail, a##_out_lists
#define GC_TABLE_PARAMS                                                                           \
  GC_AUTOMATON_PARAMS(tok), const uint64_t *vocab_slots, uint64_t vocab_mask, const int64_t *vocab_offsets, \
      const uint8_t *vocab_bytes, GC_AUTOMATON_PARAMS(byte), const uint64_t *byte_root
#define GC_TABLE_ARGS \
  GC_AUTOMATON_ARGS(tok), vocab_slots, vocab_mask, vocab_offsets, vocab_bytes, GC_AUTOMATON_ARGS(byte), byte_root

namespace gc {

// Field by field, not by aggregate order, so that a field added to the
// structs in walk.cuh cannot silently shift the others.
// Slot tables arrive as uint64 pairs {key, target | out << 32}: gc::Slot.
__device__ __forceinline__ const Slot *slots_of(const uint64_t *words) {
  return reinterpret_cast<const Slot *>(words);
}

__device__ __forceinline__ Automaton automaton_of(GC_AUTOMATON_PARAMS(a)) {
  Automaton t{};
  t.n_nodes = a_n_nodes;
  t.n_symbols = a_n_symbols;
  t.edges.slots = slots_of(a_edge_slots);
  t.edges.mask = a_edge_mask;
  t.cfail = a_cfail;
  t.out_lists = a_out_lists;
  return t;
}

__device__ __forceinline__ Tables tables_of(GC_TABLE_PARAMS) {
  Tables t{};
  t.tok = automaton_of(GC_AUTOMATON_ARGS(tok));
  t.vocab.table.slots = slots_of(vocab_slots);
  t.vocab.table.mask = vocab_mask;
  t.vocab.offsets = vocab_offsets;
  t.vocab.bytes = vocab_bytes;
  t.byte = automaton_of(GC_AUTOMATON_ARGS(byte));
  t.byte_root = slots_of(byte_root);
  return t;
}

// 64-bit row index: a partition may hold more than 2^31 rows of output.
__device__ __forceinline__ int64_t this_row() { return (int64_t)blockIdx.x * blockDim.x + threadIdx.x; }

struct CountEmit {
  int64_t n = 0;
  __device__ void operator()(int32_t) { ++n; }
};

// Writes into the row's region, each id plus `base` (a language's first id
// in the global id space; 0 for one list). Both walks are deterministic and
// emit the same ids, so n ends equal to cap; the bound keeps memory safe
// should they ever disagree, and write_matches reports that (n_unique -1).
struct WriteEmit {
  int32_t *out;
  int64_t cap;
  int32_t base;
  int64_t n = 0;
  __device__ void operator()(int32_t id) {
    if (n < cap) out[n] = id + base;
    ++n;
  }
};

// Row matched by thread i: rows[i] (a subset, e.g. one language's rows), or i.
__device__ __forceinline__ int64_t row_of(const int64_t *rows, int64_t i) { return rows ? rows[i] : i; }

// Walk 1: counts[r] = occurrences of entries in row r (repeats included),
// for the n_rows rows r = row_of(rows, i) (rows: nullptr for every row).
template <class Offset>
__global__ void count_matches(GC_TABLE_PARAMS, const uint8_t *bytes, const Offset *offsets,
                              const uint8_t *validity, int64_t offset, const int64_t *rows, int64_t n_rows,
                              int64_t *counts) {
  const int64_t i = this_row();
  if (i >= n_rows) return;
  const int64_t r = row_of(rows, i);
  const Tables t = tables_of(GC_TABLE_ARGS);
  CountEmit emit;
  match_row(t, StringColumn<Offset>{bytes, offsets, validity, offset}, r, emit);
  counts[r] = emit.n;
}

// Walk 2: row r's ids (+ base), sorted and unique, at
// ids[starts[r]:starts[r] + n_unique[r]], where starts is the exclusive scan
// of walk 1's counts over every row of the column. n_unique[r] = -1 where the
// walks disagreed: the caller raises, never truncates silently.
template <class Offset>
__global__ void write_matches(GC_TABLE_PARAMS, const uint8_t *bytes, const Offset *offsets,
                              const uint8_t *validity, int64_t offset, const int64_t *rows, int64_t n_rows,
                              const int64_t *starts, int32_t base, int32_t *ids, int64_t *n_unique) {
  const int64_t i = this_row();
  if (i >= n_rows) return;
  const int64_t r = row_of(rows, i);
  const Tables t = tables_of(GC_TABLE_ARGS);
  WriteEmit emit{ids + starts[r], starts[r + 1] - starts[r], base};
  match_row(t, StringColumn<Offset>{bytes, offsets, validity, offset}, r, emit);
  n_unique[r] = emit.n == emit.cap ? sort_unique(emit.out, emit.n) : -1;
}

// Copies each row's unique ids from its pass-2 region to its CSR slot.
__global__ void compact_matches(const int64_t *starts, const int32_t *raw_ids, const int64_t *offsets,
                                int64_t n_rows, int32_t *ids) {
  const int64_t i = this_row();
  if (i >= n_rows) return;
  const int32_t *src = raw_ids + starts[i];
  int32_t *dst = ids + offsets[i];
  for (int64_t k = 0, n = offsets[i + 1] - offsets[i]; k < n; ++k) dst[k] = src[k];
}

// Balanced sampling (docs/semantics.md section 7): keep[i] for the CSR match index.
__global__ void keep_rows(const int64_t *offsets, const int32_t *ids, const uint64_t *uid_keys, const double *p,
                          uint64_t seed, int64_t n_rows, bool *keep) {
  const int64_t i = this_row();
  if (i >= n_rows) return;
  keep[i] = keep_row(seed, uid_keys[i], ids + offsets[i], offsets[i + 1] - offsets[i], p);
}

// String uids' sampling keys: hash_bytes of each row's bytes, exactly as the
// host computes them (balance.uid_keys through _core.hash_slices).
template <class Offset>
__global__ void hash_rows(const uint8_t *bytes, const Offset *offsets, int64_t offset, int64_t n_rows,
                          uint64_t *keys) {
  const int64_t i = this_row();
  if (i >= n_rows) return;
  const int64_t a = offsets[offset + i], b = offsets[offset + i + 1];
  keys[i] = hash_bytes(bytes + a, b - a);
}

// 1 where row i is not null and its bytes are not valid UTF-8 (counted;
// such a text still matches on its bytes).
template <class Offset>
__global__ void invalid_utf8_rows(const uint8_t *bytes, const Offset *offsets, const uint8_t *validity,
                                  int64_t offset, int64_t n_rows, uint8_t *invalid) {
  const int64_t i = this_row();
  if (i >= n_rows) return;
  const StringColumn<Offset> col{bytes, offsets, validity, offset};
  const int64_t a = offsets[offset + i], b = offsets[offset + i + 1];
  invalid[i] = row_is_valid(col, i) && !is_valid_utf8(bytes + a, b - a);
}

// Sampling keys of derived uids prefix + decimal(rows[i]) ("<file>:<row>"),
// as the host computes them (matchindex.uid_keys through _core.derived_uid_keys).
__global__ void derived_uid_keys(const uint8_t *prefix, int64_t prefix_len, const int64_t *rows, int64_t n_rows,
                                 uint64_t *keys) {
  const int64_t i = this_row();
  if (i >= n_rows) return;
  keys[i] = hash_prefixed_decimal(prefix, prefix_len, (uint64_t)rows[i]);
}

}  // namespace gc

#ifndef __CUDACC_RTC__
// nvcc (CI's compile check) instantiates templates only where they are used;
// NVRTC instantiates them from CuPy's name_expressions instead. Taking the
// addresses here makes `nvcc -c` compile every kernel the GPU engine runs.
// extern: external linkage, so no "never referenced" warning.
extern void *const gc_kernel_instances[] = {
    (void *)&gc::count_matches<int32_t>, (void *)&gc::count_matches<int64_t>,
    (void *)&gc::write_matches<int32_t>, (void *)&gc::write_matches<int64_t>,
    (void *)&gc::hash_rows<int32_t>,     (void *)&gc::hash_rows<int64_t>,
    (void *)&gc::invalid_utf8_rows<int32_t>, (void *)&gc::invalid_utf8_rows<int64_t>,
};
#endif
