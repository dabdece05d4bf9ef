// Spectral-normalization kernels: every layer of a group in one launch, one block per layer.
// The CUDA twin of kernels/spectral_norm.py (same tables, same math; read its docstring):
//
//   forward:  n_iter steps of u = normalize(W v), v = normalize(W^T u) (u, v written back to the
//             layer's buffers), sigma = |W^T u|^2 / max(|W^T u|, eps) after an update, or
//             u . W v by a pass when n_iter = 0 (eval); y = W / sigma into one flat buffer.
//   backward: gW = (G - <G, y> u v^T) / sigma.
//
// W_mat[r, c] (PyTorch's [D, C] view, `dim` first) of a contiguous weight lies at
// r * K + (c / K) * (D * K) + c % K (K: product of the sizes after `dim`). The weights, u and v
// are reached through tables of addresses (int64 on the device, cached by the caller) because
// their number varies; u, v and sigma are kept in the accumulation type (float; double for
// double weights) in the work buffer, which the backward reads.

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <initializer_list>
#include <torch/library.h>

#include "launch_utils.cuh"

namespace ganfast {
namespace {

using launch::block_reduce_sum;

// One block per layer: the layers of a discriminator are a few hundred thousand elements each,
// and one block streams that in microseconds; more blocks per layer would need a grid-wide
// barrier between the passes.
constexpr int kSnThreads = 512;
constexpr int kMetaColumns = 6;  // D, C, K, offset of y, offset of u (then v) in work, n_iter

struct LayerMeta {
  int64_t D, C, K, out_offset, work_offset, n_iter;
};

__device__ __forceinline__ LayerMeta layer_meta(const int64_t* __restrict__ meta, int64_t layer) {
  const int64_t* row = meta + layer * kMetaColumns;
  return {row[0], row[1], row[2], row[3], row[4], row[5]};
}

__device__ __forceinline__ int64_t matrix_index(int64_t r, int64_t c, const LayerMeta& m) {
  return r * m.K + (c / m.K) * (m.D * m.K) + c % m.K;
}

// The block's sum of v, in every thread.
template <typename acc_t>
__device__ __forceinline__ acc_t block_sum(acc_t v) {
  __shared__ acc_t total;
  v = block_reduce_sum<kSnThreads>(v);
  if (threadIdx.x == 0) total = v;
  __syncthreads();
  const acc_t result = total;
  __syncthreads();  // `total` is reused by the next call
  return result;
}

// y = W_mat x: one warp per row, lanes along the row (contiguous for dim 0). Stores y when
// `store`; returns (|y|^2, y . y_before) in every thread.
template <typename scalar_t, typename acc_t>
__device__ void matvec_rows(const scalar_t* __restrict__ weight, const acc_t* x, acc_t* y,
                            const LayerMeta& m, bool store, acc_t* sum_sq, acc_t* dot) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  acc_t local_sq = 0, local_dot = 0;
  for (int64_t r = warp; r < m.D; r += kSnThreads / 32) {
    acc_t s = 0;
    for (int64_t c = lane; c < m.C; c += 32) {
      s += static_cast<acc_t>(weight[matrix_index(r, c, m)]) * x[c];
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) s += __shfl_xor_sync(0xffffffff, s, offset);
    if (lane == 0) {
      local_sq += s * s;
      local_dot += s * y[r];
      if (store) y[r] = s;
    }
  }
  __syncthreads();  // every y[r] is written before any thread reads y
  *sum_sq = block_sum(local_sq);
  *dot = block_sum(local_dot);
}

// y = W_mat^T x: one thread per column, so that neighbouring threads read neighbouring
// addresses of each row. Stores y; returns |y|^2 in every thread.
template <typename scalar_t, typename acc_t>
__device__ acc_t matvec_columns(const scalar_t* __restrict__ weight, const acc_t* x, acc_t* y,
                                const LayerMeta& m) {
  acc_t local_sq = 0;
  for (int64_t c = threadIdx.x; c < m.C; c += kSnThreads) {
    acc_t s = 0;
    for (int64_t r = 0; r < m.D; ++r) s += static_cast<acc_t>(weight[matrix_index(r, c, m)]) * x[r];
    y[c] = s;
    local_sq += s * s;
  }
  __syncthreads();
  return block_sum(local_sq);
}

// work[:n] /= max(sqrt(sum_sq), eps), also written to the layer's buffer; returns the norm.
template <typename scalar_t, typename acc_t>
__device__ acc_t normalize_(acc_t* work, scalar_t* buffer, int64_t n, acc_t sum_sq, acc_t eps) {
  const acc_t norm = max(sqrt(sum_sq), eps);
  for (int64_t i = threadIdx.x; i < n; i += kSnThreads) {
    const acc_t x = work[i] / norm;
    work[i] = x;
    buffer[i] = static_cast<scalar_t>(x);
  }
  __syncthreads();
  return norm;
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kSnThreads)
normalize_group_kernel(const int64_t* __restrict__ weight_table, const int64_t* __restrict__ u_table,
                       const int64_t* __restrict__ v_table, const int64_t* __restrict__ meta,
                       scalar_t* __restrict__ out, acc_t* __restrict__ work,
                       acc_t* __restrict__ sigma_out, acc_t eps) {
  const int64_t layer = blockIdx.x;
  const LayerMeta m = layer_meta(meta, layer);
  const auto* weight = reinterpret_cast<const scalar_t*>(weight_table[layer]);
  auto* u_buffer = reinterpret_cast<scalar_t*>(u_table[layer]);
  auto* v_buffer = reinterpret_cast<scalar_t*>(v_table[layer]);
  acc_t* u = work + m.work_offset;
  acc_t* v = u + m.D;
  for (int64_t i = threadIdx.x; i < m.D; i += kSnThreads) u[i] = static_cast<acc_t>(u_buffer[i]);
  for (int64_t i = threadIdx.x; i < m.C; i += kSnThreads) v[i] = static_cast<acc_t>(v_buffer[i]);
  __syncthreads();

  acc_t sigma = 0, sum_sq, dot;
  for (int64_t step = 0; step < m.n_iter; ++step) {
    matvec_rows(weight, v, u, m, true, &sum_sq, &dot);
    normalize_(u, u_buffer, m.D, sum_sq, eps);                      // u = normalize(W v)
    sum_sq = matvec_columns(weight, u, v, m);
    sigma = sum_sq / normalize_(v, v_buffer, m.C, sum_sq, eps);     // v = normalize(W^T u)
  }
  if (m.n_iter == 0) {  // eval: sigma = u . W v by a pass
    matvec_rows(weight, v, u, m, false, &sum_sq, &dot);
    sigma = dot;
  }
  if (threadIdx.x == 0) sigma_out[layer] = sigma;

  const int64_t n = m.D * m.C;  // y = W / sigma, in the weight's (contiguous) order
  scalar_t* y = out + m.out_offset;
  for (int64_t f = threadIdx.x; f < n; f += kSnThreads) {
    y[f] = static_cast<scalar_t>(static_cast<acc_t>(weight[f]) / sigma);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kSnThreads)
normalize_group_backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ out,
                                const acc_t* __restrict__ work, const acc_t* __restrict__ sigmas,
                                const int64_t* __restrict__ meta, scalar_t* __restrict__ grad_weight) {
  const int64_t layer = blockIdx.x;
  const LayerMeta m = layer_meta(meta, layer);
  const acc_t* u = work + m.work_offset;
  const acc_t* v = u + m.D;
  const acc_t sigma = sigmas[layer];
  const int64_t n = m.D * m.C;
  const scalar_t* g = grad + m.out_offset;
  const scalar_t* y = out + m.out_offset;
  acc_t local = 0;
  for (int64_t f = threadIdx.x; f < n; f += kSnThreads) {
    local += static_cast<acc_t>(g[f]) * static_cast<acc_t>(y[f]);
  }
  const acc_t dot = block_sum(local);  // <G, y>
  scalar_t* gw = grad_weight + m.out_offset;
  for (int64_t f = threadIdx.x; f < n; f += kSnThreads) {
    const int64_t r = (f / m.K) % m.D;
    const int64_t c = (f / (m.D * m.K)) * m.K + f % m.K;
    gw[f] = static_cast<scalar_t>((static_cast<acc_t>(g[f]) - dot * u[r] * v[c]) / sigma);
  }
}

// The kernels read every buffer and table from out's device: one left on another GPU (a plan
// made before model.to("cuda:1")) would be read through the wrong address space.
void check_same_device(const at::Tensor& out, std::initializer_list<const at::Tensor*> others) {
  for (const auto* t : others) {
    TORCH_CHECK(t->device() == out.device(), "spectral_norm_group: every tensor must be on ",
                out.device(), " (out's device); got one on ", t->device());
  }
}

void check_tables(const at::Tensor& meta, const at::Tensor& out, const at::Tensor& work,
                  const at::Tensor& sigma) {
  TORCH_CHECK(meta.is_cuda() && meta.scalar_type() == at::kLong && meta.is_contiguous() &&
                  meta.dim() == 2 && meta.size(1) == kMetaColumns,
              "spectral_norm_group: meta must be a contiguous int64 CUDA tensor [layers, ",
              kMetaColumns, "], got ", meta.sizes(), " ", meta.scalar_type());
  TORCH_CHECK(out.is_cuda() && out.is_contiguous(), "spectral_norm_group: out must be a contiguous CUDA tensor");
  const auto acc = out.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(work.scalar_type() == acc && work.is_contiguous(),
              "spectral_norm_group: work must be contiguous ", acc, ", got ", work.scalar_type());
  TORCH_CHECK(sigma.scalar_type() == acc && sigma.is_contiguous() && sigma.numel() == meta.size(0),
              "spectral_norm_group: sigma must be a contiguous ", acc, " tensor of ", meta.size(0),
              " entries (one per layer)");
  check_same_device(out, {&meta, &work, &sigma});
}

// Fills out (y of every layer, flat), work (u, v as used) and sigma; updates every layer's u
// and v in place. The tables hold the addresses of contiguous weights, u and v of out's dtype.
void spectral_norm_group(const at::Tensor& weight_table, const at::Tensor& u_table,
                         const at::Tensor& v_table, const at::Tensor& meta, at::Tensor& out,
                         at::Tensor& work, at::Tensor& sigma, double eps) {
  check_tables(meta, out, work, sigma);
  const int64_t layers = meta.size(0);
  for (const auto* table : {&weight_table, &u_table, &v_table}) {
    TORCH_CHECK(table->is_cuda() && table->scalar_type() == at::kLong && table->numel() == layers,
                "spectral_norm_group: the address tables must be int64 CUDA tensors of ", layers,
                " entries");
  }
  check_same_device(out, {&weight_table, &u_table, &v_table});
  if (layers == 0) return;
  const c10::cuda::CUDAGuard guard(out.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "spectral_norm_group", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    normalize_group_kernel<scalar_t, acc_t>
        <<<static_cast<unsigned>(layers), kSnThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            weight_table.data_ptr<int64_t>(), u_table.data_ptr<int64_t>(),
            v_table.data_ptr<int64_t>(), meta.data_ptr<int64_t>(), out.data_ptr<scalar_t>(),
            work.data_ptr<acc_t>(), sigma.data_ptr<acc_t>(), static_cast<acc_t>(eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void spectral_norm_group_backward(const at::Tensor& grad, const at::Tensor& out,
                                  const at::Tensor& work, const at::Tensor& sigma,
                                  const at::Tensor& meta, at::Tensor& grad_weight) {
  check_tables(meta, out, work, sigma);
  TORCH_CHECK(grad.sizes() == out.sizes() && grad.scalar_type() == out.scalar_type() &&
                  grad.is_contiguous() && grad_weight.sizes() == out.sizes() &&
                  grad_weight.is_contiguous(),
              "spectral_norm_group_backward: grad and grad_weight must be contiguous and shaped "
              "like out ", out.sizes());
  check_same_device(out, {&grad, &grad_weight});
  const int64_t layers = meta.size(0);
  if (layers == 0) return;
  const c10::cuda::CUDAGuard guard(out.device());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "spectral_norm_group_backward", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    normalize_group_backward_kernel<scalar_t, acc_t>
        <<<static_cast<unsigned>(layers), kSnThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
            grad.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), work.data_ptr<acc_t>(),
            sigma.data_ptr<acc_t>(), meta.data_ptr<int64_t>(), grad_weight.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(ganfast_C, CUDA, m) {
  m.impl("spectral_norm_group", &spectral_norm_group);
  m.impl("spectral_norm_group_backward", &spectral_norm_group_backward);
}

}  // namespace ganfast
