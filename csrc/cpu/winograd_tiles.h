// The Winograd minimal filtering variants conv2d_winograd.cpp runs: F(M x M, R x R) computes an M x M block of
// outputs of an R x R filter from an A x A input tile, A = M + R - 1, as
//   Y = A^T [ (G g G^T) .* (B^T d B) ] A                       (Lavin & Gray, CVPR 2016, eq. 8)
// The matrices come from Toom-Cook interpolation at A - 1 points plus infinity: AT[i][j] = p_j^i, G[j][k] =
// p_j^k / prod_{l != j} (p_j - p_l) (last row and column for infinity), and B^T solved so that the product is the
// exact correlation (tools/winograd_matrices.py derives them and measures their float32 error).
// The points are those that gave the least float32 error in that check (Barabasz et al., "Error analysis and
// improving the accuracy of Winograd convolution for deep neural networks", 2020, discuss the choice): relative
// errors 3.0e-7 for F(2,3) and 1.9e-6 for F(2,5), against 1e-5 allowed by the tests. F(4x4, 3x3) was tried for
// the 3x3 layers: 2.6e-6, and at 1 thread no faster on alexnet and 10% slower on alexnet-small (7x7 maps are 2x2
// of its 4x4 blocks, and its 6x6 transforms cost more), so it is not used.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

namespace alexnet::cpu::winograd {

// F(2x2, 3x3), points 0, 1, -1.
struct F2x3 {
  static constexpr int M = 2, R = 3, A = 4;
  struct BT {
    static constexpr double v[A][A] = {{-1, 0, 1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, -1, 0, 1}};
  };
  struct G {
    static constexpr double v[A][R] = {{-1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  };
  struct AT {
    static constexpr double v[M][A] = {{1, 1, 1, 0}, {0, 1, -1, 1}};
  };
};

// F(2x2, 5x5), points 0, 1, -1, 2, -1/2.
struct F2x5 {
  static constexpr int M = 2, R = 5, A = 6;
  struct BT {
    static constexpr double v[A][A] = {{1, 1.5, -2, -1.5, 1, 0},   {0, -1, -2.5, -0.5, 1, 0},
                                       {0, 1, 0.5, -2.5, 1, 0},    {0, -0.5, -1, 0.5, 1, 0},
                                       {0, 2, -1, -2, 1, 0},       {0, 1, 1.5, -2, -1.5, 1}};
  };
  struct G {
    static constexpr double v[A][R] = {{1, 0, 0, 0, 0},
                                       {-1.0 / 3, -1.0 / 3, -1.0 / 3, -1.0 / 3, -1.0 / 3},
                                       {1.0 / 3, -1.0 / 3, 1.0 / 3, -1.0 / 3, 1.0 / 3},
                                       {1.0 / 15, 2.0 / 15, 4.0 / 15, 8.0 / 15, 16.0 / 15},
                                       {-16.0 / 15, 8.0 / 15, -4.0 / 15, 2.0 / 15, -1.0 / 15},
                                       {0, 0, 0, 0, 1}};
  };
  struct AT {
    static constexpr double v[M][A] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -0.5, 1}};
  };
};

// f(integral_constant<int, 0>) ... f(integral_constant<int, N-1>): loops whose index must be a constant.
template <typename F, int... I>
inline void static_for_impl(F&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
template <int N, typename F>
inline void static_for(F&& f) {
  static_for_impl(f, std::make_integer_sequence<int, N>{});
}

// sum_j Mat::v[K][j] * x_j with the coefficients known at compile time (zeros skipped, +-1 as add and subtract,
// so each transform costs what a hand-written one would); operand(integral_constant<int, j>) returns x_j.
template <class Mat, int K, int J, class Operand>
inline void add_term(float& acc, Operand&& operand) {
  constexpr float c = static_cast<float>(Mat::v[K][J]);
  if constexpr (c == 1.0f) {
    acc += operand(std::integral_constant<int, J>{});
  } else if constexpr (c == -1.0f) {
    acc -= operand(std::integral_constant<int, J>{});
  } else if constexpr (c != 0.0f) {
    acc += c * operand(std::integral_constant<int, J>{});
  }
}
template <class Mat, int K, class Operand, int... J>
inline float dot_row_impl(Operand&& operand, std::integer_sequence<int, J...>) {
  float acc = 0.0f;
  (add_term<Mat, K, J>(acc, operand), ...);
  return acc;
}
template <class Mat, int K, class Operand>
inline float dot_row_of(Operand&& operand) {
  constexpr int cols = static_cast<int>(std::extent_v<decltype(Mat::v), 1>);
  return dot_row_impl<Mat, K>(operand, std::make_integer_sequence<int, cols>{});
}
// x_j = x[j * stride].
template <class Mat, int K>
inline float dot_row(const float* x, int64_t stride) {
  return dot_row_of<Mat, K>([x, stride](auto j) { return x[j * stride]; });
}

}  // namespace alexnet::cpu::winograd
