// Shared definitions for host (C++17) and device (NVCC / NVRTC) builds.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define GC_HD __host__ __device__ __forceinline__
#else
#define GC_HD inline
#endif

#ifdef __CUDACC_RTC__
// NVRTC has no standard headers; these are the only types the kernels use.
typedef unsigned char uint8_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#else
#include <cstdint>
#endif

namespace gc {

// splitmix64's finalizer: a bijective 64-bit mixer (Steele et al., 2014).
GC_HD uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// 64-bit hash of a byte string: FNV-1a, then mixed with the length.
// Used for vocabulary look-ups and for string uids; documented in README.
GC_HD uint64_t hash_bytes(const uint8_t* p, int64_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int64_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return mix64(h ^ (uint64_t)n);
}

// Open-addressing hash table with linear probing, stored as two flat arrays
// (keys, vals; vals == -1 marks an empty slot). Several slots may hold the
// same key (vocabulary hash collisions); callers that need exactness verify
// the value and keep probing.
struct HashTable {
  const uint64_t* keys;
  const int32_t* vals;
  uint64_t mask;  // number of slots - 1 (a power of two)
};

GC_HD uint64_t slot_of(uint64_t key, uint64_t mask) { return mix64(key) & mask; }

GC_HD int32_t table_find(const HashTable& t, uint64_t key) {
  for (uint64_t s = slot_of(key, t.mask);; s = (s + 1) & t.mask) {
    int32_t v = t.vals[s];
    if (v < 0 || t.keys[s] == key) return v;
  }
}

}  // namespace gc
