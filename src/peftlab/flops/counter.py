"""FLOPs measured on a real model with torch.utils.flop_counter.FlopCounterMode: what the predictions are checked against.

`count(fn)` -> (total, {op: flops}) of everything `fn()` runs. Three formulas are added to FlopCounterMode's own table,
so that every kernel the steps use is counted by the rule it already applies to its siblings:
- CPU's fused attention (`_scaled_dot_product_flash_attention_for_cpu` and its backward) gets the SDPA formulas the CUDA
  kernels have (torch 2.13 leaves the CPU kernel out of the table, so it would count 0);
- a grouped convolution's weight gradient counts its groups (torch 2.13's `conv_backward_flop` multiplies the full
  input channels by the output channels there, which overstates a depthwise conv's weight gradient by the group count);
- oneDNN's LSTM layer (`mkldnn_rnn_layer`, what nn.LSTM runs on CPU; p-tuning's LSTM encoder) counts its products:
  2·T·B·(in + h)·4h forward, twice that backward (the kernel forms every gradient); torch's table has none.
"""

from __future__ import annotations

from math import prod

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, sdpa_backward_flop, sdpa_flop

aten = torch.ops.aten


def _conv_backward(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                   _output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:  # fmt: skip
    """Input gradient: the transposed conv (as torch counts it). Weight gradient: N·Ho·Wo·C_out·(C_in/g)·k², twice."""
    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, list(x_shape), not transposed)
    if output_mask[1]:
        n, (c_out, c_in_g, *kernel) = grad_out_shape[0], w_shape
        flops += 2 * n * prod(grad_out_shape[2:]) * c_out * c_in_g * prod(kernel)
    return flops


def _lstm_layer(x_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    """One direction of one LSTM layer over x (T, B, in): gates = x·W_ihᵀ + h·W_hhᵀ, W_ih (4h, in), W_hh (4h, h)."""
    t, b = x_shape[0], x_shape[1]
    return 2 * t * b * w_ih_shape[0] * (w_ih_shape[1] + w_hh_shape[1])


def _lstm_layer_backward(x_shape, w_ih_shape, w_hh_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _lstm_layer(x_shape, w_ih_shape, w_hh_shape)


# FlopCounterMode wraps custom formulas to take shapes; torch's own are registered wrapped already (__wrapped__: raw)
MAPPING = {
    aten._scaled_dot_product_flash_attention_for_cpu: sdpa_flop.__wrapped__,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: sdpa_backward_flop.__wrapped__,
    aten.convolution_backward: _conv_backward,
    aten.mkldnn_rnn_layer: _lstm_layer,
    aten.mkldnn_rnn_layer_backward: _lstm_layer_backward,
}


def counter() -> FlopCounterMode:
    """A FlopCounterMode with the two additions above (display off)."""
    return FlopCounterMode(display=False, custom_mapping=MAPPING)


def count(fn) -> tuple[int, dict[str, int]]:
    """Run fn() under the counter -> (total FLOPs, per aten op)."""
    with counter() as c:
        fn()
    per_op = {str(k): int(v) for k, v in c.get_flop_counts().get("Global", {}).items()}
    return int(c.get_total_flops()), per_op
