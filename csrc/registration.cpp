// Schemas of the ops ganfast._C provides. Kernels register per op file (TORCH_LIBRARY_IMPL in
// csrc/<op>.cu); the public ops in ganfast/ops/ call these from their CUDA kernels.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(ganfast_C, m) {
  // Gradient penalty (csrc/gradient_penalty.cu). All take contiguous [B, N] rows.
  m.def("interpolate(Tensor real, Tensor fake, Tensor alpha) -> Tensor");
  m.def("sum_squares_per_sample(Tensor x) -> Tensor");
  m.def("norm_backward(Tensor grad_norm, Tensor x, Tensor norm) -> Tensor");
}

// An importable, empty Python module: importing ganfast._C loads the library, which runs the
// registrations above. No pybind11: the ops are reached through torch.ops.ganfast_C.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
