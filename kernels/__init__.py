"""Triton kernels, one file per op (shipped as ganfast.kernels): pure kernels and launchers."""
