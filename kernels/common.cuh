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
// The hash of string uids (sample.cuh; docs/semantics.md section 7). Vocabulary
// look-ups use token_key below instead.
constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ULL;

GC_HD uint64_t fnv1a(uint64_t h, const uint8_t* p, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

GC_HD uint64_t hash_bytes(const uint8_t* p, int64_t n) { return mix64(fnv1a(kFnvBasis, p, n) ^ (uint64_t)n); }

// hash_bytes(prefix + decimal digits of `value`) without building the
// string: the sampling key of a derived uid "<file>:<row>" from the prefix
// "<file>:" and the row number, so the match index need not store uids.
GC_HD uint64_t hash_prefixed_decimal(const uint8_t* prefix, int64_t n, uint64_t value) {
  uint8_t digits[20];  // 2^64 - 1 has 20 digits
  int k = 0;
  do {
    digits[k++] = (uint8_t)('0' + value % 10);
    value /= 10;
  } while (value);
  uint64_t h = fnv1a(kFnvBasis, prefix, n);
  for (int j = k - 1; j >= 0; --j) h = (h ^ digits[j]) * 0x100000001b3ULL;
  return mix64(h ^ (uint64_t)(n + k));
}

// Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
// above U+10FFFF; what Python's and Arrow's validators accept. Invalid text
// still matches on its bytes (docs/semantics.md section 2); this only counts it.
GC_HD bool is_valid_utf8(const uint8_t* p, int64_t n) {
  int64_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, cp = c & 0x07;
    } else {
      return false;  // a continuation byte, C0/C1 (always overlong) or F5..FF
    }
    if (n - i < len) return false;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return false;
    if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return false;
    i += len;
  }
  return true;
}

// Slot of an open-addressing table keyed by a 64-bit key (linear probing
// from slot_of(key)). The build side (gpu_curate._core.build_table) places
// keys exactly as the probes below expect.
GC_HD uint64_t slot_of(uint64_t key, uint64_t mask) { return mix64(key) & mask; }

// Little-endian 64-bit word of bytes p[0..n), n <= 8, zero-padded.
GC_HD uint64_t load_word(const uint8_t* p, int64_t n) {
  uint64_t w = 0;
  for (int64_t i = 0; i < n; ++i) w |= (uint64_t)p[i] << (8 * i);
  return w;
}

// Vocabulary key of a token. Tokens of fewer than 8 bytes are their own key
// (bytes + length, injective), so a key match is a token match and needs no
// byte comparison; longer tokens get a hash with the top bit set, which no
// short key has, and a hit must be verified.
GC_HD uint64_t token_key_long(const uint8_t* p, int64_t n) {
  uint64_t h = (uint64_t)n * 0x9e3779b97f4a7c15ULL;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) h = ((h ^ load_word(p + i, 8)) * 0xbf58476d1ce4e5b9ULL) ^ (h >> 29);
  if (i < n) h = ((h ^ load_word(p + i, n - i)) * 0xbf58476d1ce4e5b9ULL) ^ (h >> 29);
  return mix64(h) | (1ULL << 63);
}

GC_HD uint64_t token_key(const uint8_t* p, int64_t n) {
  return n < 8 ? load_word(p, n) | ((uint64_t)n << 56) : token_key_long(p, n);
}

}  // namespace gc
