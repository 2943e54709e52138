"""Named accelerators: peak dense throughput per precision and memory bandwidth from the makers' datasheets, for an
estimate of a run's time where it has not been measured (`peftlab plan --accelerator h100-sxm`). Sources: docs/plan.md.

`estimate_seconds(spec, graph, batch, tokens, params)`: each product at the larger of FLOPs / peak and bytes / bandwidth
(a roofline), elementwise work at bandwidth, a launch overhead per kernel; peftlab trains in fp32 (matmuls without TF32,
PyTorch's default), so products run at the fp32 peak. The result is labelled an estimate everywhere it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from peftlab.errors import BadInput
from peftlab.flops.graph import Graph, Poly


@dataclass(frozen=True)
class Accelerator:
    name: str
    fp32_tflops: float  # dense, no tensor cores (what PyTorch's fp32 matmul uses unless TF32 is allowed)
    tf32_tflops: float | None  # dense tensor-core TF32 (not sparse)
    bf16_tflops: float  # dense tensor-core BF16 / FP16
    bandwidth_gbs: float  # memory bandwidth, GB/s
    memory_gb: float
    source: str  # the datasheet the numbers come from
    url: str = ""  # where it is published


_SPECS = [  # name, fp32, tf32, bf16 (dense TFLOP/s), bandwidth GB/s, memory GB, datasheet, where it is published
    ("h200", 67.0, 494.7, 989.5, 4800.0, 141.0, "NVIDIA H200 Tensor Core GPU datasheet (SXM)",
     "https://www.nvidia.com/en-us/data-center/h200/"),
    ("h100-sxm", 67.0, 494.7, 989.5, 3350.0, 80.0, "NVIDIA H100 Tensor Core GPU datasheet (SXM5)",
     "https://www.nvidia.com/en-us/data-center/h100/"),
    ("h100-pcie", 51.0, 378.0, 756.0, 2000.0, 80.0, "NVIDIA H100 Tensor Core GPU datasheet (PCIe)",
     "https://www.nvidia.com/en-us/data-center/h100/"),
    ("a100-80gb", 19.5, 156.0, 312.0, 2039.0, 80.0, "NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB)", "A100"),
    ("a100-40gb", 19.5, 156.0, 312.0, 1555.0, 40.0, "NVIDIA A100 Tensor Core GPU datasheet (40GB)", "A100"),
    ("l4", 30.3, 60.0, 121.0, 300.0, 24.0, "NVIDIA L4 Tensor Core GPU datasheet",
     "https://www.nvidia.com/en-us/data-center/l4/"),
    ("a10", 31.2, 62.5, 125.0, 600.0, 24.0, "NVIDIA A10 Tensor Core GPU datasheet",
     "https://www.nvidia.com/en-us/data-center/products/a10-gpu/"),
    ("t4", 8.1, None, 65.0, 320.0, 16.0, "NVIDIA T4 Tensor Core GPU datasheet",
     "https://www.nvidia.com/en-us/data-center/tesla-t4/"),
    ("v100-sxm2", 15.7, None, 125.0, 900.0, 32.0, "NVIDIA Tesla V100 GPU datasheet (SXM2)",
     "https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf"),
]  # fmt: skip
_A100 = "https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf"
ACCELERATORS = {s[0]: Accelerator(*s[:7], url=_A100 if s[7] == "A100" else s[7]) for s in _SPECS}
LAUNCH_S = 10e-6  # per kernel: PyTorch's eager dispatch + launch on a GPU, about 10 µs


def accelerator(name: str) -> Accelerator:
    key = name.strip().lower()
    if key not in ACCELERATORS:
        raise BadInput(f"--accelerator {name!r}: unknown; known: {', '.join(ACCELERATORS)}")
    return ACCELERATORS[key]


def _bytes(op, batch: int, tokens: int) -> float:
    """fp32 bytes a product reads and writes (operands and result), for the bandwidth side of the roofline."""
    rows = 1 if op.per_step else batch
    if op.kind == "linear":
        r, k, n = op.shape
        m = Poly.of(r).at(tokens) * rows
        return 4.0 * (m * k + k * n + m * n)
    if op.kind == "bmm":
        nb, m, k, n = (Poly.of(x).at(tokens) for x in op.shape)
        return 4.0 * nb * rows * (m * k + k * n + m * n)
    if op.kind == "conv":
        c_in, c_out, k, groups, h, w, _s, ho, wo = op.shape
        return 4.0 * rows * (c_in * h * w + c_out * ho * wo) + 4.0 * c_out * (c_in // groups) * k * k
    if op.kind == "attention":
        heads, tq, tk, d, _ = op.shape
        return 4.0 * rows * heads * d * (2 * Poly.of(tq).at(tokens) + 2 * Poly.of(tk).at(tokens))
    return 0.0


def estimate_seconds(spec: Accelerator, g: Graph, batch: int, tokens: int, params: int = 0) -> float:
    """One pass of g (forward, and backward in training) on `spec` at its peak specs: a roofline per kernel."""
    peak, bw = spec.fp32_tflops * 1e12, spec.bandwidth_gbs * 1e9
    total = 0.0
    for op in g.ops:
        flops = (op.fwd + op.bwd).at(tokens) * (1 if op.per_step else batch)
        passes = 1 + sum(op.grads)
        total += max(flops / peak, passes * _bytes(op, batch, tokens) / bw) + passes * LAUNCH_S
    for _what, numel, backward in g.elementwise:
        moved = 4.0 * 3 * numel.at(tokens) * batch  # read two, write one
        total += (1 + backward) * (moved / bw + LAUNCH_S)
    if g.training and params:
        total += (
            4.0 * 7 * params / bw + 2 * LAUNCH_S
        )  # AdamW: weight, gradient, two moments read, three written
    return total
