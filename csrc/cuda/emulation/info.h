// What the emulated device reports about itself to the bindings (plain C++: no CUDA types or macros).
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace axemu {

// A readable summary ("2 device(s) x 2048 MiB, 4 SMs, ...") of the settings in force (config.h).
std::string config_summary();

struct LaunchStats {
  uint64_t launches = 0;      // kernels executed
  uint64_t race_checked = 0;  // of which ran under more than one thread schedule and were compared
  uint64_t blocks = 0;        // blocks executed, all schedules together
  std::map<std::string, uint64_t> by_kernel;  // launches per kernel name
};
LaunchStats launch_stats();

// Runs one of the planted-bug programs of selftest.cu (the names: selftest_names()); returns what it computed
// (for the bugs that show as wrong or NaN results) and throws what CUDA would report for the others.
std::map<std::string, double> run_selftest(const std::string& name);
std::string selftest_names();

}  // namespace axemu
