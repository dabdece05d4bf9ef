"""Timing and the machine's limits: medians of many runs, warm-up excluded.

On CUDA, device time from triton.testing.do_bench (CUDA events, L2 flushed between runs);
on CPU, wall time from perf_counter. Absolute CPU times say little; ratios taken side by side
in one run are what the benchmarks report.
"""

import gc
import random
import statistics
import time

import torch

# Set by `ganfast bench`'s SIGINT handler before it raises KeyboardInterrupt, cleared when a
# benchmark takes the interrupt (cases.take_interrupt). Python prints and drops an exception
# raised in a weakref callback or a __del__ (torch.compile's caches run many), and `timeout
# --signal=INT` sends one SIGINT (to the process, then its group, microseconds apart): the
# timing loops check the request between calls, so a dropped interrupt still stops the run.
stop_requested = False


def stop_if_requested() -> None:
    """Raise KeyboardInterrupt if SIGINT asked the run to stop and nothing took it up yet."""
    if stop_requested:
        raise KeyboardInterrupt


# do_bench times as many calls as fit in 100 ms: a call over this many ms would get fewer than
# 50 samples (a 50 ms training step two), so such calls are timed `reps` times by CUDA events.
DO_BENCH_MAX_MS = 2.0


def median_ms(fn, device: torch.device, *, warmup: int = 5, reps: int = 60) -> float:
    """Median milliseconds of fn() on `device` (at least min(reps, 50) timed calls)."""
    if device.type == "cuda":
        try:
            from triton.testing import do_bench
        except ImportError:
            return _cuda_events_ms(fn, warmup, reps)
        stop_if_requested()  # do_bench's loop (100 ms) is Triton's
        if _cuda_events_ms(fn, 1, 3) > DO_BENCH_MAX_MS:
            return _cuda_events_ms(fn, warmup, reps)
        return float(do_bench(fn, warmup=25, rep=100, return_mode="median"))
    return statistics.median(_cpu_call_ms(fn, warmup, reps))


def _cpu_call_ms(fn, warmup: int, reps: int) -> list:
    """Wall milliseconds of each of `reps` calls of fn(), after `warmup` untimed ones."""
    for _ in range(warmup):  # a first call may compile for many seconds: checked before each
        stop_if_requested()
        fn()
    times = []
    for _ in range(reps):
        stop_if_requested()
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def interleaved_ms(fns, reps=30, warmup=3):
    """Median ms per fn, the fns called in turn: on a shared CPU the load drifts, and taking
    each figure over the same stretch of time keeps the ratios honest.

    Each round calls them in a new order (shuffled with a fixed seed, so a run repeats). In a
    fixed order each fn follows the same other one, whose frees decide whether its large
    allocations reuse memory or fault in fresh pages: two gradient-penalty backwards of the
    same ATen ops timed 0.88 and 1.45 ms in a fixed order on the 2-core machine, 1.0-1.2 ms
    both once the order changed from round to round."""
    for _ in range(warmup):
        for fn in fns.values():
            stop_if_requested()
            fn()
    order = list(fns)
    shuffle = random.Random(0).shuffle
    times = {name: [] for name in order}
    for _ in range(reps):
        shuffle(order)
        for name in order:
            stop_if_requested()  # before each call, not each round: a round of slow calls
            start = time.perf_counter()  # (Inception batches) would delay a stop by seconds
            fns[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def device_ms(fn, device: torch.device) -> float | None:
    """Median milliseconds of fn()'s kernels alone: fn is captured once in a CUDA graph and
    the graph replayed, so host time (Python, dispatch, launches) drops out. This is the time
    to set against the bandwidth limit; median_ms, which includes whatever host time the
    device could not hide, is what eager code sees. None off CUDA, or when fn cannot be
    captured (the caller then reports bandwidth from median_ms)."""
    if device.type != "cuda":
        return None
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    try:
        with torch.cuda.stream(side):  # warm-up outside the capture: caches, compilation
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
    except RuntimeError:
        torch.cuda.synchronize()
        return None
    try:
        return median_ms(graph.replay, device)
    finally:
        # A graph's private memory pool stays reserved while the graph lives, and is handed
        # back only by empty_cache: drop both now, or a run of many cases fills the device.
        del graph
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def _cuda_events_ms(fn, warmup: int, reps: int) -> float:
    for _ in range(warmup):
        stop_if_requested()
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        stop_if_requested()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth_gbps(device: torch.device, bytes_moved: int | None = None) -> float:
    """Measured copy bandwidth (read + write bytes per second), the ceiling for the
    memory-bound passes of the gradient penalty: of a 1 GB (CUDA) or 128 MB (CPU) copy, the
    memory's own, or of a copy that moves `bytes_moved`. A CPU case is timed with its data in
    cache (nothing flushes the caches between its calls, unlike do_bench on CUDA), and against
    memory bandwidth small cases ran at 2-3 times "100%" on the 2-core machine, so on CPU its
    ceiling is a copy of the same size, timed the same way, its fastest call (as
    matrix_tflops's): a ceiling is what the machine does at its best, and the median of a copy
    timed while neighbours loaded the 2-core machine once came out at 0.07 GB/s against its
    usual 146, a case's row at 60 times "100%"."""
    numel = bytes_moved // 8 if bytes_moved else (256 if device.type == "cuda" else 32) * 2**20
    src = torch.randn(max(numel, 1), device=device)
    dst = torch.empty_like(src)
    if device.type == "cuda":
        ms = median_ms(lambda: dst.copy_(src), device)
    else:
        ms = min(_cpu_call_ms(lambda: dst.copy_(src), 5, 60))
    return 2 * src.numel() * src.element_size() / (ms * 1e-3) / 1e9


def matrix_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """Measured matrix throughput in `dtype` (TFLOP/s, 2 per multiply-add): the better of a
    square matmul and a large channels_last 3x3 convolution ([B, 512, 32, 32] -> 512: cuBLAS
    and cuDNN on CUDA, MKL and oneDNN on CPU). Both, because a convolution's ceiling is its
    library's: on the 2-core development machine oneDNN's 3x3 convolutions ran at 0.41 TFLOP/s
    against 0.17 for MKL's matmul and 0.28-0.36 for 1x1 convolutions, and with PyTorch's
    defaults cuDNN takes TF32 for float32 where a matmul does not."""
    cuda = device.type == "cuda"
    n, batch, reps = (8192, 64, 60) if cuda else (1024, 4, 10)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    image = torch.randn(batch, 512, 32, 32, device=device, dtype=dtype)
    image = image.to(memory_format=torch.channels_last)
    kernel = torch.randn(512, 512, 3, 3, device=device, dtype=dtype)
    kernel = kernel.to(memory_format=torch.channels_last)
    # A ceiling is what the machine does at its best: on CPU, whose neighbours come and go,
    # the fastest of the calls (the median moved 0.22-0.38 TFLOP/s between runs); on CUDA the
    # median, which is steady there.
    def timed(fn):
        return median_ms(fn, device, reps=reps) if cuda else min(_cpu_call_ms(fn, 2, reps))

    with torch.no_grad():
        mm = 2 * n**3 / timed(lambda: torch.mm(a, b))
        conv = 2 * batch * 512 * 32 * 32 * 512 * 9 / timed(
            lambda: torch.nn.functional.conv2d(image, kernel, padding=1))
    return max(mm, conv) * 1e3 / 1e12
