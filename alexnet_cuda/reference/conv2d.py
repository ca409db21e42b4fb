"""conv2d in float64 NumPy: forward, and the gradients with respect to the input, the weight and the bias.

The layer (paper Sections 3.1 and 3.5): for every image i, output channel o and output position (oy, ox),

    y[i, o, oy, ox] = bias[o] + sum_{c in group(o), ki, kj} w[o, c, ki, kj] * xp[i, c, oy*stride + ki, ox*stride + kj]

where xp is x zero-padded by `padding` on each side and group(o) is the block of c_in/groups input channels that
output channel o sees (the paper's two-GPU split, Section 3.2: conv2, conv4 and conv5 use groups=2). Then
y = act(y) with act in {None, 'relu', 'tanh'}.

Written as one loop over the kernel offsets (ki, kj): for a fixed offset, the inputs that offset touches form a
strided slice of xp, and the layer is a channel contraction of that slice (einsum). The backward passes are the
same contraction read the other way.
"""

from __future__ import annotations

import numpy as np

from .activation import activation_forward


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output positions along one axis: the kernel must fit inside the padded input."""
    return (size + 2 * padding - kernel) // stride + 1




def _window(xp: np.ndarray, ki: int, kj: int, stride: int, h_out: int, w_out: int) -> np.ndarray:
    """xp[:, :, oy*stride + ki, ox*stride + kj] for all output positions: shape (n, c, h_out, w_out)."""
    return xp[:, :, ki : ki + stride * (h_out - 1) + 1 : stride, kj : kj + stride * (w_out - 1) + 1 : stride]


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, groups=1, activation=None) -> np.ndarray:
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    n, c_in, h, w = x.shape
    c_out, cin_g, kh, kw = weight.shape
    assert c_in == cin_g * groups and c_out % groups == 0
    cout_g = c_out // groups
    h_out, w_out = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    y = np.zeros((n, c_out, h_out, w_out))
    for g in range(groups):
        x_g = xp[:, g * cin_g : (g + 1) * cin_g]
        w_g = weight[g * cout_g : (g + 1) * cout_g]
        for ki in range(kh):
            for kj in range(kw):
                window = _window(x_g, ki, kj, stride, h_out, w_out)
                y[:, g * cout_g : (g + 1) * cout_g] += np.einsum("nchw,oc->nohw", window, w_g[:, :, ki, kj])
    if bias is not None:
        y += np.asarray(bias, np.float64)[None, :, None, None]
    return activation_forward(y, activation)  # the fused epilogue


def conv2d_backward_input(dy, weight, input_size, stride=1, padding=0, groups=1) -> np.ndarray:
    """dL/dx: every output gradient flows back to the inputs its window read, weighted by the kernel."""
    dy = np.asarray(dy, np.float64)
    weight = np.asarray(weight, np.float64)
    n, c_out, h_out, w_out = dy.shape
    _, cin_g, kh, kw = weight.shape
    cout_g = c_out // groups
    h, w = input_size
    dxp = np.zeros((n, cin_g * groups, h + 2 * padding, w + 2 * padding))
    for g in range(groups):
        dy_g = dy[:, g * cout_g : (g + 1) * cout_g]
        w_g = weight[g * cout_g : (g + 1) * cout_g]
        dx_g = dxp[:, g * cin_g : (g + 1) * cin_g]  # a view: the += below writes into dxp
        for ki in range(kh):
            for kj in range(kw):
                _window(dx_g, ki, kj, stride, h_out, w_out)[...] += np.einsum("nohw,oc->nchw", dy_g, w_g[:, :, ki, kj])
    return dxp[:, :, padding : padding + h, padding : padding + w]


def conv2d_backward_weight(x, dy, kernel_size, stride=1, padding=0, groups=1) -> np.ndarray:
    """dL/dw[o, c, ki, kj] = sum over images and output positions of dy[i, o, oy, ox] * xp[i, c, oy*s+ki, ox*s+kj]."""
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    n, c_in, h, w = x.shape
    _, c_out, h_out, w_out = dy.shape
    kh, kw = kernel_size
    cin_g, cout_g = c_in // groups, c_out // groups
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dw = np.zeros((c_out, cin_g, kh, kw))
    for g in range(groups):
        x_g = xp[:, g * cin_g : (g + 1) * cin_g]
        dy_g = dy[:, g * cout_g : (g + 1) * cout_g]
        for ki in range(kh):
            for kj in range(kw):
                window = _window(x_g, ki, kj, stride, h_out, w_out)
                dw[g * cout_g : (g + 1) * cout_g, :, ki, kj] = np.einsum("nohw,nchw->oc", dy_g, window)
    return dw


def bias_backward(dy) -> np.ndarray:
    """dL/dbias[c] = dy summed over every axis except the channel axis 1 (conv2d and linear layers alike)."""
    dy = np.asarray(dy, np.float64)
    return dy.sum(axis=tuple(a for a in range(dy.ndim) if a != 1))
