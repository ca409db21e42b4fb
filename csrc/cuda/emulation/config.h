// The emulated device's settings, read once from the environment at first use (README: "The emulated CUDA
// device"). Every setting has a default that suits the test suite.
//
//   AXEMU_DEVICES=2            emulated devices (both cuda:0,cuda:0 and cuda:0,cuda:1 placements can run)
//   AXEMU_MEMORY_MB=2048       capacity of each device (small values exercise the out-of-memory paths)
//   AXEMU_SMS=4                multiprocessor count the properties report (the GEMM planner's split-K input)
//   AXEMU_WORKERS=<cores>      host threads that run blocks in parallel
//   AXEMU_SCHEDULES=forward,reverse
//                              thread schedules every launch runs under; results must agree bit for bit
//                              (also: shuffled, with AXEMU_SEED); one schedule turns the race check off
//   AXEMU_RACE_CHECK_MB=64     launches reaching more memory than this run one schedule only
//   AXEMU_STREAMS=deferred     deferred: work runs only when the host must wait for it, independent streams in
//                              the latest-submitted-first order (the worst legal order); eager: at once, in order
//   AXEMU_POISON=1             new device memory, reused cached blocks and shared memory read as NaN bytes
//   AXEMU_PEER=1               devices can enable peer access to each other
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "block.h"
#include "info.h"

namespace axemu {

struct Config {
  int devices = 2;
  size_t memory_bytes = size_t{2048} << 20;
  int sms = 4;
  int workers = 1;
  std::vector<Schedule> schedules{Schedule::Forward, Schedule::Reverse};
  size_t race_check_bytes = size_t{64} << 20;
  bool deferred = true;
  bool poison = true;
  bool peer = true;
  uint64_t seed = 1;
};

const Config& config();

}  // namespace axemu
