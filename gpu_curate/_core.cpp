// Host build of the shared kernels/ sources: the CPU engine.
// Every function releases the GIL and splits rows over std::threads.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <climits>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "host_walk.h"
#include "sample.cuh"
#include "walk.cuh"

namespace py = pybind11;

template <class T>
using Array = py::array_t<T, py::array::c_style | py::array::forcecast>;
// No forcecast: a converted temporary would die before the pointer is used.
template <class T>
using Strict = py::array_t<T, py::array::c_style>;

namespace {

template <class T>
const T* data_of(const py::dict& d, const std::string& key) {
  return d[key.c_str()].cast<Strict<T>>().data();
}

// A slot table is stored as a (n_slots, 2) uint64 array: {key, target | out << 32}.
gc::SlotTable slots_of(const py::dict& d, const std::string& key) {
  auto a = d[key.c_str()].cast<Strict<uint64_t>>();
  static_assert(sizeof(gc::Slot) == 16, "Slot must be two 64-bit words");
  return {reinterpret_cast<const gc::Slot*>(a.data()), (uint64_t)(a.size() / 2) - 1};
}

gc::Trie trie_of(const py::dict& d, const std::string& p) {
  gc::Trie a{};
  a.n_nodes = (int32_t)d[(p + "_n_nodes").c_str()].cast<int64_t>();
  a.n_symbols = (int32_t)d[(p + "_n_symbols").c_str()].cast<int64_t>();
  a.edges = slots_of(d, p + "_edge_slots");
  a.out_lists = data_of<int32_t>(d, p + "_out_lists");
  return a;
}

gc::Automaton automaton_of(const py::dict& d, const std::string& p) {
  const gc::Trie trie = trie_of(d, p);
  gc::Automaton a{};
  a.n_nodes = trie.n_nodes;
  a.n_symbols = trie.n_symbols;
  a.edges = trie.edges;
  a.cfail = data_of<int32_t>(d, p + "_cfail");
  a.out_lists = trie.out_lists;
  return a;
}

// The dict holds arrays of exactly the right dtype (automaton.py makes
// them so); the caller keeps it alive while the pointers are used.
gc::Tables tables_of(const py::dict& d) {
  gc::Tables t{};
  t.tok = trie_of(d, "tok");
  t.vocab.table = slots_of(d, "vocab_slots");
  t.vocab.offsets = data_of<int64_t>(d, "vocab_offsets");
  t.vocab.bytes = data_of<uint8_t>(d, "vocab_bytes");
  t.byte = automaton_of(d, "byte");
  t.byte_root = reinterpret_cast<const gc::Slot*>(data_of<uint64_t>(d, "byte_root"));
  return t;
}

// Runs body(begin, end, chunk_index) over row chunks on `threads` threads.
template <class Body>
void parallel_chunks(int64_t n_rows, int64_t chunk, int threads, Body body) {
  const int64_t n_chunks = (n_rows + chunk - 1) / chunk;
  std::atomic<int64_t> next{0};
  auto worker = [&] {
    for (int64_t c; (c = next++) < n_chunks;) body(c * chunk, std::min(n_rows, (c + 1) * chunk), c);
  };
  threads = (int)std::max<int64_t>(1, std::min<int64_t>(threads, n_chunks));
  std::vector<std::thread> pool;
  for (int k = 1; k < threads; ++k) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
}

constexpr int64_t kChunkRows = 2048;

struct PushBack {
  std::vector<int32_t>* out;
  void operator()(int32_t id) const { out->push_back(id); }
};

// The per-row walk, as a GPU thread runs it (tests compare it with the batches).
template <class Offset>
void match_rows_one_by_one(const gc::Tables& t, const gc::StringColumn<Offset>& col, const uint8_t* limit,
                           int64_t begin, int64_t end, std::vector<int32_t>& out, int64_t* counts) {
  PushBack emit{&out};
  for (int64_t i = begin; i < end; ++i) {
    const size_t first = out.size();
    if (gc::row_is_valid(col, i)) {
      const int64_t a = col.offsets[col.offset + i], b = col.offsets[col.offset + i + 1];
      gc::match_text(t, col.bytes + a, b - a, emit, limit);
    }
    const int64_t m = gc::sort_unique(out.data() + first, (int64_t)(out.size() - first));
    out.resize(first + m);
    counts[i - begin] = m;
  }
}

// `limit` is the end of the column's byte buffer: the walk may load 8 or 64
// bytes at once where they stay below it.
template <class Offset>
py::tuple match_column(const gc::Tables& t, const uint8_t* byte_needs, const gc::StringColumn<Offset>& col,
                       const uint8_t* limit, int64_t n_rows, int threads, bool per_row) {
  const int64_t n_chunks = (n_rows + kChunkRows - 1) / kChunkRows;
  std::vector<std::vector<int32_t>> ids(n_chunks);
  std::vector<int64_t> counts(n_rows);
  {
    py::gil_scoped_release nogil;
    parallel_chunks(n_rows, kChunkRows, threads, [&](int64_t begin, int64_t end, int64_t c) {
      if (per_row) {
        match_rows_one_by_one(t, col, limit, begin, end, ids[c], counts.data() + begin);
      } else {
        gc::BatchWalker(t, limit, byte_needs).match_rows(col, begin, end, ids[c], counts.data() + begin);
      }
    });
  }
  Array<int64_t> offsets(n_rows + 1);
  int64_t* off = offsets.mutable_data();
  off[0] = 0;
  for (int64_t i = 0; i < n_rows; ++i) off[i + 1] = off[i] + counts[i];
  Array<int32_t> entry_ids(off[n_rows]);
  int32_t* dst = entry_ids.mutable_data();
  for (auto& v : ids) {
    if (!v.empty()) std::memcpy(dst, v.data(), v.size() * sizeof(int32_t));
    dst += v.size();
  }
  return py::make_tuple(offsets, entry_ids);
}

// Calls body(gc::StringColumn<Offset>) for an Arrow string column given as
// its buffers, Offset being the offsets' type (int32: string, int64:
// large_string). The arrays stay alive for the call.
template <class Body>
auto with_column(Array<uint8_t> bytes, py::array offsets, py::object validity, int64_t offset, Body body) {
  const uint8_t* valid = nullptr;
  Array<uint8_t> valid_arr;
  if (!validity.is_none()) {
    valid_arr = validity.cast<Array<uint8_t>>();
    valid = valid_arr.data();
  }
  if (offsets.dtype().is(py::dtype::of<int32_t>())) {
    auto o = offsets.cast<Array<int32_t>>();
    return body(gc::StringColumn<int32_t>{bytes.data(), o.data(), valid, offset});
  }
  if (offsets.dtype().is(py::dtype::of<int64_t>())) {
    auto o = offsets.cast<Array<int64_t>>();
    return body(gc::StringColumn<int64_t>{bytes.data(), o.data(), valid, offset});
  }
  throw std::invalid_argument("offsets must be int32 or int64");
}

py::tuple match(const py::dict& tables, Array<uint8_t> bytes, py::array offsets, py::object validity,
                int64_t offset, int64_t n_rows, int threads, bool per_row) {
  const gc::Tables t = tables_of(tables);
  // The batched walk's prefilter (host_walk.h); the per-row walk, as a GPU thread runs it, walks every row.
  const uint8_t* byte_needs = tables.contains("byte_needs") ? data_of<uint8_t>(tables, "byte_needs") : nullptr;
  const uint8_t* limit = bytes.data() + bytes.size();  // 8-byte loads stay inside the buffer
  return with_column(bytes, offsets, validity, offset,
                     [&](auto col) { return match_column(t, byte_needs, col, limit, n_rows, threads, per_row); });
}

// hash_bytes of each slice bytes[starts[i]:ends[i]]. FNV-1a is a chain of
// dependent multiplies, one per byte: four slices are hashed side by side so
// that their chains overlap in the pipeline (about 3x faster on 32-byte
// uids); each lane computes exactly gc::hash_bytes.
Array<uint64_t> hash_slices(Array<uint8_t> bytes, Array<int64_t> starts, Array<int64_t> ends) {
  constexpr int kLanes = 4;
  const int64_t n = starts.size();
  Array<uint64_t> out(n);
  const uint8_t* b = bytes.data();
  const int64_t *s = starts.data(), *e = ends.data();
  uint64_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      uint64_t h[kLanes];
      int64_t len[kLanes], common = INT64_MAX;
      for (int l = 0; l < kLanes; ++l) {
        h[l] = gc::kFnvBasis;
        len[l] = e[i + l] - s[i + l];
        common = std::min(common, len[l]);
      }
      for (int64_t j = 0; j < common; ++j)
        for (int l = 0; l < kLanes; ++l) h[l] = gc::fnv1a(h[l], b + s[i + l] + j, 1);
      for (int l = 0; l < kLanes; ++l) {
        h[l] = gc::fnv1a(h[l], b + s[i + l] + common, len[l] - common);
        o[i + l] = gc::mix64(h[l] ^ (uint64_t)len[l]);
      }
    }
    for (; i < n; ++i) o[i] = gc::hash_bytes(b + s[i], e[i] - s[i]);
  }
  return out;
}

// gc::token_key of each slice bytes[offsets[i]:offsets[i+1]] (vocabulary keys).
Array<uint64_t> token_keys(Array<uint8_t> bytes, Array<int64_t> offsets) {
  const int64_t n = offsets.size() - 1;
  Array<uint64_t> out(std::max<int64_t>(n, 0));
  const uint8_t* b = bytes.data();
  const int64_t* o = offsets.data();
  uint64_t* k = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    for (int64_t i = 0; i < n; ++i) k[i] = gc::token_key(b + o[i], o[i + 1] - o[i]);
  }
  return out;
}

// Lays keys out in an open-addressing table of 2^log2_slots slots; slot
// values are the keys' positions. Sequential on purpose: the placement must
// be exactly what kernels/walk.cuh probes (linear probing from gc::slot_of,
// ordered: a key takes the first slot on its path that is empty or holds a
// larger key, which moves on along its own path; the result does not depend
// on the insertion order).
py::tuple build_table(Array<uint64_t> keys, int log2_slots) {
  const uint64_t n_slots = 1ULL << log2_slots, mask = n_slots - 1;
  if ((uint64_t)keys.size() >= n_slots) throw std::invalid_argument("hash table too small");
  Array<uint64_t> slot_keys(n_slots);
  Array<int32_t> slot_vals(n_slots);
  uint64_t* sk = slot_keys.mutable_data();
  int32_t* sv = slot_vals.mutable_data();
  const uint64_t* k = keys.data();
  const int64_t n = keys.size();
  {
    py::gil_scoped_release nogil;
    std::fill(sk, sk + n_slots, 0);
    std::fill(sv, sv + n_slots, -1);
    for (int64_t i = 0; i < n; ++i) {
      uint64_t key = k[i];
      int32_t pos = (int32_t)i;
      for (uint64_t s = gc::slot_of(key, mask);; s = (s + 1) & mask) {
        if (sv[s] < 0) {
          sk[s] = key;
          sv[s] = pos;
          break;
        }
        if (sk[s] > key) {
          std::swap(sk[s], key);
          std::swap(sv[s], pos);
        }
      }
    }
  }
  return py::make_tuple(slot_keys, slot_vals);
}

// Position in build_table's keys of each query, or -1, probing its layout
// as the kernels do (the automaton builder's child look-ups).
Array<int64_t> find_keys(Array<uint64_t> slot_keys, Array<int32_t> slot_vals, Array<uint64_t> queries) {
  const uint64_t mask = (uint64_t)slot_keys.size() - 1;
  const int64_t n = queries.size();
  Array<int64_t> out(n);
  const uint64_t *sk = slot_keys.data(), *q = queries.data();
  const int32_t* sv = slot_vals.data();
  int64_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    for (int64_t i = 0; i < n; ++i) {
      uint64_t s = gc::slot_of(q[i], mask);
      while (sv[s] >= 0 && sk[s] < q[i]) s = (s + 1) & mask;
      o[i] = sv[s] >= 0 && sk[s] == q[i] ? sv[s] : -1;
    }
  }
  return out;
}

// gc::Slot words {key, words[position]} of a build_table layout, as a
// (n_slots, 2) uint64 array; empty slots get {0, 0}.
Array<uint64_t> slot_words(Array<uint64_t> slot_keys, Array<int32_t> slot_vals, Array<uint64_t> words) {
  const int64_t n = slot_keys.size();
  Array<uint64_t> out({n, (int64_t)2});
  const uint64_t *sk = slot_keys.data(), *w = words.data();
  const int32_t* sv = slot_vals.data();
  uint64_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    for (int64_t i = 0; i < n; ++i) {
      o[2 * i] = sv[i] >= 0 ? sk[i] : 0;
      o[2 * i + 1] = sv[i] >= 0 ? w[sv[i]] : 0;
    }
  }
  return out;
}

// Keep decision per row (docs/semantics.md section 7) over a CSR match index.
Array<bool> keep_rows(Array<int64_t> offsets, Array<int32_t> entry_ids, Array<uint64_t> uid_keys,
                      Array<double> p, uint64_t seed, int threads) {
  const int64_t n = uid_keys.size();
  if (offsets.size() != n + 1) throw std::invalid_argument("offsets must have len(uid_keys) + 1 items");
  Array<bool> keep(n);
  bool* k = keep.mutable_data();
  const int64_t* off = offsets.data();
  const int32_t* ids = entry_ids.data();
  const uint64_t* uk = uid_keys.data();
  const double* pp = p.data();
  {
    py::gil_scoped_release nogil;
    parallel_chunks(n, 1 << 16, threads, [&](int64_t begin, int64_t end, int64_t) {
      for (int64_t i = begin; i < end; ++i) k[i] = gc::keep_row(seed, uk[i], ids + off[i], off[i + 1] - off[i], pp);
    });
  }
  return keep;
}

Array<double> uniforms(uint64_t seed, Array<uint64_t> uid_keys, Array<int32_t> entry_ids) {
  const int64_t n = uid_keys.size();
  Array<double> out(n);
  double* o = out.mutable_data();
  for (int64_t i = 0; i < n; ++i) o[i] = gc::uniform(seed, uid_keys.data()[i], entry_ids.data()[i]);
  return out;
}

// Sampling keys of derived uids prefix + decimal(row), one per row (gc::hash_prefixed_decimal).
Array<uint64_t> derived_uid_keys(Array<uint8_t> prefix, Array<int64_t> rows) {
  const int64_t n = rows.size();
  Array<uint64_t> out(n);
  const uint8_t* pre = prefix.data();
  const int64_t len = prefix.size();
  const int64_t* r = rows.data();
  uint64_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    for (int64_t i = 0; i < n; ++i) o[i] = gc::hash_prefixed_decimal(pre, len, (uint64_t)r[i]);
  }
  return out;
}

// The row's bytes are valid UTF-8. Host fast path: whole 8-byte words of
// ASCII are skipped; the shared check starts at the first byte >= 0x80
// (a character boundary, since everything before it is ASCII).
bool valid_utf8_row(const uint8_t* p, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w & 0x8080808080808080ULL) break;
  }
  return gc::is_valid_utf8(p + i, n - i);
}

// Per row of an Arrow string/binary column: 1 where the row is non-null
// and not valid UTF-8 (counted, or an error with --strict-utf8).
template <class Offset>
Array<bool> invalid_utf8_column(const gc::StringColumn<Offset>& col, int64_t n_rows) {
  Array<bool> out(n_rows);
  bool* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    for (int64_t i = 0; i < n_rows; ++i) {
      const int64_t a = col.offsets[col.offset + i], b = col.offsets[col.offset + i + 1];
      o[i] = gc::row_is_valid(col, i) && !valid_utf8_row(col.bytes + a, b - a);
    }
  }
  return out;
}

Array<bool> invalid_utf8(Array<uint8_t> bytes, py::array offsets, py::object validity, int64_t offset, int64_t n_rows) {
  return with_column(bytes, offsets, validity, offset, [&](auto col) { return invalid_utf8_column(col, n_rows); });
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "Host build of gpu_curate's kernels/ (the CPU engine).";
  m.def("match", &match,
        "CSR match sets of an Arrow string column; per_row: the GPU's per-row walk instead of row batches.",
        py::arg("tables"), py::arg("bytes"), py::arg("offsets"), py::arg("validity"), py::arg("offset"),
        py::arg("n_rows"), py::arg("threads"), py::arg("per_row") = false);
  m.def("hash_slices", &hash_slices, "hash_bytes of byte slices.");
  m.def("token_keys", &token_keys, "Vocabulary keys (gc::token_key) of byte slices.");
  m.def("find_keys", &find_keys, "Positions of keys in a build_table layout (-1: absent).");
  m.def("slot_words", &slot_words, "gc::Slot table of a build_table layout.");
  m.def("build_table", &build_table, "Open-addressing table layout of 64-bit keys.");
  m.def("keep_rows", &keep_rows, "Balanced-sampling keep decision per row.");
  m.def("uniforms", &uniforms, "The sampling uniform u(seed, uid_key, entry) elementwise.");
  m.def("epoch_seed", &gc::epoch_seed, "The sampling seed of one epoch (kernels/sample.cuh).", py::arg("seed"),
        py::arg("epoch"));
  m.def("derived_uid_keys", &derived_uid_keys, "Sampling keys of the uids prefix + decimal(row).");
  m.def("invalid_utf8", &invalid_utf8, "Per row of a string column: non-null and not valid UTF-8.",
        py::arg("bytes"), py::arg("offsets"), py::arg("validity"), py::arg("offset"), py::arg("n_rows"));
}
