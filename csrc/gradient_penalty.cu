// Gradient-penalty kernels: the memory-bound passes of WGAN-GP / R1.
//
//   interpolate:   x_hat[b, i] = fake[b, i] + alpha[b] * (real[b, i] - fake[b, i])
//   norm_penalty:  n[b] = sqrt(sum_i x[b, i]^2),  p = weight * mean_b (n[b] - center)^2
//                  (one launch for small inputs, else partial sums + finalize)
//   norm_backward: y[b, i] = grad[b] * (slope + offset / n[b]) * x[b, i]   (0 where n[b] == 0)
//
// norm_backward is the gradient of sum_b grad[b] * f(n[b]) for any f with f'(n) = slope * n +
// offset: (0, 1) is the plain norm's backward, (2w/B, -2wc/B) the penalty's, so the penalty's
// scalar backward folds into the one pass over x.
//
// Tensors arrive as [B, ...] in any layout; samples that are blocks of memory (contiguous,
// channels_last) are read as [B, N] rows in memory order without a copy (launch::as_rows).
// Indexing is int64 throughout: one sample row, or the whole tensor, may exceed 2^31 elements.

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "launch_utils.cuh"

namespace ganfast {
namespace {

using namespace launch;

// Independent vector loads each thread keeps in flight (launch::for_each_vector).
constexpr int kUnroll = 4;
// The finalize program is one block: wide, so that large batches of tiny rows still finish
// in a few iterations.
constexpr int kFinalizeThreads = 1024;
// Up to this many elements (and rows this short, so that no warp loops long over one
// sample), one block reads the whole input for norm_penalty: there the launch, not the
// bytes, is the cost, and a second launch would double it.
constexpr int64_t kSmallInput = int64_t(1) << 16;
constexpr int64_t kSmallRow = int64_t(1) << 12;

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

// Block (c, b) writes sum(x[b, its part]^2) to partial[b, c]: the finalize kernel adds the
// partials in a fixed order, so the result does not depend on block scheduling.
template <typename scalar_t, typename acc_t, int VEC>
__global__ void sum_squares_kernel(const scalar_t* __restrict__ x, acc_t* __restrict__ partial,
                                   int64_t batch, int64_t row) {
  using Vec = AlignedVector<scalar_t, VEC>;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    acc_t acc[kUnroll] = {};  // one accumulator per load slot: no dependency between loads
    for_each_vector<kUnroll>(reinterpret_cast<const Vec*>(x + b * row), row / VEC,
                             [&](const Vec& v, int64_t, int u) {
#pragma unroll
                               for (int k = 0; k < VEC; ++k) {
                                 const acc_t e = static_cast<acc_t>(v.val[k]);
                                 acc[u] += e * e;
                               }
                             });
    acc_t sum = 0;
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) sum += acc[u];
    const acc_t block_sum = block_reduce_sum<kThreads>(sum);
    if (threadIdx.x == 0) partial[b * gridDim.x + blockIdx.x] = block_sum;
  }
}

// One block: norms from the [B, chunks] partial sums, then the penalty's [B]-sized tail
// (sqrt, minus center, square, mean, weight) that eager code spends five launches on.
// `lanes` threads (a power of two up to 32) add one sample's partials; every thread runs the
// same number of iterations so the shuffles see whole warps. Deviations add up in double.
template <typename acc_t>
__global__ void __launch_bounds__(kFinalizeThreads) norm_penalty_finalize_kernel(const acc_t* __restrict__ partial,
                                             acc_t* __restrict__ norms,
                                             acc_t* __restrict__ penalty, int64_t batch,
                                             int64_t chunks, int lanes, double weight,
                                             double center) {
  const int lane = threadIdx.x % lanes;
  const int groups = kFinalizeThreads / lanes;
  double squares = 0;
  for (int64_t first = 0; first < batch; first += groups) {
    const int64_t b = first + threadIdx.x / lanes;
    acc_t s = 0;
    if (b < batch) {
      for (int64_t c = lane; c < chunks; c += lanes) s += partial[b * chunks + c];
    }
    for (int offset = lanes / 2; offset > 0; offset >>= 1) {
      s += __shfl_down_sync(0xffffffff, s, offset, lanes);
    }
    if (lane == 0 && b < batch) {
      const acc_t n = sqrt(s);
      norms[b] = n;
      const double deviation = static_cast<double>(n) - center;
      squares += deviation * deviation;
    }
  }
  const double total = block_reduce_sum<kFinalizeThreads>(squares);
  if (threadIdx.x == 0) *penalty = static_cast<acc_t>(weight * total / static_cast<double>(batch));
}

// norm_penalty of a small input in one launch: warp w adds the squares of samples w, w + 32,
// ... (all lanes of a warp on one sample, so the shuffles see whole warps), then the tail.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kFinalizeThreads) norm_penalty_small_kernel(const scalar_t* __restrict__ x,
                                          acc_t* __restrict__ norms, acc_t* __restrict__ penalty,
                                          int64_t batch, int64_t row, double weight,
                                          double center) {
  constexpr int kWarps = kFinalizeThreads / 32;
  const int lane = threadIdx.x % 32;
  double squares = 0;
  for (int64_t b = threadIdx.x / 32; b < batch; b += kWarps) {
    acc_t s = 0;
    for (int64_t i = lane; i < row; i += 32) {
      const acc_t e = static_cast<acc_t>(x[b * row + i]);
      s += e * e;
    }
    for (int offset = 16; offset > 0; offset >>= 1) s += __shfl_down_sync(0xffffffff, s, offset);
    if (lane == 0) {
      const acc_t n = sqrt(s);
      norms[b] = n;
      const double deviation = static_cast<double>(n) - center;
      squares += deviation * deviation;
    }
  }
  const double total = block_reduce_sum<kFinalizeThreads>(squares);
  if (threadIdx.x == 0) *penalty = static_cast<acc_t>(weight * total / static_cast<double>(batch));
}

template <typename scalar_t, typename acc_t, int VEC>
__global__ void norm_backward_kernel(const acc_t* __restrict__ grad, int64_t grad_stride,
                                     const scalar_t* __restrict__ x,
                                     const acc_t* __restrict__ norm, scalar_t* __restrict__ out,
                                     int64_t batch, int64_t row, acc_t slope, acc_t offset) {
  using Vec = AlignedVector<scalar_t, VEC>;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    // d n/dx = x / n, taken as 0 at x = 0 (as torch does): a zero gradient gives a finite
    // penalty gradient instead of 0/0. A NaN norm is != 0 and propagates, as in torch.
    // grad may be a broadcast scalar (stride 0): the penalty's gradient.
    const acc_t n = norm[b];
    const acc_t c = n != acc_t(0) ? grad[b * grad_stride] * (slope + offset / n) : acc_t(0);
    auto* out_v = reinterpret_cast<Vec*>(out + b * row);
    for_each_vector<kUnroll>(reinterpret_cast<const Vec*>(x + b * row), row / VEC,
                             [&](const Vec& v, int64_t i, int) {
                               Vec y;
#pragma unroll
                               for (int k = 0; k < VEC; ++k) {
                                 y.val[k] = static_cast<scalar_t>(c * static_cast<acc_t>(v.val[k]));
                               }
                               out_v[i] = y;
                             });
  }
}

void check_input(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), "ganfast_C: ", name, " must be a CUDA tensor, got one on ", t.device());
  TORCH_CHECK(t.dim() >= 1, "ganfast_C: ", name, " must have a batch dimension [B, ...]");
}

void check_per_sample(const at::Tensor& v, const at::Tensor& x, const char* name) {
  TORCH_CHECK(v.device() == x.device() && v.dim() == 1 && v.size(0) == x.size(0),
              "ganfast_C: ", name, " must be a tensor of shape [", x.size(0), "] on ", x.device(),
              ", got ", v.sizes(), " on ", v.device());
  TORCH_CHECK(v.scalar_type() == at::toAccumulateType(x.scalar_type(), true), "ganfast_C: ",
              name, " must have the accumulation dtype of ", x.scalar_type(), ", got ",
              v.scalar_type());
}

at::Tensor interpolate(const at::Tensor& real_in, const at::Tensor& fake_in,
                       const at::Tensor& alpha_in) {
  check_input(real_in, "real");
  check_input(fake_in, "fake");
  TORCH_CHECK(real_in.sizes() == fake_in.sizes() && real_in.scalar_type() == fake_in.scalar_type() &&
                  real_in.device() == fake_in.device(),
              "ganfast_C: real and fake must match in shape, dtype and device");
  check_per_sample(alpha_in, real_in, "alpha");
  const c10::cuda::CUDAGuard guard(real_in.device());
  const auto real = as_rows(real_in);
  const auto fake = matching_layout(fake_in, real);
  const auto alpha = alpha_in.contiguous();
  auto out = at::empty_like(real);
  if (real.numel() == 0) return out;
  const int64_t batch = real.size(0), row = row_length(real);
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

std::tuple<at::Tensor, at::Tensor> norm_penalty(const at::Tensor& x_in, double weight,
                                                double center) {
  check_input(x_in, "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto x = as_rows(x_in);
  const int64_t batch = x.size(0), row = row_length(x);
  const auto acc_options = x.options().dtype(at::toAccumulateType(x.scalar_type(), true));
  auto norms = at::empty({batch}, acc_options);
  auto penalty = at::empty({}, acc_options);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "norm_penalty", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const auto stream = at::cuda::getCurrentCUDAStream();
    if (x.numel() <= kSmallInput && row <= kSmallRow) {
      norm_penalty_small_kernel<scalar_t, acc_t><<<1, kFinalizeThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), norms.data_ptr<acc_t>(), penalty.data_ptr<acc_t>(), batch, row,
          weight, center);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    at::Tensor partial;
    dispatch_vec_width<scalar_t>(row, {x.data_ptr()}, [&](auto vec) {
      constexpr int VEC = decltype(vec)::value;
      const dim3 grid = row_grid(batch, row / VEC);
      partial = at::empty({batch, static_cast<int64_t>(grid.x)}, acc_options);
      sum_squares_kernel<scalar_t, acc_t, VEC><<<grid, kThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), partial.data_ptr<acc_t>(), batch, row);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    const int64_t chunks = partial.size(1);
    int lanes = 1;
    while (lanes < 32 && lanes < chunks) lanes *= 2;
    norm_penalty_finalize_kernel<acc_t><<<1, kFinalizeThreads, 0, stream>>>(
        partial.data_ptr<acc_t>(), norms.data_ptr<acc_t>(), penalty.data_ptr<acc_t>(), batch,
        chunks, lanes, weight, center);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {norms, penalty};
}

at::Tensor norm_backward(const at::Tensor& grad, const at::Tensor& x_in, const at::Tensor& norm_in,
                         double slope, double offset) {
  check_input(x_in, "x");
  check_per_sample(grad, x_in, "grad");
  check_per_sample(norm_in, x_in, "norm");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const auto x = as_rows(x_in);
  const auto norm = norm_in.contiguous();
  auto out = at::empty_like(x);
  if (x.numel() == 0) return out;
  const int64_t batch = x.size(0), row = row_length(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "norm_backward", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const auto stream = at::cuda::getCurrentCUDAStream();
    dispatch_vec_width<scalar_t>(row, {x.data_ptr(), out.data_ptr()}, [&](auto vec) {
      constexpr int VEC = decltype(vec)::value;
      const dim3 grid = row_grid(batch, row / VEC);
      norm_backward_kernel<scalar_t, acc_t, VEC><<<grid, kThreads, 0, stream>>>(
          grad.data_ptr<acc_t>(), grad.stride(0), x.data_ptr<scalar_t>(), norm.data_ptr<acc_t>(),
          out.data_ptr<scalar_t>(), batch, row, static_cast<acc_t>(slope),
          static_cast<acc_t>(offset));
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ganfast_C, CUDA, m) {
  m.impl("interpolate", &interpolate);
  m.impl("norm_penalty", &norm_penalty);
  m.impl("norm_backward", &norm_backward);
}

}  // namespace ganfast
