// Work sharing and scratch for the CPU convolutions (conv2d.cpp lowers to im2col products, conv2d_winograd.cpp to
// Winograd products). Both cut a layer into independent (chunk of images, group) items.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace alexnet::cpu::conv_items {

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Threads a layer may use: one when called from inside a parallel region (no nested teams).
inline int max_threads() { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

// Grow-only scratch; declared thread_local by its users, so each thread keeps its own between calls.
struct Scratch {
  std::vector<float> data;
  float* get(size_t count) {
    if (data.size() < count) data.resize(count);
    return data.data();
  }
};

// Share whole items among threads when that balances: at least one per thread, and either an exact multiple or
// enough that the remainder hardly matters. Otherwise thread inside each item's GEMMs.
inline bool share_items(int64_t items, int threads) {
  return threads > 1 && items >= threads && (items % threads == 0 || items >= 4 * threads);
}

// Runs run_item(item, parallel) over the items: shared among threads, or in order with threaded GEMMs.
template <typename F>
void for_each_item(int64_t items, int threads, F run_item) {
  if (share_items(items, threads)) {
#pragma omp parallel for schedule(static)
    for (int64_t item = 0; item < items; ++item) run_item(item, false);
  } else {
    for (int64_t item = 0; item < items; ++item) run_item(item, true);
  }
}

// The weight gradients' sum over items, shared among threads without atomics: thread t runs accumulate(item,
// partial) for the contiguous items [t*items/T, (t+1)*items/T) into its own zeroed partial of `size` floats,
// partials[t * size ...]. Returns the team size T; the caller adds the partials in thread order, so the same thread
// count gives bit-identical results and no two threads write one address.
template <typename F>
int accumulate_per_thread(int64_t items, int threads, int64_t size, std::vector<float>& partials, F accumulate) {
  partials.assign(static_cast<size_t>(threads) * size, 0.0f);
  int used = threads;
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
#pragma omp single
    used = team;
    const int64_t begin = t * items / team, end = (t + 1) * items / team;
    for (int64_t item = begin; item < end; ++item) accumulate(item, partials.data() + t * size);
  }
  return used;
}

// Consecutive images [begin, begin + count) of chunk `chunk` when n images are cut into `chunks` chunks.
struct ImageRange {
  int64_t begin, count;
};
inline ImageRange chunk_images(int64_t n, int64_t chunks, int64_t chunk) {
  const int64_t begin = chunk * n / chunks;
  return {begin, (chunk + 1) * n / chunks - begin};
}

// How many chunks: images_per_chunk at most, never more than n / threads images in one (so every thread gets a
// chunk), and with several threads a whole number of chunks per thread.
inline int64_t chunk_count(int64_t n, int64_t images_per_chunk, int threads) {
  if (n == 0) return 0;
  int64_t per = std::max<int64_t>(1, std::min<int64_t>(images_per_chunk, n / threads));
  int64_t count = ceil_div(n, per);
  if (threads > 1) count = std::min<int64_t>(n, ceil_div(count, threads) * threads);
  return count;
}

}  // namespace alexnet::cpu::conv_items
