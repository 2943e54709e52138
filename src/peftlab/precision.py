"""Training precision: `--precision auto|fp32|bf16|fp16`, resolved once from what this machine can do.

`config.load` calls `resolve(requested)`; the train loop hands `MIXED[precision]` to accelerate's Accelerator, which
runs the forward pass under autocast (weights and optimiser state stay fp32; fp16 adds a gradient scaler).
"""

from __future__ import annotations

import torch

from peftlab.errors import BadInput

CHOICES = ("auto", "fp32", "bf16", "fp16")
MIXED = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # peftlab's name -> accelerate's mixed_precision


def cpu_has_bf16() -> bool:
    """bf16 instructions on this CPU (AVX512-BF16 or AMX); without them torch emulates bf16, far slower than fp32."""
    cpu = torch.cpu
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in probes)


def gpu_has_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve(requested: str | None) -> str:
    """ "auto" -> bf16 on a GPU that has it, else fp32 (CPU: fp32 is the fast path; OFFLINE.md). An explicit choice
    the hardware cannot do is one line of bad input."""
    requested = (requested or "auto").lower()
    if requested not in CHOICES:
        raise BadInput(f"--precision {requested!r}: expected one of {', '.join(CHOICES)}")
    cuda = torch.cuda.is_available()
    if requested == "auto":
        return "bf16" if gpu_has_bf16() else "fp32"
    if requested == "bf16" and not (gpu_has_bf16() if cuda else cpu_has_bf16()):
        where = f"this GPU ({torch.cuda.get_device_name(0)})" if cuda else "this CPU (no AVX512-BF16 or AMX)"
        raise BadInput(f"--precision bf16: {where} has no bf16 support, so it would be emulated and slow; use "
                       f"--precision {'fp16' if cuda else 'fp32'}")  # fmt: skip
    if requested == "fp16" and not cuda:
        raise BadInput("--precision fp16: fp16 mixed precision needs a CUDA GPU; on a CPU use --precision fp32 "
                       "(or bf16 where the CPU has it)")  # fmt: skip
    return requested
