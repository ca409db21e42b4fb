// Helpers shared by the binding sources (module.cpp: tensor, ops, build info; network.cpp: the AlexNet model).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "tensor.h"

namespace alexnet::py_bindings {

namespace py = pybind11;

// NumPy array (C-contiguous, float32/int32/uint8) -> Tensor on device. Raises TypeError/ValueError naming `what`.
Tensor tensor_from_numpy(const py::array& array, const Device& device, const std::string& what = "array");
// Tensor -> new NumPy array (a host copy).
py::array tensor_to_numpy(const Tensor& t);

void bind_network(py::module_& m);  // network.cpp
// Tensor.__dlpack__, Tensor.__dlpack_device__ and from_dlpack (dlpack.cpp).
void bind_dlpack(py::module_& m, py::class_<Tensor>& tensor);

}  // namespace alexnet::py_bindings
