// Bindings of the AlexNet network (csrc/network.h). STUB: the network issue fills this in.
#include "bindings.h"

namespace alexnet::py_bindings {

void bind_network(py::module_& m) {}

}  // namespace alexnet::py_bindings
