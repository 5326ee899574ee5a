// Argument checks of the compiled texture-statistics ops, shared by the C++ CPU and the CUDA
// kernels (schemas in csrc/texture/texture_stats.cpp). Each op checks every argument before it reads
// any data: dtype, device (every tensor on the device of the first one), rank, shapes against
// each other, the level-count limit kMaxLevels and sizes that a launch grid cannot hold.
// Messages name the op, the argument, what was expected and what was received.
//
// Host only; includes only ATen (see scripts/check_cuda_sources.sh).
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

#include "texture_stats_math.h"

namespace sstkd { namespace texture { namespace checks {

using ::sstkd::kMaxLevels;

// t: float32 / float64 tensor of rank ndim on device dev.
inline void check_float(const at::Tensor& t, const char* fn, const char* name, int64_t ndim,
                        const at::Device& dev) {
  TORCH_CHECK(t.defined(), fn, ": argument '", name, "' expected a tensor, got an undefined one");
  TORCH_CHECK(t.device() == dev, fn, ": argument '", name, "' expected a tensor on ", dev,
              " (the device of the first tensor argument), got ", t.device());
  TORCH_CHECK(t.dim() == ndim, fn, ": argument '", name, "' expected a ", ndim,
              "-D tensor, got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, fn,
              ": argument '", name, "' expected dtype float32 or float64, got ", t.scalar_type());
}

// t: like check_float, and of dtype dtype (the dtype of the first tensor argument).
inline void check_float_like(const at::Tensor& t, const char* fn, const char* name,
                             int64_t ndim, const at::Device& dev, at::ScalarType dtype) {
  check_float(t, fn, name, ndim, dev);
  TORCH_CHECK(t.scalar_type() == dtype, fn, ": argument '", name, "' expected dtype ", dtype,
              " (the dtype of the first tensor argument), got ", t.scalar_type());
}

inline void check_shape(const at::Tensor& t, const char* fn, const char* name,
                        at::IntArrayRef expected) {
  TORCH_CHECK(t.sizes() == expected, fn, ": argument '", name, "' expected shape ", expected,
              ", got ", t.sizes());
}

// The first tensor argument must live on a device this kernel runs on.
inline void check_kernel_device(const at::Tensor& t, const char* fn, const char* name,
                                bool cuda) {
  TORCH_CHECK(t.defined() && (cuda ? t.is_cuda() : t.device().is_cpu()), fn, ": argument '",
              name, "' expected a ", cuda ? "CUDA" : "CPU", " tensor, got ",
              t.defined() ? t.device().str() : std::string("an undefined tensor"));
}

inline void check_levels(int64_t L, const char* fn, const char* name) {
  TORCH_CHECK(L >= 1 && L <= kMaxLevels, fn, ": argument '", name, "' expected 1 <= ", name,
              " <= ", kMaxLevels, " (kMaxLevels), got ", L);
}

// Sizes of the per-pixel work: every element count must fit the int64 index arithmetic with
// room for the (G, K) accumulators, and the pixel count of one image must fit in int32 (the
// CUDA kernels split it across blocks with int32 block indices).
inline void check_pixels(int64_t P, const char* fn, const char* name) {
  TORCH_CHECK(P <= std::numeric_limits<int32_t>::max(), fn, ": argument '", name,
              "' expected at most 2^31 - 1 pixels per image, got ", P);
}

// Offsets as (dy, dx) pairs with |v| < 2^31 (so that H - |dy| cannot overflow).
inline void check_offsets(at::IntArrayRef offsets, const char* fn, size_t max_pairs) {
  TORCH_CHECK(offsets.size() % 2 == 0, fn, ": argument 'offsets' expected (dy, dx) pairs (an "
              "even count of ints), got ", offsets.size(), " ints");
  TORCH_CHECK(offsets.size() / 2 <= max_pairs, fn, ": argument 'offsets' expected at most ",
              max_pairs, " (dy, dx) pairs, got ", offsets.size() / 2);
  for (const int64_t v : offsets) {
    TORCH_CHECK(v > std::numeric_limits<int32_t>::min() && v < std::numeric_limits<int32_t>::max(),
                fn, ": argument 'offsets' expected values with |v| < 2^31, got ", offsets);
  }
}

inline void check_theta(double theta, const char* fn) {
  TORCH_CHECK(theta >= 0.0 && theta <= 1.0, fn, ": argument 'theta' expected a value in [0, 1], "
              "got ", theta);
}

// ------------------------------------------------------------- the ops' argument checks
// cuda: the kernel's device type (the first tensor argument must be there).

inline void cos_sim_args(const at::Tensor& x, int64_t cells, const char* fn, bool cuda) {
  check_kernel_device(x, fn, "x", cuda);
  check_float(x, fn, "x", 4, x.device());
  TORCH_CHECK(cells >= 1 && x.size(2) > 0 && x.size(3) > 0 && x.size(2) % cells == 0 &&
                  x.size(3) % cells == 0,
              fn, ": argument 'cells' expected a divisor >= 1 of H and W (H, W >= 1) of x, got "
              "cells=", cells, " and x of shape ", x.sizes());
  check_pixels(x.size(2) * x.size(3), fn, "x");
}

inline void cos_sim_backward_args(const at::Tensor& grad_s, const at::Tensor& x,
                                  const at::Tensor& s, const at::Tensor& pnorm,
                                  const at::Tensor& gunit, const at::Tensor& gnorm,
                                  int64_t cells, const char* fn, bool cuda) {
  check_kernel_device(grad_s, fn, "grad_s", cuda);
  const at::Device dev = grad_s.device();
  check_float(x, fn, "x", 4, dev);
  cos_sim_args(x, cells, fn, cuda);
  const at::ScalarType dt = x.scalar_type();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), G = cells * cells;
  check_float_like(grad_s, fn, "grad_s", 3, dev, dt);
  check_float_like(s, fn, "s", 3, dev, dt);
  check_float_like(pnorm, fn, "pnorm", 3, dev, dt);
  check_float_like(gunit, fn, "gunit", 3, dev, dt);
  check_float_like(gnorm, fn, "gnorm", 2, dev, dt);
  check_shape(grad_s, fn, "grad_s", {B, H, W});
  check_shape(s, fn, "s", {B, H, W});
  check_shape(pnorm, fn, "pnorm", {B, H, W});
  check_shape(gunit, fn, "gunit", {B, G, C});
  check_shape(gnorm, fn, "gnorm", {B, G});
}

inline void qco_args(const at::Tensor& s, int64_t L, const char* fn, bool cuda) {
  check_kernel_device(s, fn, "s", cuda);
  check_float(s, fn, "s", 3, s.device());
  check_levels(L, fn, "num_levels");
  TORCH_CHECK(s.size(1) > 0 && s.size(2) > 0, fn, ": argument 's' expected groups of at least "
              "one pixel (h, w >= 1), got shape ", s.sizes());
  check_pixels(s.size(1) * s.size(2), fn, "s");
}

inline void qco_backward_args(const at::Tensor& grad_levels, const at::Tensor& grad_sta,
                              const at::Tensor& s, const at::Tensor& levels,
                              const at::Tensor& counts, const at::Tensor& extrema, bool cooc,
                              const char* fn, bool cuda) {
  check_kernel_device(grad_levels, fn, "grad_levels", cuda);
  const at::Device dev = grad_levels.device();
  check_float(s, fn, "s", 3, dev);
  const at::ScalarType dt = s.scalar_type();
  check_float_like(levels, fn, "levels", 2, dev, dt);
  const int64_t G = s.size(0), L = levels.size(1);
  TORCH_CHECK(s.size(1) > 0 && s.size(2) > 0, fn, ": argument 's' expected groups of at least "
              "one pixel (h, w >= 1), got shape ", s.sizes());
  check_pixels(s.size(1) * s.size(2), fn, "s");
  check_levels(L, fn, "levels.size(1)");
  check_shape(levels, fn, "levels", {G, L});
  check_float_like(grad_levels, fn, "grad_levels", 2, dev, dt);
  check_shape(grad_levels, fn, "grad_levels", {G, L});
  const std::vector<int64_t> k_shape = cooc ? std::vector<int64_t>{G, L, L}
                                            : std::vector<int64_t>{G, L};
  check_float_like(grad_sta, fn, "grad_sta", cooc ? 3 : 2, dev, dt);
  check_shape(grad_sta, fn, "grad_sta", k_shape);
  check_float_like(counts, fn, "counts", cooc ? 3 : 2, dev, dt);
  check_shape(counts, fn, "counts", k_shape);
  TORCH_CHECK(extrema.defined() && extrema.device() == dev, fn, ": argument 'extrema' expected "
              "a tensor on ", dev, ", got ", extrema.defined() ? extrema.device().str() : "none");
  TORCH_CHECK(extrema.scalar_type() == at::kLong, fn, ": argument 'extrema' expected dtype "
              "int64, got ", extrema.scalar_type());
  check_shape(extrema, fn, "extrema", {G, 2});
}

inline void qco_tem_args(const at::Tensor* grad_out, const at::Tensor& f, const at::Tensor& s,
                         const at::Tensor& levels, const at::Tensor& delta, const char* fn,
                         bool cuda) {
  const at::Tensor& first = grad_out != nullptr ? *grad_out : f;
  check_kernel_device(first, fn, grad_out != nullptr ? "grad_out" : "f", cuda);
  const at::Device dev = first.device();
  check_float(f, fn, "f", 3, dev);
  const at::ScalarType dt = f.scalar_type();
  const int64_t B = f.size(0), C = f.size(1), L = f.size(2);
  check_levels(L, fn, "f.size(2)");
  check_float_like(s, fn, "s", 2, dev, dt);
  const int64_t P = s.size(1);
  check_pixels(P, fn, "s");
  check_shape(s, fn, "s", {B, P});
  check_float_like(levels, fn, "levels", 2, dev, dt);
  check_shape(levels, fn, "levels", {B, L});
  check_float_like(delta, fn, "delta", 1, dev, dt);
  check_shape(delta, fn, "delta", {B});
  if (grad_out != nullptr) {
    check_float_like(*grad_out, fn, "grad_out", 3, dev, dt);
    check_shape(*grad_out, fn, "grad_out", {B, C, P});
  }
}

// DTIEM's optional importance weights: like s (dtype, device, shape (B, H, W)). Their values
// (>= 0, finite) are checked by the CPU kernel, which reads them on the host anyway.
inline void check_dtiem_weights(const std::optional<at::Tensor>& weights, const at::Tensor& s,
                                const char* fn) {
  if (!weights.has_value()) return;
  check_float_like(*weights, fn, "weights", 3, s.device(), s.scalar_type());
  check_shape(*weights, fn, "weights", s.sizes());
}

inline void dtiem_args(const at::Tensor& s, int64_t N, int64_t iters, double theta,
                       at::IntArrayRef offsets, const std::optional<at::Tensor>& weights,
                       size_t max_pairs, const char* fn, bool cuda) {
  check_kernel_device(s, fn, "s", cuda);
  check_float(s, fn, "s", 3, s.device());
  check_levels(N, fn, "num_levels");
  TORCH_CHECK(iters >= 0, fn, ": argument 'iters' expected an int >= 0, got ", iters);
  check_theta(theta, fn);
  check_offsets(offsets, fn, max_pairs);
  TORCH_CHECK(s.size(1) > 0 && s.size(2) > 0, fn, ": argument 's' expected images of at least "
              "one pixel (H, W >= 1), got shape ", s.sizes());
  check_pixels(s.size(1) * s.size(2), fn, "s");
  check_dtiem_weights(weights, s, fn);
}

inline void dtiem_backward_args(const at::Tensor& grad_q, const at::Tensor& grad_cooc,
                                const at::Tensor& grad_hist, const at::Tensor& s,
                                const at::Tensor& levels, const at::Tensor& raw, double theta,
                                at::IntArrayRef offsets, const std::optional<at::Tensor>& weights,
                                size_t max_pairs, const char* fn, bool cuda) {
  check_kernel_device(grad_q, fn, "grad_q", cuda);
  const at::Device dev = grad_q.device();
  check_float(s, fn, "s", 3, dev);
  const at::ScalarType dt = s.scalar_type();
  check_float_like(levels, fn, "levels", 2, dev, dt);
  const int64_t B = s.size(0), H = s.size(1), W = s.size(2), N = levels.size(1);
  const int64_t D = static_cast<int64_t>(offsets.size()) / 2;
  check_levels(N, fn, "levels.size(1)");
  check_theta(theta, fn);
  check_offsets(offsets, fn, max_pairs);
  TORCH_CHECK(H > 0 && W > 0, fn, ": argument 's' expected images of at least one pixel "
              "(H, W >= 1), got shape ", s.sizes());
  check_pixels(H * W, fn, "s");
  check_shape(levels, fn, "levels", {B, N});
  check_float_like(raw, fn, "raw_hist", 2, dev, dt);
  check_shape(raw, fn, "raw_hist", {B, N});
  check_float_like(grad_q, fn, "grad_q", 3, dev, dt);
  check_shape(grad_q, fn, "grad_q", {B, H, W});
  check_float_like(grad_cooc, fn, "grad_cooc", 4, dev, dt);
  check_shape(grad_cooc, fn, "grad_cooc", {B, D, N, N});
  check_float_like(grad_hist, fn, "grad_hist", 2, dev, dt);
  check_shape(grad_hist, fn, "grad_hist", {B, N});
  check_dtiem_weights(weights, s, fn);
}

}  // namespace checks
}  // namespace texture
}  // namespace sstkd
