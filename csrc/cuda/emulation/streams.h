// Streams and events of the emulated devices: each stream is a queue of work (kernels, copies, memsets, event
// records and waits) that runs only when the host has to wait for it (AXEMU_STREAMS=deferred, the default), and
// then only as much as it must: synchronizing one stream runs that stream and whatever its event waits need, and
// nothing else. Work that a missing cudaStreamWaitEvent leaves unordered therefore runs in the wrong order (the
// reader before the writer), so the bug changes the result instead of hiding behind a fast GPU.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "block.h"

namespace axemu {

struct Event;

struct Item {
  uint64_t seq = 0;
  std::function<Fault()> run;  // empty for a wait
  Event* wait_event = nullptr;
  uint64_t wait_record = 0;
};

struct Stream {
  int device = 0;
  unsigned flags = 0;
  bool live = true;
  bool running = false;  // being drained (a wait that needs it again would be a cycle)
  std::deque<Item> queue;
};

struct Event {
  int device = 0;
  unsigned flags = 0;
  bool live = true;
  uint64_t last_record = 0;               // the latest record queued (0: never recorded)
  std::map<uint64_t, Stream*> pending;    // records queued but not yet run
  double time_ms = 0;                     // host time when the latest record ran
  bool completed_once = false;
};

struct DeviceState {
  std::unique_ptr<Stream> null_stream;
  std::vector<Stream*> streams;  // every stream created on the device, in creation order
  cudaError_t sticky = cudaSuccess;
  std::string sticky_detail;
  std::set<int> peers;  // devices whose memory this one's kernels and copies may access
};

// One lock for the whole runtime: API calls are short, and the work they drain runs under it (kernels never call
// back into the runtime).
struct Runtime {
  std::recursive_mutex mutex;
  std::vector<DeviceState> devices;
  std::vector<std::unique_ptr<Stream>> streams;  // never freed: handles are never reused
  std::vector<std::unique_ptr<Event>> events;
  uint64_t next_seq = 1;
};
Runtime& runtime();

Stream* resolve_stream(cudaStream_t handle, int device);  // null handle: the device's default stream
bool is_live_stream(cudaStream_t handle);
bool is_live_event(cudaEvent_t handle);

// Queues work on `s` (run at once under AXEMU_STREAMS=eager); returns the work's sequence number.
uint64_t enqueue(Stream* s, std::function<Fault()> run);
// Queues a wait for the event's latest record (nothing if it has none, or it already ran).
void enqueue_wait(Stream* s, Event* e);
// Queues an event record.
void enqueue_record(Stream* s, Event* e);
// Runs s's work up to and including `seq` (all of it when seq = UINT64_MAX), and what it waits for. Returns the
// sticky error of s's device (cudaSuccess when all of it ran cleanly).
cudaError_t complete_through(Stream* s, uint64_t seq);
cudaError_t complete_event(Event* e);
cudaError_t complete_device(int device);
cudaError_t sticky_error(int device);

}  // namespace axemu
