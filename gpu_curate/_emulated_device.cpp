// The emulated device: kernels/gpu_curate.cu, the GPU engine's kernels,
// compiled for the host under kernels/emulation.cuh (device branches on) and
// launched by gpu_curate.emulated_cupy with CUDA's argument passing.
//
// Each kernel's parameter list is read off its function type here, never
// written down twice: Python checks every argument against it before a launch.
#include "emulation.cuh"
// The kernels, exactly as NVRTC gets them (kernels/__init__.py inlines these includes).
#include "gpu_curate.cu"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace py = pybind11;

#ifndef GC_SOURCE_SHA256
#error "setup.py defines GC_SOURCE_SHA256: the fingerprint of the kernel source compiled here"
#endif

namespace {

// A NumPy dtype name for a C++ arithmetic type, from its size and signedness
// (so int64_t and long long, distinct C++ types, both read "int64").
template <class T>
std::string dtype_of() {
  static_assert(std::is_arithmetic_v<T>, "a kernel parameter type the emulated device cannot describe");
  if constexpr (std::is_same_v<T, bool>) {
    return "bool";
  } else if constexpr (std::is_floating_point_v<T>) {
    return "float" + std::to_string(8 * sizeof(T));
  } else {
    return (std::is_signed_v<T> ? "int" : "uint") + std::to_string(8 * sizeof(T));
  }
}

struct Param {
  bool pointer;   // a device pointer (8 bytes) to elements of `dtype`; else a scalar of `dtype`
  bool writable;  // a pointer to non-const elements
  std::string dtype;
  size_t size;  // bytes the driver copies for this parameter
};

template <class T>
Param param_of() {
  if constexpr (std::is_pointer_v<T>) {
    using Element = std::remove_pointer_t<T>;
    return {true, !std::is_const_v<Element>, dtype_of<std::remove_cv_t<Element>>(), sizeof(T)};
  } else {
    return {false, false, dtype_of<T>(), sizeof(T)};
  }
}

struct Kernel {
  std::vector<Param> params;
  std::function<void(dim3, dim3, const void* const*, unsigned)> launch;
};

template <class... Args>
Kernel kernel_of(void (*kernel)(Args...)) {
  return {{param_of<Args>()...}, [kernel](dim3 grid, dim3 block, const void* const* params, unsigned workers) {
            gc_emu::launch(kernel, grid, block, params, workers);
          }};
}

// Keyed by NVRTC name expression (kernels.KERNEL_NAMES; a test checks that
// the two lists agree).
#define GC_EMULATED(expr) {#expr, kernel_of(&expr)}

const std::map<std::string, Kernel>& registry() {
  static const std::map<std::string, Kernel> kernels = {
      GC_EMULATED(gc::count_matches<int32_t>), GC_EMULATED(gc::count_matches<int64_t>),
      GC_EMULATED(gc::write_matches<int32_t>), GC_EMULATED(gc::write_matches<int64_t>),
      GC_EMULATED(gc::compact_matches),        GC_EMULATED(gc::keep_rows),
      GC_EMULATED(gc::hash_rows<int32_t>),     GC_EMULATED(gc::hash_rows<int64_t>),
      GC_EMULATED(gc::invalid_utf8_rows<int32_t>), GC_EMULATED(gc::invalid_utf8_rows<int64_t>),
      GC_EMULATED(gc::derived_uid_keys),
  };
  return kernels;
}

const Kernel& kernel_named(const std::string& name) {
  auto it = registry().find(name);
  if (it == registry().end()) throw std::invalid_argument("no kernel " + name + " on the emulated device");
  return it->second;
}

dim3 dims_of(const std::vector<uint64_t>& d, const char* what) {
  if (d.size() != 3 || d[0] == 0 || d[1] == 0 || d[2] == 0)
    throw std::invalid_argument(std::string(what) + " must be three positive extents");
  return dim3((unsigned)d[0], (unsigned)d[1], (unsigned)d[2]);
}

py::dict kernels() {
  py::dict out;
  for (const auto& [name, kernel] : registry()) {
    py::list params;
    for (const Param& p : kernel.params)
      params.append(py::make_tuple(p.pointer ? "pointer" : "scalar", p.dtype, p.writable, p.size));
    out[py::str(name)] = params;
  }
  return out;
}

// args[k]: the bytes of argument k (a device address or a scalar's value).
void launch(const std::string& name, const std::vector<uint64_t>& grid, const std::vector<uint64_t>& block,
            const std::vector<py::bytes>& args, unsigned workers) {
  const Kernel& kernel = kernel_named(name);
  const dim3 g = dims_of(grid, "grid"), b = dims_of(block, "block");
  if ((uint64_t)b.x * b.y * b.z > gc_emu::kMaxThreadsPerBlock || b.z > 64)
    throw std::invalid_argument("block of more than 1024 threads (or z > 64)");
  if (g.x > gc_emu::kMaxGridX || g.y > gc_emu::kMaxGridYZ || g.z > gc_emu::kMaxGridYZ)
    throw std::invalid_argument("grid beyond CUDA's limits");
  if (args.size() != kernel.params.size())
    throw std::invalid_argument(name + " takes " + std::to_string(kernel.params.size()) + " arguments, got " +
                                std::to_string(args.size()));
  std::vector<std::string> values;
  values.reserve(args.size());
  for (size_t k = 0; k < args.size(); ++k) {
    values.emplace_back(args[k]);
    if (values[k].size() != kernel.params[k].size)
      throw std::invalid_argument(name + ": argument " + std::to_string(k) + " has " +
                                  std::to_string(values[k].size()) + " bytes, the parameter " +
                                  std::to_string(kernel.params[k].size));
  }
  std::vector<const void*> params;
  for (const std::string& v : values) params.push_back(v.data());
  py::gil_scoped_release nogil;
  kernel.launch(g, b, params.data(), std::max(1u, workers));
}

}  // namespace

PYBIND11_MODULE(_emulated_device, m) {
  m.doc() = "kernels/gpu_curate.cu compiled for the host: the emulated device (see gpu_curate.emulated_cupy)";
  m.attr("CUDA_ARCH") = __CUDA_ARCH__;
#if defined(GC_HOST_WIDE) || defined(GC_HOST_SIMD)
  m.attr("HOST_FAST_PATHS") = true;
#else
  m.attr("HOST_FAST_PATHS") = false;
#endif
  m.attr("SOURCE_SHA256") = GC_SOURCE_SHA256;
  m.def("kernels", &kernels, "{name expression: [(kind, dtype, writable, size in bytes) per parameter]}");
  m.def("launch", &launch, py::arg("name"), py::arg("grid"), py::arg("block"), py::arg("args"), py::arg("workers"),
        "Runs the kernel over the grid; args are each argument's bytes (checked by the caller).");
}
