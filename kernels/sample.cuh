// Balanced sampling (docs/semantics.md section 7), shared by the CPU and GPU engines.
//
//   u(seed, uid, entry) = top 53 bits of
//       mix64(mix64(mix64(seed ^ GOLDEN) ^ uid_key) ^ entry) / 2^53
// where uid_key is the uid itself for integer uids and hash_bytes(uid) for
// string uids. A row is kept when u < p[entry] for at least one matched entry.
#pragma once
#include "common.cuh"

namespace gc {

GC_HD double uniform(uint64_t seed, uint64_t uid_key, int32_t entry) {
  uint64_t h = mix64(seed ^ 0x9e3779b97f4a7c15ULL);
  h = mix64(h ^ uid_key);
  h = mix64(h ^ (uint64_t)(uint32_t)entry);
  return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

// The seed of epoch e for online rebalancing (gpu_curate.Rebalancer):
//   epoch_seed(seed, e) = mix64(mix64(seed ^ EPOCH_KEY) ^ e)
// Its own constant, so an epoch's seed is not a state of uniform()'s chain.
GC_HD uint64_t epoch_seed(uint64_t seed, uint64_t epoch) {
  return mix64(mix64(seed ^ 0xd1b54a32d192ed03ULL) ^ epoch);
}

GC_HD bool keep_row(uint64_t seed, uint64_t uid_key, const int32_t* ids, int64_t n, const double* p) {
  for (int64_t k = 0; k < n; ++k)
    if (uniform(seed, uid_key, ids[k]) < p[ids[k]]) return true;
  return false;
}

}  // namespace gc
