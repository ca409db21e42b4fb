// NCCL loaded at run time (nccl.h says why and what the reducer does). The few prototypes used are declared here,
// with NCCL's own values for its enums (nccl.h of NCCL 2.x: ncclFloat32 = 7, ncclAvg = 4, ncclSuccess = 0).
#include "nccl.h"

#include <dlfcn.h>

#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>

#include "common.h"
#ifdef ALEXNET_WITH_CUDA
#include "cuda/runtime.h"
#endif

namespace alexnet::nccl {
namespace {

using Comm = void*;  // ncclComm_t
struct UniqueId {
  char internal[kUniqueIdBytes];
};
constexpr int kFloat32 = 7;  // ncclFloat32
constexpr int kAvg = 4;      // ncclAvg (NCCL >= 2.10)

struct Api {
  int (*get_version)(int*) = nullptr;
  int (*get_unique_id)(UniqueId*) = nullptr;
  int (*comm_init_rank)(Comm*, int, UniqueId, int) = nullptr;
  int (*comm_destroy)(Comm) = nullptr;
  int (*all_reduce)(const void*, void*, size_t, int, int, Comm, void*) = nullptr;
  int (*group_start)() = nullptr;
  int (*group_end)() = nullptr;
  const char* (*error_string)(int) = nullptr;
};

std::mutex g_mutex;
Api g_api;
bool g_loaded = false;

const Api& api() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_loaded) throw std::runtime_error("NCCL: the library is not loaded (alexnet_cuda.distributed loads it)");
  return g_api;
}

void check(int status, const char* what) {
  if (status == 0) return;
  const char* text = g_api.error_string ? g_api.error_string(status) : "unknown error";
  throw std::runtime_error(str_cat("NCCL: ", what, " failed: ", text, " (ncclResult_t ", status, ")"));
}

template <typename F>
void bind(void* lib, const std::string& path, const char* symbol, F& fn) {
  fn = reinterpret_cast<F>(dlsym(lib, symbol));
  if (!fn) throw std::runtime_error(str_cat("NCCL: ", path, " has no symbol ", symbol, " (not NCCL 2.10 or newer?)"));
}

class Reducer : public GradientReducer {
 public:
  Reducer(const Network& net, const std::vector<std::string>& ids, int rank, int size) {
    const NetSpec& spec = net.spec();
    const int towers = spec.towers;
    AX_CHECK(static_cast<int>(ids.size()) == towers, "NCCL: one unique id per tower expected, got ", ids.size(),
             " for ", towers, " towers");
    AX_CHECK(size >= 1 && rank >= 0 && rank < size, "NCCL: rank ", rank, " outside 0..", size - 1);
    const Api& a = api();
    comms_.assign(towers, nullptr);
    // Several communicators from one thread must be created inside a group (NCCL's rule), each on its device.
    check(a.group_start(), "ncclGroupStart");
    for (int t = 0; t < towers; ++t) {
      UniqueId id;
      AX_CHECK(ids[t].size() == sizeof(id.internal), "NCCL: a unique id has ", sizeof(id.internal), " bytes, got ",
               ids[t].size());
      std::memcpy(id.internal, ids[t].data(), sizeof(id.internal));
#ifdef ALEXNET_WITH_CUDA
      std::optional<cuda::DeviceGuard> on_device;
      if (spec.devices[t].is_cuda()) on_device.emplace(spec.devices[t].index);
#endif
      check(a.comm_init_rank(&comms_[t], size, id, rank), "ncclCommInitRank");
    }
    check(a.group_end(), "ncclGroupEnd");
  }
  ~Reducer() override {
    for (Comm c : comms_) {
      if (c) g_api.comm_destroy(c);
    }
  }

  void layer_ready(int tower, const std::vector<Parameter*>& params, void* stream) override {
    const Api& a = api();
    // In place on the gradient, queued on the tower's stream after the kernels that wrote it.
    for (Parameter* p : params) {
      check(a.all_reduce(p->grad.data(), p->grad.data(), static_cast<size_t>(p->grad.numel()), kFloat32, kAvg,
                         comms_[tower], stream),
            "ncclAllReduce");
    }
  }
  // The reductions are on the towers' streams, before the update's kernels: stream order is the wait.
  void wait() override {}

 private:
  std::vector<Comm> comms_;
};

}  // namespace

void load_library(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_loaded) return;
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* why = dlerror();
    throw std::runtime_error(str_cat("NCCL: cannot load ", path, ": ", why ? why : "unknown reason"));
  }
  Api a;
  try {
    bind(lib, path, "ncclGetVersion", a.get_version);
    bind(lib, path, "ncclGetUniqueId", a.get_unique_id);
    bind(lib, path, "ncclCommInitRank", a.comm_init_rank);
    bind(lib, path, "ncclCommDestroy", a.comm_destroy);
    bind(lib, path, "ncclAllReduce", a.all_reduce);
    bind(lib, path, "ncclGroupStart", a.group_start);
    bind(lib, path, "ncclGroupEnd", a.group_end);
    bind(lib, path, "ncclGetErrorString", a.error_string);
  } catch (...) {
    dlclose(lib);
    throw;
  }
  g_api = a;
  g_loaded = true;
}

bool library_loaded() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_loaded;
}

std::string library_version() {
  int v = 0;
  check(api().get_version(&v), "ncclGetVersion");
  // NCCL >= 2.9 encodes major * 10000 + minor * 100 + patch.
  return str_cat(v / 10000, ".", (v / 100) % 100, ".", v % 100);
}

std::string unique_id() {
  UniqueId id;
  check(api().get_unique_id(&id), "ncclGetUniqueId");
  return std::string(id.internal, sizeof(id.internal));
}

std::shared_ptr<GradientReducer> make_reducer(const Network& net, const std::vector<std::string>& unique_ids,
                                              int rank, int size) {
  return std::make_shared<Reducer>(net, unique_ids, rank, size);
}

}  // namespace alexnet::nccl
