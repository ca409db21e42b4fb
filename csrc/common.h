// Shared basics: error types and the check macro used at every op's boundary.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace alexnet {

// Bad arguments: the bindings turn ValueError into Python's ValueError and TypeError into TypeError.
struct ValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct TypeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
// A device allocation that could not be satisfied; becomes Python's MemoryError.
struct OutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename... Args>
std::string str_cat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

}  // namespace alexnet

// AX_CHECK(cond, "op", ": expected ...", value) throws ValueError with the concatenated message.
#define AX_CHECK(cond, ...)                                         \
  do {                                                              \
    if (!(cond)) throw ::alexnet::ValueError(::alexnet::str_cat(__VA_ARGS__)); \
  } while (0)

#define AX_CHECK_TYPE(cond, ...)                                    \
  do {                                                              \
    if (!(cond)) throw ::alexnet::TypeError(::alexnet::str_cat(__VA_ARGS__)); \
  } while (0)
