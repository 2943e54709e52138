"""`lora`: HF PEFT LoRA adapters on the target modules, the head trained in full through `modules_to_save`.

Targets accept portable aliases (query, value, ...) and this architecture's module names; defaults r=8, alpha=16,
dropout 0.1, targets query+value (1x1 convs on CNNs), head saved.
"""

from peft import LoraConfig, TaskType, get_peft_model

from peftlab.errors import BadInput
from peftlab.methods import Method
from peftlab.models.anatomy import default_lora_targets, resolve_lora_targets


def lora_config(model, anatomy, cfg) -> LoraConfig:
    """The LoraConfig this run uses, with targets resolved to full module names of this model."""
    targets = resolve_lora_targets(model, cfg.lora_target or default_lora_targets(anatomy))
    if cfg.lora_modules_to_save is None:
        to_save = list(anatomy.head)
    else:
        names = dict(model.named_modules())
        to_save = []
        for want in cfg.lora_modules_to_save:
            hits = [n for n in names if n.endswith(want)]  # PEFT's own rule: a plain suffix match
            if not hits:
                raise BadInput(
                    f"--lora-modules-to-save {want!r}: no such module; the head here is {', '.join(anatomy.head)}"
                )
            to_save.append(want)
    # SEQ_CLS gives users PeftModelForSequenceClassification on reload (the class the HF docs use);
    # images have no task type in PEFT, so the plain PeftModel wraps them.
    task_type = TaskType.SEQ_CLS if cfg.task == "text-classification" else None
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        bias=cfg.lora_bias,
        target_modules=targets,
        modules_to_save=to_save or None,
        use_rslora=cfg.lora_use_rslora,
        use_dora=cfg.lora_use_dora,
        task_type=task_type,
    )


def prepare(model, anatomy, cfg):
    config = lora_config(model, anatomy, cfg)
    try:
        return get_peft_model(model, config)
    except (
        ValueError
    ) as e:  # PEFT rejects some layer/knob combinations, e.g. a grouped conv whose groups do not divide r
        first = str(e).strip().splitlines()[0]
        raise BadInput(
            f"--lora-target {','.join(cfg.lora_target or ['(default)'])}: PEFT cannot apply LoRA here ({first})"
        ) from None


METHOD = Method(
    name="lora",
    trains="LoRA matrices A (r x in) and B (out x r) on the target modules + the head (modules_to_save)",
    default_lr=5e-4,
    prepare=prepare,
)
