// softmax cross-entropy, the training objective (paper Section 2: "maximizes the multinomial logistic regression
// objective"), averaged over the batch; its gradient; and the top-1/top-5 counts the paper reports (Section 6).
//
// Numerically stable: each row is shifted by its maximum before exponentiating, so exp never overflows and the
// largest term is exp(0) = 1 (the sum is >= 1, its log is safe). The loss of row i is
//   log(sum_j exp(z_ij - m_i)) - (z_i,label - m_i),
// computed from the shifted logits directly rather than as -log(prob), which would be -log(0) = inf for a label
// whose probability underflows.
#include <cmath>
#include <vector>

#include "cpu/kernels.h"

namespace alexnet::cpu {

void softmax_xent_forward(int n, int classes, const float* logits, const int32_t* labels, float* probs, float* loss) {
  std::vector<double> row_loss(static_cast<size_t>(n));
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const float* z = logits + static_cast<int64_t>(i) * classes;
    float* prob = probs + static_cast<int64_t>(i) * classes;
    float row_max = z[0];
    for (int j = 1; j < classes; ++j) row_max = std::fmax(row_max, z[j]);
    double sum = 0.0;
    for (int j = 0; j < classes; ++j) {
      const float e = std::exp(z[j] - row_max);
      prob[j] = e;
      sum += e;
    }
    const float inv_sum = static_cast<float>(1.0 / sum);
    for (int j = 0; j < classes; ++j) prob[j] *= inv_sum;
    row_loss[i] = std::log(sum) - static_cast<double>(z[labels[i]] - row_max);
  }
  // The mean in one fixed order, so the loss does not depend on the thread count.
  double total = 0.0;
  for (int i = 0; i < n; ++i) total += row_loss[i];
  *loss = static_cast<float>(total / n);
}

void softmax_xent_backward(int n, int classes, const float* probs, const int32_t* labels, float* dlogits) {
  const float inv_n = 1.0f / static_cast<float>(n);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    const int64_t row = static_cast<int64_t>(i) * classes;
    for (int j = 0; j < classes; ++j) {
      const float target = j == labels[i] ? 1.0f : 0.0f;
      dlogits[row + j] = (probs[row + j] - target) * inv_n;
    }
  }
}

void topk_correct(int n, int classes, const float* scores, const int32_t* labels, int32_t* correct) {
  int32_t top1 = 0, top5 = 0;
#pragma omp parallel for schedule(static) reduction(+ : top1, top5)
  for (int i = 0; i < n; ++i) {
    const float* s = scores + static_cast<int64_t>(i) * classes;
    const int label = labels[i];
    const float label_score = s[label];
    // The label's rank is the number of other classes that score at least as high: a tie goes against the label,
    // so constant outputs are never "correct", and !(s[j] < label_score) also counts a NaN score as outranking it.
    // A NaN label score is never correct (comparisons with NaN are false, so the rank alone would not say so).
    int higher = 0;
    for (int j = 0; j < classes; ++j) higher += j != label && !(s[j] < label_score) ? 1 : 0;
    const bool scored = !std::isnan(label_score);
    top1 += scored && higher < 1 ? 1 : 0;
    top5 += scored && higher < 5 ? 1 : 0;
  }
  correct[0] = top1;
  correct[1] = top5;
}

}  // namespace alexnet::cpu
