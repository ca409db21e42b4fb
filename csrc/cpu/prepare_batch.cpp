// prepare_batch: the trainer's input op. uint8 NHWC images -> float NCHW crops,
//   out[i, c, y, x] = (img[i, sy, sx, c] - mean[c(, sy, sx)] + rgb_shift[i, c]) * scale[c],
//   sy = crop_y[i] + y,  sx = crop_x[i] + (flip[i] ? crop - 1 - x : x).
// The random crops and horizontal reflections are the paper's first augmentation (Section 4.1: 224x224 patches
// of the 256x256 images and their mirror images); the mean is the training set's mean image (Section 2), or a
// per-channel mean; rgb_shift is the PCA colour noise (Section 4.1), one RGB offset per image drawn by the caller.
// scale is one number per channel: the paper's nets use one for all three, torchvision's ImageNet models divide each
// channel by its own standard deviation (transforms.Normalize).
// The crop offsets were range-checked by the op layer.
#include "cpu/kernels.h"

namespace alexnet::cpu {

void prepare_batch(const BatchShape& s, const uint8_t* images, const float* mean, const int32_t* crop_y,
                   const int32_t* crop_x, const int32_t* flip, const float* rgb_shift, const ChannelScale& scale, float* out) {
  const int crop = s.crop;
  const int64_t plane = static_cast<int64_t>(crop) * crop;
  const int64_t mean_plane = static_cast<int64_t>(s.h_in) * s.w_in;
  // One output row (image i, row y) per iteration: all three channel rows are written from one input row.
#pragma omp parallel for collapse(2) schedule(static)
  for (int i = 0; i < s.n; ++i) {
    for (int y = 0; y < crop; ++y) {
      const int sy = crop_y[i] + y;
      const uint8_t* src_row = images + (static_cast<int64_t>(i) * s.h_in + sy) * s.w_in * 3;
      for (int c = 0; c < 3; ++c) {
        const float shift = rgb_shift[i * 3 + c];
        const float channel_scale = scale.c[c];
        const float* mean_row = s.per_pixel_mean ? mean + c * mean_plane + static_cast<int64_t>(sy) * s.w_in : nullptr;
        float* dst = out + (static_cast<int64_t>(i) * 3 + c) * plane + static_cast<int64_t>(y) * crop;
        for (int x = 0; x < crop; ++x) {
          const int sx = crop_x[i] + (flip[i] ? crop - 1 - x : x);
          const float m = s.per_pixel_mean ? mean_row[sx] : mean[c];
          dst[x] = (static_cast<float>(src_row[sx * 3 + c]) - m + shift) * channel_scale;
        }
      }
    }
  }
}

}  // namespace alexnet::cpu
