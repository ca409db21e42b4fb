#include "device.h"

#include <cctype>

#include "common.h"
#ifdef ALEXNET_WITH_CUDA
#include "cuda/runtime.h"
#endif

namespace alexnet {

Device Device::parse(const std::string& spec) {
  if (spec == "cpu") return Device::cpu();
  int index = -1;
  if (spec == "cuda") {
    index = 0;
  } else if (spec.rfind("cuda:", 0) == 0 && spec.size() > 5) {
    index = 0;
    for (size_t i = 5; i < spec.size(); ++i) {
      if (!std::isdigit(static_cast<unsigned char>(spec[i])) || index > 1000) {
        index = -1;
        break;
      }
      index = index * 10 + (spec[i] - '0');
    }
  }
  AX_CHECK(index >= 0, "device: expected 'cpu', 'cuda' or 'cuda:N', got '", spec, "'");
#ifdef ALEXNET_WITH_CUDA
  const int count = cuda::device_count();
  AX_CHECK(index < count, "device: '", spec, "' does not exist: ", count, " CUDA device(s) visible");
  return Device::cuda(index);
#else
  throw ValueError(str_cat("device: '", spec, "' needs the CUDA backend, but alexnet_cuda was built without it"));
#endif
}

std::string Device::str() const { return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index); }

}  // namespace alexnet
