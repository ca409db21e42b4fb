// Data-parallel gradient averaging with NCCL (alexnet_cuda/train/distributed.py is the MPI side): libnccl is loaded at run
// time with dlopen, so the build has no NCCL dependency and a machine without it still imports the module.
//
// The network calls a GradientReducer as its backward pass produces each layer's gradients (network_step.cpp:
// fc8 first, then fc7, fc6 (96% of the paper's parameters), conv5 ... conv1), on the producing tower's stream, so
// the averaging of the fully connected layers runs on the GPUs' copy engines and links while the convolutional
// layers' backward still computes; the update waits for all of them (wait()). Every rank issues the same reductions
// in the same order, which NCCL requires.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "network.h"

namespace alexnet {

// What backward reports, layer by layer: the gradients of one layer of one tower, ready on `stream` (the tower's
// CUDA stream; null on the CPU).
class GradientReducer {
 public:
  virtual ~GradientReducer() = default;
  virtual void layer_ready(int tower, const std::vector<Parameter*>& params, void* stream) = 0;
  // Before the update: every reduction started has been queued ahead of the update on its tower's stream.
  virtual void wait() = 0;
};

namespace nccl {

constexpr int kUniqueIdBytes = 128;  // sizeof(ncclUniqueId)

// Loads libnccl from `path` (a file name the dynamic loader searches for, or a path); the first successful load is
// kept for the process. RuntimeError naming the path and dlerror()'s reason, or a missing symbol.
void load_library(const std::string& path);
bool library_loaded();
std::string library_version();  // "2.21.5" from ncclGetVersion

// A new unique id (rank 0 creates it; distributed.py broadcasts it over MPI).
std::string unique_id();

// One NCCL communicator per tower of the network (tower t of every rank in communicator t), created from the
// towers' unique ids; averages (ncclAvg) each layer's gradients in place as backward produces them.
std::shared_ptr<GradientReducer> make_reducer(const Network& net, const std::vector<std::string>& unique_ids,
                                              int rank, int size);

}  // namespace nccl
}  // namespace alexnet
