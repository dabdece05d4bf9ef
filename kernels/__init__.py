"""Triton kernels, one file per op (shipped as ganfast.kernels): pure kernels and launchers."""

import functools

import torch


def launch_on_input_device(launcher):
    """Run `launcher` with the device of its first (tensor) argument current.

    Triton launches on the current CUDA device whatever device the pointers belong to, and a
    Python torch.library impl gets no device guard (the C++ ops take a CUDAGuard): tensors on
    cuda:1 while cuda:0 is current (model.to(f"cuda:{rank}") without torch.cuda.set_device)
    would be read from the wrong GPU. The common case, already current, costs two integer reads."""

    @functools.wraps(launcher)
    def launch(first, *args, **kwargs):
        index = first.get_device()  # -1 on CPU (TRITON_INTERPRET=1)
        if index < 0 or index == torch.cuda.current_device():
            return launcher(first, *args, **kwargs)
        with torch.cuda.device(index):
            return launcher(first, *args, **kwargs)

    return launch
