"""The checks the method tests share: predicted == measured line by line, folders holding only config.json, a method
prepared as its plan says, one optimiser step, an adapter saved and reloaded onto a fresh base, refusals in one line.

Plain functions, no fixtures: a test module imports what it uses (`from checks import check, one_step`; pytest puts
tests/ on sys.path). A module's `folder` fixture is `return folders(tmp_path)`.
"""

import json
import re
from pathlib import Path

import pytest
import torch

from params.params_configs import BASE
from peftlab.errors import BadInput
from peftlab.methods import TEXT, Context
from peftlab.methods.knobs import changed
from peftlab.models.anatomy import anatomy
from peftlab.params import measure, measure_breakdown, predict_from_config
from tiny import TINY, tiny_model

# --- predicted == measured ----------------------------------------------------------------------------------------


def check(result: dict) -> None:
    """The prediction exists and equals the measured count, in total and line by line; formulas add up."""
    assert result["predicted_total"] is not None, result["note"]
    rows = result["breakdown"]
    outside = [r["component"] for r in rows if r["params"] is None]
    assert outside == [], f"measured parameters outside every formula: {outside}"
    for r in rows:
        assert (r["measured_params"], r["measured_trainable"]) == (r["params"], r["trainable"]), r
        assert formula_value(r["formula"]) == r["params"], r
        if "trainable_formula" in r:
            assert formula_value(r["trainable_formula"]) == r["trainable"], r
    assert result["predicted_total"] == result["total"] == sum(r["params"] for r in rows)
    assert result["predicted_trainable"] == result["trainable"] == sum(r["trainable"] for r in rows)
    assert result["match"] is True


def formula_value(formula: str) -> int:
    """Evaluate a rendered formula ("words 97×48 + 2 blocks × 3 × (48×48 + 48) = 14,448", "2 blocks × [48 + 100] =
    296", "2 blocks × 2 × 12 × 4×3/2 = 288") and check its own total; a bare count ("biases 48") is its number."""
    text, _, total = formula.rpartition(" = ")
    if not text:  # a bare count, maybe labelled: "biases 48"
        return int(re.sub(r"[A-Za-z_ ,]", "", formula))
    arithmetic = re.sub(r"[A-Za-z_]+", " ", text).replace("×", "*").replace("[", "(").replace("]", ")")
    value = eval(arithmetic, {"__builtins__": {}})  # digits, + * / ( ) only: the words were removed
    assert value == int(total.replace(",", "")), formula
    return round(value)


def added_line(result: dict, prefix) -> dict:
    """The method's own line of a `count` breakdown (its component starts with prefix): exactly one, with parameters,
    all of them trainable -> that line."""
    added = [r for r in result["breakdown"] if r["component"].startswith(prefix)]
    assert len(added) == 1 and added[0]["params"] > 0 and added[0]["trainable"] == added[0]["params"], added
    return added[0]


def case_id(family: str, knobs) -> str:
    """A test id: the family, then the knobs that differ from their defaults ("bert,r=3,alpha=5.0")."""
    return ",".join([family] + [f"{k}={v}" for k, v in changed(knobs).items()])


# --- folders holding only config.json -----------------------------------------------------------------------------


def config_folder(path, config: dict, *, sentence_transformers: bool = False) -> str:
    """`path` (made if missing) holding `config` as config.json -> the folder as a str: exactly what `peftlab params`
    works from (no weights, no tokenizer, no hub). sentence_transformers adds modules.json, the sentence-transformers
    marker that makes load_model build the mean-pooling classifier."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    if sentence_transformers:
        (path / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "x"}]))
    return str(path)


def folders(tmp_path):
    """-> folder(name, pooling="cls"): a folder under tmp_path holding only config.json for a TINY family
    (tests/tiny.py) or a BASE hub id (tests/params/params_configs.py); pooling "mean" adds modules.json."""

    def folder(name: str, pooling: str = "cls") -> str:
        path = tmp_path / f"{name.replace('/', '_')}-{pooling}"
        return config_folder(path, TINY.get(name) or BASE[name], sentence_transformers=pooling == "mean")

    return folder


# --- preparing and training ---------------------------------------------------------------------------------------


def inputs_of(batch: dict) -> dict:
    """The batch without its labels: what a forward pass for logits takes."""
    return {k: v for k, v in batch.items() if k != "labels"}


def backbone_of(model) -> dict:
    """Copies of the model's weights outside its head (anatomy): what a pretrained checkpoint gives a fresh base."""
    head = anatomy(model).head
    return {n: p.clone() for n, p in model.state_dict().items() if n.split(".")[0] not in head}


def matches_plan(prepared, predicted) -> None:
    """The prepared model's measured counts equal the prediction's: trainable and total, and every breakdown line."""
    assert (measure(prepared)["trainable"], measure(prepared)["total"]) == (
        predicted.trainable,
        predicted.total,
    )
    measured = {r["component"]: (r["params"], r["trainable"]) for r in measure_breakdown(prepared, predicted)}
    assert measured == {r["component"]: (r["params"], r["trainable"]) for r in predicted.breakdown}


def planned(method, model, task: str, knobs, pooling: str | None = None):
    """method.prepare(model) checked against predict_from_config on the model's config (matches_plan) -> the prepared
    model. method: a registered Method (a methods module's METHOD); pooling defaults to cls for text, image otherwise."""
    pooling = pooling or ("cls" if task == TEXT else "image")
    predicted = predict_from_config(
        model.config, task, model.config.num_labels, method, knobs, pooling=pooling
    )
    prepared = method.prepare(model, anatomy(model), knobs, Context(task))
    matches_plan(prepared, predicted)
    return prepared


def one_step(model, batch: dict, *, graded: str | None = None, all_move: bool = True) -> tuple[dict, dict]:
    """One AdamW step (lr 1e-2) in train mode on the batch -> (before, after): detached copies of every parameter on
    either side of it. The model is left in eval mode with its gradients still set (AdaLoRA's after_step reads them).

    Asserts the loss is finite; with `graded`, that the parameters whose names contain it exist and all have a non-zero
    gradient before the step; that no frozen parameter changed, bit for bit; with `all_move`, that every trainable one
    changed (False where a test asks less: BitFit's zero key biases get a zero gradient and stay)."""
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()
    if graded is not None:
        grads = {n: p for n, p in model.named_parameters() if graded in n}
        assert grads and all(p.requires_grad and p.grad.abs().sum() > 0 for p in grads.values()), graded
    opt.step()
    model.eval()
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen_moved = [
        n for n, p in model.named_parameters() if not p.requires_grad and not torch.equal(p, before[n])
    ]
    assert not frozen_moved, frozen_moved[:3]
    if all_move:
        still = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p, before[n])]
        assert not still, f"trainable weights that did not move: {still[:3]}"
    return before, after


def planned_step(
    method, built: tuple, knobs, *, pooling: str | None = None, graded: str | None = None, starts_as_base=None
):
    """built = (model, task, batch), as tiny_model returns them: the backbone copied (backbone_of), the model prepared
    as planned, one_step -> (prepared model in eval mode, batch, backbone). starts_as_base: a tolerance (atol = rtol)
    within which the prepared model's logits equal the base model's before the step (methods that start as the
    identity)."""
    model, task, batch = built
    backbone = backbone_of(model)
    if starts_as_base is not None:
        with torch.no_grad():
            base_logits = model(**inputs_of(batch)).logits
    prepared = planned(method, model, task, knobs, pooling)
    if starts_as_base is not None:
        with torch.no_grad():
            logits = prepared(**inputs_of(batch)).logits
        torch.testing.assert_close(logits, base_logits, atol=starts_as_base, rtol=starts_as_base)
    one_step(prepared, batch, graded=graded)
    return prepared, batch, backbone


# --- saved and reloaded -------------------------------------------------------------------------------------------


def load_backbone(fresh, backbone: dict):
    """The pretrained backbone loaded into `fresh`, a base with another random head -> fresh. Every key loads, and
    only the head's are missing: only an adapter folder's saved copy can bring the trained head back."""
    keys = fresh.load_state_dict(backbone, strict=False)
    assert keys.unexpected_keys == [], keys.unexpected_keys[:3]
    head = anatomy(fresh).head
    assert keys.missing_keys and all(n.split(".")[0] in head for n in keys.missing_keys), keys.missing_keys[
        :3
    ]
    return fresh


def reload_adapter(trained, batch: dict, backbone: dict, fresh, folder, *, stats_apart: bool = False):
    """trained.save_pretrained(folder), the backbone into `fresh` (load_backbone; its logits then differ from the
    trained model's), PeftModel.from_pretrained -> the reloaded model in eval mode.

    stats_apart (the CNNs): the train-mode step moved BatchNorm's running statistics, buffers PEFT never saves
    (adapters + modules_to_save only), so the reload computes other logits until they are brought over, as done here
    (PEFT's own vision tests save "normalization" whole for this reason)."""
    from peft import PeftModel

    inputs = inputs_of(batch)
    trained.save_pretrained(folder)
    load_backbone(fresh, backbone)
    with torch.no_grad():
        assert not torch.equal(fresh(**inputs).logits, trained(**inputs).logits)
    reloaded = PeftModel.from_pretrained(fresh, folder).eval()
    if stats_apart:
        with torch.no_grad():
            assert not torch.equal(trained(**inputs).logits, reloaded(**inputs).logits)
        stats = dict(trained.named_buffers())
        for name, buf in reloaded.named_buffers():
            buf.copy_(stats[name])
    return reloaded


def same_logits(trained, reloaded, batch: dict) -> None:
    """The reloaded model's logits (4 inputs × 5 classes) are the trained model's, bit for bit."""
    inputs = inputs_of(batch)
    with torch.no_grad():
        want, got = trained(**inputs).logits, reloaded(**inputs).logits
    assert want.shape == (4, 5)
    torch.testing.assert_close(got, want, atol=0, rtol=0)


def reloads_the_same(trained, batch: dict, backbone: dict, fresh, folder, *, stats_apart: bool = False):
    """reload_adapter, then same_logits -> the reloaded model."""
    reloaded = reload_adapter(trained, batch, backbone, fresh, folder, stats_apart=stats_apart)
    same_logits(trained, reloaded, batch)
    return reloaded


# --- refusals -------------------------------------------------------------------------------------------------------


def refused(match: str | None, call, *args, **kwargs) -> str:
    """call(*args, **kwargs) raises BadInput, its message matching `match` (re.search, as pytest.raises; None: any)
    and one line -> the message."""
    with pytest.raises(BadInput, match=match) as e:
        call(*args, **kwargs)
    text = str(e.value)
    assert "\n" not in text, text
    return text


def prepare_tiny(method, family: str, knobs, total_steps: int = 0):
    """method.prepare (a methods module or its METHOD) on a fresh tiny_model(family) -> the prepared model."""
    model, task, _ = tiny_model(family)
    return method.prepare(model, anatomy(model), knobs, Context(task, total_steps=total_steps))
