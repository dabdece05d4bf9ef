// Shared launch helpers for ganfast's row-wise ([B, N]) memory-bound kernels.
#pragma once

#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

namespace ganfast {
namespace launch {

constexpr int kThreads = 256;

// VEC elements moved as one 16-byte (or narrower) load/store.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) AlignedVector {
  T val[VEC];
};

// Sum over the block; the result is valid in thread 0.
template <typename acc_t>
__device__ __forceinline__ acc_t block_reduce_sum(acc_t v) {
  __shared__ acc_t warp_sums[kThreads / 32];
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffff, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : acc_t(0);
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

}  // namespace launch
}  // namespace ganfast
