// Gradient-penalty kernels: the three memory-bound passes of WGAN-GP / R1.
//
//   interpolate:            x_hat[b, i] = fake[b, i] + alpha[b] * (real[b, i] - fake[b, i])
//   sum_squares_per_sample: s[b]        = sum_i g[b, i]^2            (fp32 or fp64 accumulation)
//   norm_backward:          y[b, i]     = gn[b] / norm[b] * g[b, i]   (0 where norm[b] == 0)
//
// Every tensor arrives as a contiguous [B, N] view in memory order (ganfast/ops prepares it,
// so channels_last needs no copy: the per-sample norm does not care about element order).
// Indexing is int64 throughout: one sample row, or the whole tensor, may exceed 2^31 elements.

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "launch_utils.cuh"

namespace ganfast {
namespace {

using namespace launch;

template <typename scalar_t, typename acc_t, int VEC>
__global__ void interpolate_kernel(const scalar_t* __restrict__ real,
                                   const scalar_t* __restrict__ fake,
                                   const acc_t* __restrict__ alpha,
                                   scalar_t* __restrict__ out, int64_t batch, int64_t row) {
  const int64_t vec_row = row / VEC;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const acc_t a = alpha[b];
    const int64_t base = b * row;
    const auto* real_v = reinterpret_cast<const AlignedVector<scalar_t, VEC>*>(real + base);
    const auto* fake_v = reinterpret_cast<const AlignedVector<scalar_t, VEC>*>(fake + base);
    auto* out_v = reinterpret_cast<AlignedVector<scalar_t, VEC>*>(out + base);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < vec_row;
         i += (int64_t)gridDim.x * blockDim.x) {
      const auto r = real_v[i];
      const auto f = fake_v[i];
      AlignedVector<scalar_t, VEC> y;
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const acc_t fk = static_cast<acc_t>(f.val[k]);
        y.val[k] = static_cast<scalar_t>(fk + a * (static_cast<acc_t>(r.val[k]) - fk));
      }
      out_v[i] = y;
    }
  }
}

template <typename scalar_t, typename acc_t, int VEC>
__global__ void sum_squares_kernel(const scalar_t* __restrict__ x, acc_t* __restrict__ sums,
                                   int64_t batch, int64_t row) {
  const int64_t vec_row = row / VEC;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const auto* x_v = reinterpret_cast<const AlignedVector<scalar_t, VEC>*>(x + b * row);
    acc_t partial = 0;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < vec_row;
         i += (int64_t)gridDim.x * blockDim.x) {
      const auto v = x_v[i];
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const acc_t e = static_cast<acc_t>(v.val[k]);
        partial += e * e;
      }
    }
    // One atomic per block per sample: blocks of a row run in parallel; the sum order
    // across blocks is not fixed, so results may differ in the last bits between runs.
    const acc_t block_sum = block_reduce_sum(partial);
    if (threadIdx.x == 0) atomicAdd(sums + b, block_sum);
  }
}

template <typename scalar_t, typename acc_t, int VEC>
__global__ void norm_backward_kernel(const scalar_t* __restrict__ x,
                                     const acc_t* __restrict__ grad_norm,
                                     const acc_t* __restrict__ norm, scalar_t* __restrict__ out,
                                     int64_t batch, int64_t row) {
  const int64_t vec_row = row / VEC;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    // d||x||/dx = x / ||x||, taken as 0 at x = 0 (as torch does): a zero gradient gives a
    // finite penalty gradient instead of 0/0.
    // (A NaN norm is != 0 and propagates, as in torch.)
    const acc_t c = norm[b] != acc_t(0) ? grad_norm[b] / norm[b] : acc_t(0);
    const int64_t base = b * row;
    const auto* x_v = reinterpret_cast<const AlignedVector<scalar_t, VEC>*>(x + base);
    auto* out_v = reinterpret_cast<AlignedVector<scalar_t, VEC>*>(out + base);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < vec_row;
         i += (int64_t)gridDim.x * blockDim.x) {
      const auto v = x_v[i];
      AlignedVector<scalar_t, VEC> y;
#pragma unroll
      for (int k = 0; k < VEC; ++k) y.val[k] = static_cast<scalar_t>(c * static_cast<acc_t>(v.val[k]));
      out_v[i] = y;
    }
  }
}

void check_rows(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), "ganfast_C: ", name, " must be a CUDA tensor");
  TORCH_CHECK(t.dim() == 2 && t.is_contiguous(), "ganfast_C: ", name,
              " must be a contiguous [B, N] view, got sizes ", t.sizes());
}

void check_per_sample(const at::Tensor& v, const at::Tensor& rows, const char* name) {
  TORCH_CHECK(v.device() == rows.device() && v.dim() == 1 && v.size(0) == rows.size(0) &&
                  v.is_contiguous(),
              "ganfast_C: ", name, " must be a contiguous tensor of shape [", rows.size(0),
              "] on ", rows.device(), ", got ", v.sizes(), " on ", v.device());
  TORCH_CHECK(v.scalar_type() == at::toAccumulateType(rows.scalar_type(), true), "ganfast_C: ",
              name, " must have the accumulation dtype of the rows");
}

at::Tensor interpolate(const at::Tensor& real, const at::Tensor& fake, const at::Tensor& alpha) {
  check_rows(real, "real");
  check_rows(fake, "fake");
  TORCH_CHECK(real.sizes() == fake.sizes() && real.scalar_type() == fake.scalar_type() &&
                  real.device() == fake.device(),
              "ganfast_C: real and fake must match in shape, dtype and device");
  check_per_sample(alpha, real, "alpha");
  const c10::cuda::CUDAGuard guard(real.device());
  auto out = at::empty_like(real);
  if (real.numel() == 0) return out;
  const int64_t batch = real.size(0), row = real.size(1);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, real.scalar_type(), "interpolate", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const auto stream = at::cuda::getCurrentCUDAStream();
    dispatch_vec_width<scalar_t>(row, {real.data_ptr(), fake.data_ptr(), out.data_ptr()}, [&](auto vec) {
      constexpr int VEC = decltype(vec)::value;
      const dim3 grid = row_grid(batch, row / VEC);
      interpolate_kernel<scalar_t, acc_t, VEC><<<grid, kThreads, 0, stream>>>(
          real.data_ptr<scalar_t>(), fake.data_ptr<scalar_t>(), alpha.data_ptr<acc_t>(),
          out.data_ptr<scalar_t>(), batch, row);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor sum_squares_per_sample(const at::Tensor& x) {
  check_rows(x, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t batch = x.size(0), row = x.size(1);
  auto sums = at::zeros({batch}, x.options().dtype(at::toAccumulateType(x.scalar_type(), true)));
  if (x.numel() == 0) return sums;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sum_squares", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const auto stream = at::cuda::getCurrentCUDAStream();
    dispatch_vec_width<scalar_t>(row, {x.data_ptr()}, [&](auto vec) {
      constexpr int VEC = decltype(vec)::value;
      const dim3 grid = row_grid(batch, row / VEC);
      sum_squares_kernel<scalar_t, acc_t, VEC><<<grid, kThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), sums.data_ptr<acc_t>(), batch, row);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return sums;
}

at::Tensor norm_backward(const at::Tensor& grad_norm, const at::Tensor& x, const at::Tensor& norm) {
  check_rows(x, "x");
  check_per_sample(grad_norm, x, "grad_norm");
  check_per_sample(norm, x, "norm");
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = at::empty_like(x);
  if (x.numel() == 0) return out;
  const int64_t batch = x.size(0), row = x.size(1);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "norm_backward", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const auto stream = at::cuda::getCurrentCUDAStream();
    dispatch_vec_width<scalar_t>(row, {x.data_ptr(), out.data_ptr()}, [&](auto vec) {
      constexpr int VEC = decltype(vec)::value;
      const dim3 grid = row_grid(batch, row / VEC);
      norm_backward_kernel<scalar_t, acc_t, VEC><<<grid, kThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), grad_norm.data_ptr<acc_t>(), norm.data_ptr<acc_t>(),
          out.data_ptr<scalar_t>(), batch, row);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ganfast_C, CUDA, m) {
  m.impl("interpolate", &interpolate);
  m.impl("sum_squares_per_sample", &sum_squares_per_sample);
  m.impl("norm_backward", &norm_backward);
}

}  // namespace ganfast
