// Host emulation of the CUDA execution model, for the emulated device
// (gpu_curate/_emulated_device.cpp; GPU_CURATE_EMULATE=1 in README).
//
// Include it before any kernel source. It makes a host compiler take the
// device side of every #if: __CUDA_ARCH__ is defined, so walk.cuh's host-only
// fast paths (wide loads, SIMD, prefetch) are compiled out and the code a GPU
// thread runs is what runs here. The CUDA qualifiers mean nothing on the host;
// threadIdx, blockIdx, blockDim and gridDim are thread-locals set by
// gc_emu::launch before it calls the kernel once per (block, thread).
//
// Valid only for kernels that use no shared memory, barriers, warp
// intrinsics or atomics: those are the CUDA features that make threads see
// each other's work, and without them one host thread running the grid's
// threads one after the other computes exactly what the GPU computes.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#error "emulation.cuh is for host compilers; nvcc and NVRTC compile the kernels for a real GPU"
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
// sm_90, the architecture CI compiles for with nvcc and NVRTC.
#define __CUDA_ARCH__ 900

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

// The built-in variables. thread_local: blocks run on several host threads.
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace gc_emu {

// CUDA's launch limits (compute capability 9.0), checked by the caller too.
constexpr uint64_t kMaxThreadsPerBlock = 1024;
constexpr uint64_t kMaxGridX = 2147483647, kMaxGridYZ = 65535;

// Unpacks kernel arguments as the CUDA driver does: params[k] points to the
// bytes of argument k, and the driver copies sizeof(parameter k) bytes from
// there, whatever the caller meant them to be. The caller (Python) checks
// every argument's type before it gets here.
template <class... Args, std::size_t... K>
std::tuple<Args...> unpack(const void* const* params, std::index_sequence<K...>) {
  std::tuple<Args...> values;
  ((void)std::memcpy(&std::get<K>(values), params[K], sizeof(Args)), ...);
  return values;
}

// Runs kernel<<<grid, block>>>(params): every thread of every block, the
// blocks spread over `workers` host threads (blocks are independent in CUDA:
// no order between them is promised), the threads of a block one by one.
template <class... Args>
void launch(void (*kernel)(Args...), dim3 grid, dim3 block, const void* const* params, unsigned workers) {
  const std::tuple<Args...> args = unpack<Args...>(params, std::index_sequence_for<Args...>{});
  const uint64_t n_blocks = (uint64_t)grid.x * grid.y * grid.z;
  std::atomic<uint64_t> next{0};
  auto run_blocks = [&] {
    gridDim = grid;
    blockDim = block;
    for (uint64_t b; (b = next++) < n_blocks;) {
      blockIdx = {(unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y), (unsigned)(b / grid.x / grid.y)};
      for (unsigned z = 0; z < block.z; ++z)
        for (unsigned y = 0; y < block.y; ++y)
          for (unsigned x = 0; x < block.x; ++x) {
            threadIdx = {x, y, z};
            std::apply(kernel, args);  // by value, as every CUDA thread gets its own copy
          }
    }
  };
  workers = (unsigned)std::max<uint64_t>(1, std::min<uint64_t>(workers, n_blocks));
  std::vector<std::thread> pool;
  for (unsigned k = 1; k < workers; ++k) pool.emplace_back(run_blocks);
  run_blocks();
  for (auto& t : pool) t.join();
}

}  // namespace gc_emu
