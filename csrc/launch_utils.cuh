// Shared launch helpers for ganfast's row-wise ([B, N]) memory-bound kernels.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>
#include <vector>

namespace ganfast {
namespace launch {

constexpr int kThreads = 256;

// VEC elements moved as one 16-byte (or narrower) load/store.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) AlignedVector {
  T val[VEC];
};

// Calls f(v, i, u) for every vector v = row_v[i] of a row this thread owns in the grid-stride
// walk over grid dim x. kUnroll independent loads are in flight before any is used (u is the
// load's slot, 0..kUnroll-1): a memory-bound pass needs several per thread to cover HBM
// latency at the occupancy row_grid gives.
template <int kUnroll, typename Vec, typename F>
__device__ __forceinline__ void for_each_vector(const Vec* __restrict__ row_v, int64_t vec_row,
                                                F&& f) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  for (; i + (kUnroll - 1) * stride < vec_row; i += kUnroll * stride) {
    Vec v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) v[u] = row_v[i + u * stride];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) f(v[u], i + u * stride, u);
  }
  for (; i < vec_row; i += stride) {
    const Vec v = row_v[i];  // one vector load; passing row_v[i] by reference splits it
    f(v, i, 0);
  }
}

// Sum over a block of kBlock threads; the result is valid in thread 0.
template <int kBlock, typename acc_t>
__device__ __forceinline__ acc_t block_reduce_sum(acc_t v) {
  __shared__ acc_t warp_sums[kBlock / 32];
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffff, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kBlock / 32 ? warp_sums[threadIdx.x] : acc_t(0);
  if (warp == 0) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffff, v, offset);
  }
  __syncthreads();  // warp_sums is reused when the caller loops to the next sample
  return v;
}

// Grid for a [batch, vec_row] launch: y walks samples (capped at the hardware limit, the
// kernels loop over the rest), x splits a row into enough blocks to fill every SM about
// eight times over even when the batch is small.
inline dim3 row_grid(int64_t batch, int64_t vec_row) {
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t y = std::min<int64_t>(std::max<int64_t>(batch, 1), 65535);
  const int64_t blocks_per_row = (vec_row + kThreads - 1) / kThreads;
  const int64_t wanted_x = std::max<int64_t>(1, (sms * 8 + y - 1) / y);
  const int64_t x = std::max<int64_t>(1, std::min<int64_t>({blocks_per_row, wanted_x, 65535}));
  return dim3(static_cast<unsigned>(x), static_cast<unsigned>(y));
}

// Calls f(std::integral_constant<int, VEC>) with the widest VEC (up to 16 bytes) that
// divides the row length and keeps every pointer aligned, else VEC = 1.
template <typename scalar_t, typename F>
void dispatch_vec_width(int64_t row, std::initializer_list<const void*> ptrs, F&& f) {
  constexpr int kMaxVec = 16 / sizeof(scalar_t) > 0 ? 16 / sizeof(scalar_t) : 1;
  bool aligned = row % kMaxVec == 0;
  for (const void* p : ptrs) aligned = aligned && reinterpret_cast<uintptr_t>(p) % 16 == 0;
  if constexpr (kMaxVec > 1) {
    if (aligned) return f(std::integral_constant<int, kMaxVec>{});
  }
  f(std::integral_constant<int, 1>{});
}

// The per-sample layout rule of ganfast/ops/layout.py: a [B, ...] tensor whose samples are
// each one block of memory (contiguous, channels_last, any dense layout with the batch
// outermost) is read as [B, N] rows in memory order, no copy; anything else is copied.
inline bool samples_are_blocks(const at::Tensor& t) {
  if (t.is_contiguous()) return true;
  const int64_t batch = t.size(0);
  if (batch > 1 && t.stride(0) != t.numel() / batch) return false;
  std::vector<std::pair<int64_t, int64_t>> inner;  // (stride, size) of the non-batch dims
  for (int64_t d = 1; d < t.dim(); ++d) {
    if (t.size(d) != 1) inner.emplace_back(t.stride(d), t.size(d));
  }
  std::sort(inner.begin(), inner.end());
  int64_t expected = 1;
  for (const auto& [stride, size] : inner) {
    if (stride != expected) return false;
    expected *= size;
  }
  return true;
}

inline at::Tensor as_rows(const at::Tensor& t) {
  return samples_are_blocks(t) ? t : t.contiguous();
}

// `t` with the strides of the rows tensor `like`, copied only when they differ.
inline at::Tensor matching_layout(const at::Tensor& t, const at::Tensor& like) {
  return t.strides() == like.strides() ? t : at::empty_like(like).copy_(t);
}

inline int64_t row_length(const at::Tensor& t) {
  return t.size(0) ? t.numel() / t.size(0) : 0;
}

}  // namespace launch
}  // namespace ganfast
