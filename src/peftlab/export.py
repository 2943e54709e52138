"""`peftlab export RUN_DIR --out DIR`: a run's trained classifier as one standalone folder that pipeline() loads.

`export(run_dir, out, dtype=None, overwrite=False)` -> a summary dict. Adapters are merged into the weights
(`merge_and_unload`: LoRA family, IA3, LoHa/LoKr, OFT/BOFT, VeRA, FourierFT, LN tuning), the trained head included;
prompt-learning methods (prompt / prefix / p-tuning) add inputs, not weight changes, so they cannot be merged and are
refused with one line (their adapter folder is the artifact). The run's tokenizer or image processor goes beside it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from peftlab import disk
from peftlab.errors import BadInput, Stopped

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _check_out(out: Path, run_dir: Path, overwrite: bool) -> None:
    here = out.resolve()
    run = run_dir.resolve()
    if here == run or here in run.parents:
        raise BadInput(f"--out {out}: that folder holds the run itself; choose a folder outside {run_dir}")
    if here.exists() and not overwrite:
        raise BadInput(f"--out {out} already exists: choose a new folder, or add --overwrite to replace it")
    if here.exists() and not here.is_dir():
        raise BadInput(f"--out {out} is a file: choose a folder")
    # the export is written beside its target, then renamed into place
    disk.check_writable(out.parent, "--out")


def _merged(model, p, method: str):
    """The adapter folded into the base weights -> a plain transformers model (head included)."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return model, False
    if p.prompt_learning:
        raise BadInput(
            f"--method {method} cannot be merged into the weights (its virtual tokens are extra inputs, not weight "
            f"changes): use the adapter folder {p.folder} as its model card shows, or `peftlab predict`"
        )
    try:
        return _unwrap_saved(model.merge_and_unload()), True
    except (AttributeError, NotImplementedError, ValueError) as e:
        raise BadInput(f"--method {method}: PEFT cannot merge this adapter ({str(e).splitlines()[0]}); use the "
                       f"adapter folder {p.folder} as its model card shows") from None  # fmt: skip


def _unwrap_saved(model):
    """Put each module PEFT trained whole (modules_to_save: the head) back in its place as a plain module. LN tuning's
    merge_and_unload leaves the head wrapped, which would save it under keys no model class reads."""
    from peft.utils.other import AuxiliaryTrainingWrapper

    wrapped = [(n, m) for n, m in model.named_modules() if isinstance(m, AuxiliaryTrainingWrapper)]
    for name, module in wrapped:
        parent, _, child = name.rpartition(".")
        plain = module.unload_and_optionally_merge_module(merge=True, safe_merge=False, adapter_names=None)
        setattr(model.get_submodule(parent) if parent else model, child, plain)
    return model


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def export(run_dir: str | Path, out: str | Path, dtype: str | None = None, overwrite: bool = False) -> dict:
    """Write the run's model, merged where it is an adapter, to `out`; returns what was written."""
    import torch

    from peftlab.artifacts import card, portable
    from peftlab.artifacts.runs import open_run
    from peftlab.models.loading import quiet

    run_dir, out = Path(run_dir).expanduser(), Path(out).expanduser()
    if dtype is not None and dtype not in DTYPES:
        raise BadInput(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    record, folder = open_run(run_dir, "export")
    if record.task == "vqa":
        raise BadInput(f"export {run_dir}: a VQA run's head sits on two frozen encoders, which no transformers "
                       "pipeline takes; use `peftlab predict` on the run folder")  # fmt: skip
    _check_out(out, run_dir, overwrite)
    model, processor, p = portable.load(folder)
    model, merged = _merged(model, p, record.method)
    if p.mean_pooled:
        model.config.encoder_name_or_path = p.base.ref
    torch_dtype = getattr(torch, DTYPES[dtype or "fp32"])
    model = model.to(torch_dtype)
    model.config.dtype = DTYPES[dtype or "fp32"]
    # every tensor of the merged model at the export dtype, plus 16 MiB for the processor, card and config files
    need = sum(t.numel() * t.element_size() for t in model.state_dict().values()) + 16 * disk.MiB
    disk.check_free(out.parent, need, "--out", "the exported model")
    # write beside the target, then swap it in: a failure never leaves half an export or loses the old one
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the export is an ordinary folder
    try:
        with quiet():
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
        summary = {
            "out": str(out), "run_id": record.run_id, "method": record.method, "task": p.task,
            "merged": merged, "dtype": DTYPES[dtype or "fp32"], "labels": p.label_names,
            "trust_remote_code": p.mean_pooled, "pipeline": f'pipeline("{p.task}", model="{out}"'
            + (", trust_remote_code=True" if p.mean_pooled else "") + ")",
        }  # fmt: skip
        (tmp / "README.md").write_text(card.render(record, p, export=summary))
        summary["size_mb"] = round(_size_mb(tmp), 2)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except Exception as e:
        if disk.is_full(e):  # nothing half-written stays: the temporary folder goes below
            raise Stopped(f"the disk is full while exporting to {out} ({_size_mb(tmp):,.1f} MiB written of about "
                          f"{need / disk.MiB:,.1f}); free some space or choose another --out") from None  # fmt: skip
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return summary
