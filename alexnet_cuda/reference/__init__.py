"""A plain NumPy float64 reference of every AlexNet op, forward and backward, one module per layer.

Written to be read, not to be fast, and independently of the C++/CUDA code: the tests compare every backend
against it, and check its backward passes against central finite differences.
"""
