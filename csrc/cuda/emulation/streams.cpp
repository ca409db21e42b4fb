// Stream queues, events and the deferred execution order (streams.h).
#include "streams.h"

#include <chrono>
#include <limits>

#include "config.h"

namespace axemu {

Runtime& runtime() {
  static Runtime* r = [] {
    auto* rt = new Runtime;  // never destroyed: tensors freed at interpreter exit may still call in
    rt->devices.resize(static_cast<size_t>(config().devices));
    for (size_t d = 0; d < rt->devices.size(); ++d) {
      rt->devices[d].null_stream = std::make_unique<Stream>();
      rt->devices[d].null_stream->device = static_cast<int>(d);
    }
    return rt;
  }();
  return *r;
}

Stream* resolve_stream(cudaStream_t handle, int device) {
  if (!handle) return runtime().devices[static_cast<size_t>(device)].null_stream.get();
  return reinterpret_cast<Stream*>(handle);
}

bool is_live_stream(cudaStream_t handle) {
  if (!handle) return true;
  for (const auto& s : runtime().streams)
    if (reinterpret_cast<cudaStream_t>(s.get()) == handle) return s->live;
  return false;
}

bool is_live_event(cudaEvent_t handle) {
  for (const auto& e : runtime().events)
    if (reinterpret_cast<cudaEvent_t>(e.get()) == handle) return e->live;
  return false;
}

cudaError_t sticky_error(int device) { return runtime().devices[static_cast<size_t>(device)].sticky; }

namespace {

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

uint64_t push(Stream* s, Item item) {
  item.seq = runtime().next_seq++;
  const uint64_t seq = item.seq;
  s->queue.push_back(std::move(item));
  if (!config().deferred) complete_through(s, seq);
  return seq;
}

// Runs one item; a fault makes the device's error sticky (as a GPU's context is lost after a kernel fault), and
// the device's later work is dropped.
void run_item(Stream* s, Item& item) {
  DeviceState& dev = runtime().devices[static_cast<size_t>(s->device)];
  if (dev.sticky != cudaSuccess || !item.run) return;
  const Fault f = item.run();
  if (f.code != cudaSuccess) {
    dev.sticky = f.code;
    dev.sticky_detail = f.message;
  }
}

}  // namespace

uint64_t enqueue(Stream* s, std::function<Fault()> run) {
  Item item;
  item.run = std::move(run);
  return push(s, std::move(item));
}

void enqueue_record(Stream* s, Event* e) {
  Item item;
  item.seq = runtime().next_seq++;
  const uint64_t seq = item.seq;
  e->last_record = seq;
  e->pending[seq] = s;
  item.run = [e, seq] {
    e->pending.erase(seq);
    e->time_ms = now_ms();
    e->completed_once = true;
    return Fault{};
  };
  s->queue.push_back(std::move(item));
  if (!config().deferred) complete_through(s, seq);
}

void enqueue_wait(Stream* s, Event* e) {
  if (e->last_record == 0 || !e->pending.count(e->last_record)) return;  // nothing recorded, or already done
  Item item;
  item.wait_event = e;
  item.wait_record = e->last_record;
  push(s, std::move(item));
}

cudaError_t complete_through(Stream* s, uint64_t seq) {
  if (s->running) return cudaSuccess;  // already being drained further up: its earlier work has run
  s->running = true;
  while (!s->queue.empty() && s->queue.front().seq <= seq) {
    Item item = std::move(s->queue.front());
    s->queue.pop_front();
    if (item.wait_event) {
      auto it = item.wait_event->pending.find(item.wait_record);
      if (it != item.wait_event->pending.end()) complete_through(it->second, item.wait_record);
    }
    run_item(s, item);
  }
  s->running = false;
  return sticky_error(s->device);
}

cudaError_t complete_event(Event* e) {
  while (!e->pending.empty()) {
    auto it = e->pending.rbegin();
    complete_through(it->second, it->first);
  }
  return cudaSuccess;
}

// The device's streams in reverse creation order (the latest, e.g. the second tower's, first): independent
// streams run in the order least like the order the host issued them.
cudaError_t complete_device(int device) {
  DeviceState& dev = runtime().devices[static_cast<size_t>(device)];
  for (auto it = dev.streams.rbegin(); it != dev.streams.rend(); ++it)
    complete_through(*it, std::numeric_limits<uint64_t>::max());
  complete_through(dev.null_stream.get(), std::numeric_limits<uint64_t>::max());
  return dev.sticky;
}

}  // namespace axemu
