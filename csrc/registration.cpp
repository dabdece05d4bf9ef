// Schemas of the ops ganfast._C provides. Kernels register per op file (TORCH_LIBRARY_IMPL in
// csrc/<op>.cu); the autograd.Functions in ganfast/ops/ call them directly.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(ganfast_C, m) {
  // Gradient penalty (csrc/gradient_penalty.cu); the same schemas as ganfast::<name>
  // (ganfast/ops/gradient_penalty.py), which attaches their CPU reference and fake impls.
  m.def("interpolate(Tensor real, Tensor fake, Tensor alpha) -> Tensor");
  m.def("norm_penalty(Tensor x, float weight, float center) -> (Tensor, Tensor)");
  m.def("norm_backward(Tensor grad, Tensor x, Tensor norm, float slope, float offset) -> Tensor");
  // Spectral norm of a group of layers (csrc/spectral_norm.cu): multi-tensor launchers that
  // reach the weights and their u, v buffers through address tables, the twin of the Triton
  // launchers in kernels/spectral_norm.py; called by ganfast/ops/spectral_norm.py on CUDA only.
  m.def("spectral_norm_group(Tensor weight_table, Tensor u_table, Tensor v_table, Tensor meta, "
        "Tensor(a!) out, Tensor(b!) work, Tensor(c!) sigma, float eps) -> ()");
  m.def("spectral_norm_group_backward(Tensor grad, Tensor out, Tensor work, Tensor sigma, "
        "Tensor meta, Tensor(a!) grad_weight) -> ()");
}

// An importable, empty Python module: importing ganfast._C loads the library, which runs the
// registrations above. No pybind11: the ops are reached through torch.ops.ganfast_C.
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
