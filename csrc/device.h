// Where a tensor lives: "cpu" or "cuda:N".
#pragma once

#include <string>

namespace alexnet {

enum class DeviceType : int { CPU = 0, CUDA = 1 };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return Device{}; }
  static Device cuda(int i) { return Device{DeviceType::CUDA, i}; }
  // Parses "cpu", "cuda" (= cuda:0) or "cuda:N"; throws ValueError for anything else, for a CUDA device when the
  // CUDA backend was not built, and for a GPU index that is not visible.
  static Device parse(const std::string& spec);

  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  std::string str() const;
  bool operator==(const Device& o) const { return type == o.type && (type == DeviceType::CPU || index == o.index); }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

}  // namespace alexnet
