// Schemas of the texture-statistics ops (QCO 1-D / 2-D, TEM product, DTIEM).
//
// The public entry points live in sstkd_ops/texture/ops.py; these are the fused building
// blocks it composes. Kernels, one file per op family (cosine similarity; QCO and TEM
// product; DTIEM): csrc/texture/cpu/texture_{cos_sim,qco,dtiem}_cpu.cpp with helpers in
// csrc/texture/cpu/texture_stats_cpu.h, csrc/texture/cuda/texture_{cos_sim,qco,dtiem}_cuda.cu
// (DTIEM's backward in texture_dtiem_backward_cuda.cu, helpers of both directions in
// texture_dtiem_cuda.cuh) with helpers in csrc/texture/cuda/texture_stats_cuda.cuh.
// Shapes (G = groups: images, or image cells for QCO 2-D; P = pixels of a group):
//   texstat_cos_sim            x (B, C, H, W), cells S -> s (B, H, W), pixel norms (B, H, W),
//                              unit cell means (B, S*S, C), cell-mean norms (B, S*S)
//   texstat_qco                s (G, h, w) -> levels (G, L), sta (G, L) | (G, L, L),
//                              counts (same as sta), extrema (G, 2) int64 [argmin, argmax]
//   texstat_qco_tem            f (B, C, L), s (B, P), levels (B, L), delta (B,) -> (B, C, P)
//   texstat_dtiem              s (B, H, W), weights (B, H, W) or None -> Q (B, H, W),
//                              cooc (B, D, N, N), hist (B, N), levels (B, N), raw_hist (B, N)
//                              weights: DTIEM's importance weights (>= 0, no gradient) in the
//                              counts, h_n = sum w E_n / sum w, and in the co-occurrence (the
//                              first pixel of each pair); an image whose weights sum to 0 is
//                              counted unweighted; None: the unweighted kernels.
// Each *_backward op takes the incoming gradients first and returns the input gradients.
// Every op checks all its arguments before reading data (csrc/texture/texture_stats_checks.h, shared by
// the CPU and CUDA kernels): dtype (float32 / float64, one dtype per call; extrema int64), one
// device, ranks and shapes against each other, 1 <= levels <= kMaxLevels (4096,
// csrc/texture/texture_stats_math.h; MAX_LEVELS in Python), extrema inside their group. Empty batches
// (and C = 0) give empty or zero outputs; groups / images need at least one pixel.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(sstkd_ops, m) {
  m.def("texstat_cos_sim(Tensor x, int cells) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "texstat_cos_sim_backward(Tensor grad_s, Tensor x, Tensor s, Tensor pnorm, Tensor gunit, "
      "Tensor gnorm, int cells) -> Tensor");
  m.def("texstat_qco(Tensor s, int num_levels, bool cooc) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "texstat_qco_backward(Tensor grad_levels, Tensor grad_sta, Tensor s, Tensor levels, "
      "Tensor counts, Tensor extrema, bool cooc) -> Tensor");
  m.def("texstat_qco_tem(Tensor f, Tensor s, Tensor levels, Tensor delta) -> Tensor");
  m.def(
      "texstat_qco_tem_backward(Tensor grad_out, Tensor f, Tensor s, Tensor levels, "
      "Tensor delta) -> (Tensor, Tensor, Tensor)");
  m.def(
      "texstat_dtiem(Tensor s, int num_levels, int iters, float theta, int[] offsets, "
      "Tensor? weights=None) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "texstat_dtiem_backward(Tensor grad_q, Tensor grad_cooc, Tensor grad_hist, Tensor s, "
      "Tensor levels, Tensor raw_hist, float theta, int[] offsets, Tensor? weights=None) -> "
      "Tensor");
}
