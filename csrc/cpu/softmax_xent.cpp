// softmax_xent: STUB, to be replaced by the real kernels.
#include "cpu/kernels.h"

#include <stdexcept>

namespace alexnet::cpu {

void softmax_xent_forward(int n, int classes, const float* logits, const int32_t* labels, float* probs, float* loss) {
  throw std::runtime_error("softmax_xent_forward: not implemented on cpu yet");
}

void softmax_xent_backward(int n, int classes, const float* probs, const int32_t* labels, float* dlogits) {
  throw std::runtime_error("softmax_xent_backward: not implemented on cpu yet");
}

void topk_correct(int n, int classes, const float* scores, const int32_t* labels, int32_t* correct) {
  throw std::runtime_error("topk_correct: not implemented on cpu yet");
}

}  // namespace alexnet::cpu
