"""Frozen-prefix cache: run the frozen front of a model once, keep what enters its first trainable block, train the rest.

`plan_prefix(model, anatomy, probe)` finds the cut, `prefix_inputs(memo, plan, enc, ...)` builds or reuses the cache,
`with skip_prefix(plan) as fwd:` makes the model read it (`train(..., forward=fwd.loss)`, `evaluate(..., forward=fwd.logits)`).
For `head`, `plan_head_cut` + `head_features` go one step further: the head's own input per sample, for train/fast.py.

How: the input of block k (the first block with a trainable parameter; k = n when only the head trains) is captured
once per sample by a forward pre-hook, in eval mode under inference_mode, and the forward is aborted there. At train
time the module whose output enters block 0 (BERT's embeddings, ViT's embeddings, CLIP's pre-layernorm, MobileNetV2's
conv_stem, ResNet's embedder) is stubbed to return the cached activations of the batch, padded to the batch's length,
and blocks 0..k-1 pass their input through, so the model's own forward runs the trainable tail unchanged: attention
masks, final norms, pooling, the head, dropout in the tail. What changes: dropout inside the frozen prefix is off and
BatchNorm there uses its running statistics, as in eval mode. A probe batch checks the cut on every model (cached
logits must equal the full model's); where it does not hold, training runs uncached.

The cache is keyed by a hash of the encoded inputs (token ids / pixels: covers data, tokenizer, max_length and image
size), of the prefix's parameters, buffers, module types and config, and the block index: a cached tensor is never
reused for another model, preprocessing or data. It lives in `memo` (one dict per process, shared by the runs of a
`compare` grid), in RAM up to `budget_mb` and in memory-mapped files beyond that.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from peftlab import disk
from peftlab.errors import BadInput
from peftlab.train.encode import Encoded, eval_batches

PREFIX_KEY = "_prefix"  # the batch key that carries cached activations into the stubbed model
STORE_KEY = ("prefix-cache",)  # where the CacheStore lives in `memo`
SPILL_PREFIX = "peftlab-cache-"  # + pid: spilled activations of one process, in the temp folder


@dataclass
class Plan:
    """Where to cut one model: blocks[:block] are skipped, `entry` returns the cached input of blocks[block]."""

    base: nn.Module  # the model that holds the blocks (PEFT's base model for a PeftModel)
    blocks: list[str]  # qualified block names of `base`, forward order
    block: int  # k: first block with a trainable parameter; len(blocks) when only the head trains
    entry: str  # qualified name of the module whose output enters blocks[0]
    ragged: bool  # text: activations (B, T, H), stored per token row; images: a fixed shape per sample
    prefix_modules: list[str]  # outermost modules run before blocks[0] (hashed into the key)
    signature: str  # backbone config + module types: the architecture part of the key
    # prefix_keys' answers: the prefix is frozen, so its weights are hashed once per run (MiniLM-L6's 22.7M
    # parameters: ~90 MB of SHA-1, ~50 ms here), not once per split
    keys: dict = field(default_factory=dict, repr=False)


@dataclass
class Activations:
    """Cached inputs of one block for every sample of one Encoded."""

    # text: (R, H) with R = sum of lengths, sample i at rows offsets[i]:offsets[i+1]; images: (N, ...)
    data: torch.Tensor
    offsets: np.ndarray | None  # text: (N + 1,) row offsets; images: None (row i is sample i)
    on_disk: bool  # True: data is a memory-mapped file beyond the RAM budget

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def gather(self, idx: list[int], t_max: int | None) -> torch.Tensor:
        """Activations for a batch: text (B, t_max, H), zero-padded past each sample's length; images (B, ...)."""
        if self.offsets is None:
            return self.data[torch.as_tensor(idx)]
        out = torch.zeros((len(idx), t_max, *self.data.shape[1:]), dtype=self.data.dtype)
        for row, i in enumerate(idx):
            start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
            out[row, : stop - start] = self.data[start:stop]
        return out


@dataclass
class CacheStore:
    """Every cached block input of this process, with the RAM they hold and the folder of spilled files."""

    entries: dict = field(default_factory=dict)  # key -> Activations
    ram_bytes: int = 0
    spill_dir: str | None = None
    builds: int = 0  # capture passes run (tests and the bench read it)

    def spill_path(self, name: str) -> str:
        if self.spill_dir is None:
            # peftlab-cache-<pid>-xxxx: removed with the store / at exit, and by the next process if this one is killed
            disk.sweep_stale(Path(tempfile.gettempdir()), SPILL_PREFIX)
            self.spill_dir = tempfile.mkdtemp(prefix=disk.temp_name(SPILL_PREFIX) + "-")
            weakref.finalize(self, shutil.rmtree, self.spill_dir, True)
        return f"{self.spill_dir}/{name}.f32"


def cache_store(memo: dict) -> CacheStore:
    return memo.setdefault(STORE_KEY, CacheStore())


class CachedEncoded:
    """An Encoded whose batches also carry the cached block input (`PREFIX_KEY`); same lengths, same batches."""

    def __init__(self, enc: Encoded, acts: Activations):
        self.enc, self.acts = enc, acts
        self.task, self.labels, self.input_ids = enc.task, enc.labels, enc.input_ids

    def __len__(self) -> int:
        return len(self.enc)

    def lengths(self) -> np.ndarray:
        return self.enc.lengths()

    def collate(self, idx: list[int], with_labels: bool = True) -> dict:
        batch = self.enc.collate(idx, with_labels)
        t_max = batch["input_ids"].shape[1] if "input_ids" in batch else None
        batch[PREFIX_KEY] = self.acts.gather(idx, t_max)
        return batch


# --- planning ------------------------------------------------------------------------------------------------


class _Stop(Exception):
    """Raised by a capture hook: everything after the captured block is not needed."""


def _base(model: nn.Module) -> nn.Module:
    # PeftModel: the wrapped model, LoRA layers injected in place
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def _first_tensor(args: tuple, kwargs: dict) -> torch.Tensor | None:
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    for key in ("hidden_states", "hidden_state", "input", "inputs_embeds"):
        if isinstance(kwargs.get(key), torch.Tensor):
            return kwargs[key]
    return None


def _subset(enc: Encoded, n: int) -> Encoded:
    """The first n samples of enc, as an Encoded of their own (the probe)."""
    ids, tts = enc.input_ids, enc.token_type_ids
    return Encoded(
        enc.task,
        enc.labels[:n],
        input_ids=ids[:n] if ids is not None else None,
        token_type_ids=tts[:n] if tts is not None else None,
        pad_id=enc.pad_id,
        pixel_values=enc.pixel_values[:n] if enc.pixel_values is not None else None,
    )


def _trains_outside(model: nn.Module, base: nn.Module) -> bool:
    """Trainable parameters outside the base model (prompt learning's virtual tokens enter at the embeddings): every
    block then depends on them, so no prefix is frozen."""
    inside = {id(p) for p in base.parameters()}
    return any(p.requires_grad and id(p) not in inside for p in model.parameters())


def plan_prefix(model: nn.Module, anat, probe: Encoded, log=lambda msg: None) -> Plan | None:
    """The cut for this prepared model, or None when nothing in front of a trainable block can be skipped (lora and full
    with their defaults train block 0) or the probe shows the cut does not reproduce the full model's output."""
    base = _base(model)
    blocks = list(anat.blocks)
    if not blocks or _trains_outside(model, base):
        return None
    modules = dict(base.named_modules())
    trainable = [i for i, name in enumerate(blocks) if _trainable(modules[name])]
    k = trainable[0] if trainable else len(blocks)
    if k == 0:
        return None

    # One probe forward in eval mode: the order modules run in, what enters block 0 and which module made it.
    started, finished, seen = [], [], {}
    block0 = modules[blocks[0]]
    handles = []

    def pre(name):
        def hook(module, args, kwargs):
            started.append(name)
            if module is block0 and "block0_in" not in seen:
                seen["block0_in"] = _first_tensor(args, kwargs)
                seen["finished_before"] = list(finished)

        return hook

    def post(name):
        def hook(module, args, kwargs, output):
            finished.append((name, output))

        return hook

    for name, module in modules.items():
        if name:
            handles.append(module.register_forward_pre_hook(pre(name), with_kwargs=True))
            handles.append(module.register_forward_hook(post(name), with_kwargs=True))
    probe = _subset(probe, 4)
    every = list(range(len(probe)))
    batch = probe.collate(every, with_labels=False)
    was_training = base.training
    base.eval()
    try:
        with torch.inference_mode():
            ref = model(**batch).logits  # (B, K) of the uncut model
    finally:
        for h in handles:
            h.remove()
        base.train(was_training)

    why = _check_cut(base, blocks, k, seen, started, finished, batch)
    if isinstance(why, str):
        log(f"frozen-prefix cache off: {why}")
        return None
    entry, prefix_modules = why
    plan = Plan(
        base=base,
        blocks=blocks,
        block=k,
        entry=entry,
        ragged="input_ids" in batch,
        prefix_modules=prefix_modules,
        signature=_signature(base, anat, prefix_modules, blocks),
    )
    # The proof on this model: the cut model fed the captured block-k input must give the full model's logits.
    acts = _capture(plan, probe, [k], batch_size=len(every))[k]
    with torch.inference_mode(), skip_prefix(plan) as fwd:
        base.eval()
        try:
            got = fwd.logits(model, CachedEncoded(probe, acts).collate(every, with_labels=False))
        finally:
            base.train(was_training)
    if not torch.allclose(got, ref, rtol=1e-4, atol=1e-5):
        err = (got - ref).abs().max().item()
        log(f"frozen-prefix cache off: the cut model's logits differ from the full model's by {err:.2e}")
        return None
    return plan


def _check_cut(base, blocks, k, seen, started, finished, batch):
    """(entry, prefix modules) when the cut is safe, else a reason string."""
    block0_in = seen.get("block0_in")
    if block0_in is None:
        return f"{blocks[0]} did not receive a tensor"
    entry = next((name for name, out in reversed(seen["finished_before"]) if out is block0_in), None)
    if entry is None:
        return f"the input of {blocks[0]} is not the output of one module (computed in the model's forward)"
    if "input_ids" in batch and tuple(block0_in.shape[:2]) != tuple(batch["input_ids"].shape):
        return f"{blocks[0]} input {tuple(block0_in.shape)} is not (batch, tokens, ...)"
    modules = dict(base.named_modules())
    before = started[: started.index(blocks[0])]
    ancestors = {blocks[0].rsplit(".", i)[0] for i in range(1, blocks[0].count(".") + 1)}
    prefix = [n for n in before if n not in ancestors]
    outermost = [n for n in prefix if not any(n.startswith(o + ".") for o in prefix if o != n)]
    if any(_trainable(modules[n]) for n in outermost):
        return "a module run before the first block trains"
    outputs = dict(finished)
    for name in blocks[:k]:
        if not isinstance(outputs.get(name), torch.Tensor):
            return f"{name} does not return a single tensor"
    return entry, outermost


def _signature(base: nn.Module, anat, prefix_modules: list[str], blocks: list[str]) -> str:
    """Architecture facts the activations depend on besides the weights: backbone config, module types."""
    backbone = base.get_submodule(anat.backbone) if anat.backbone else base
    config = getattr(backbone, "config", None) or getattr(base, "config", None)
    text = config.to_json_string(use_diff=False) if config is not None else ""
    attn = getattr(config, "_attn_implementation", None)
    types = [f"{n}:{type(base.get_submodule(n)).__name__}" for n in prefix_modules + blocks]
    return hashlib.sha1(f"{text}|{attn}|{types}".encode()).hexdigest()


# --- keys ------------------------------------------------------------------------------------------------------


def _hash_tensors(h, module: nn.Module) -> None:
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        arr = t.detach().cpu().contiguous().numpy() if t.dtype != torch.bfloat16 else t.float().numpy()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(arr.reshape(-1).view(np.uint8))


def inputs_fingerprint(enc: Encoded) -> str:
    """A hash of what the model reads for every sample (ids, token types, pixels) and of the labels' count."""
    cached = getattr(enc, "_fingerprint", None)
    if cached is not None:
        return cached
    h = hashlib.sha1(f"{enc.task}|{len(enc)}|{enc.pad_id}".encode())
    if enc.input_ids is not None:
        h.update(enc.lengths().tobytes())
        h.update(torch.cat(enc.input_ids).numpy().tobytes())
        if enc.token_type_ids is not None:
            h.update(torch.cat(enc.token_type_ids).numpy().tobytes())
    else:
        h.update(str(tuple(enc.pixel_values.shape)).encode())
        h.update(enc.pixel_values.contiguous().numpy().reshape(-1).view(np.uint8))
    enc._fingerprint = h.hexdigest()  # encodings are never modified after `encode`
    return enc._fingerprint


def prefix_keys(plan: Plan, points: list[int]) -> dict[int, str]:
    """point -> hash of everything the input of blocks[point] depends on, in eval mode: prefix weights + architecture."""
    memo_key = tuple(sorted(points))
    if memo_key not in plan.keys:
        plan.keys[memo_key] = _prefix_keys(plan, points)
    return plan.keys[memo_key]


def _prefix_keys(plan: Plan, points: list[int]) -> dict[int, str]:
    h = hashlib.sha1(f"eval|{plan.signature}|{plan.entry}".encode())
    for name in plan.prefix_modules:
        _hash_tensors(h, plan.base.get_submodule(name))
    keys, done = {}, 0
    for p in sorted(points):
        for name in plan.blocks[done:p]:
            _hash_tensors(h, plan.base.get_submodule(name))
        done = p
        keys[p] = h.copy().hexdigest()
    return keys


# --- capture ---------------------------------------------------------------------------------------------------


def _capture(
    plan: Plan,
    enc: Encoded,
    points: list[int],
    batch_size: int,
    allocate=None,
) -> dict[int, Activations | None]:
    """Run the prefix over every sample of enc (eval mode, inference_mode) and keep the input of blocks[p] for each p in points."""
    allocate = allocate or (lambda p, shape: (torch.empty(shape), False))
    modules = dict(plan.base.named_modules())
    n, last = len(plan.blocks), max(points)
    lengths = enc.lengths()
    offsets = np.concatenate([[0], np.cumsum(lengths)]) if plan.ragged else None
    out: dict[int, Activations | None] = {}
    current: dict = {}

    def keep(p: int, hidden: torch.Tensor) -> None:
        if p not in out:
            feat = tuple(hidden.shape[2:] if plan.ragged else hidden.shape[1:])
            rows = int(offsets[-1]) if plan.ragged else len(enc)
            data, on_disk = allocate(p, (rows, *feat))
            out[p] = Activations(data, offsets, on_disk) if data is not None else None
        data, idx = (out[p].data if out[p] is not None else None), current["idx"]
        if data is None:
            pass  # an optional point that did not fit in RAM
        elif plan.ragged:  # (B, T_b, H): sample i's first lengths[i] rows
            for row, i in enumerate(idx):
                data[offsets[i] : offsets[i + 1]] = hidden[row, : lengths[i]]
        else:
            data[torch.as_tensor(idx)] = hidden
        if p == last:
            raise _Stop

    handles = []
    for p in points:
        if p < n:
            hook = lambda m, a, kw, p=p: keep(p, _first_tensor(a, kw))  # noqa: E731
            handles.append(modules[plan.blocks[p]].register_forward_pre_hook(hook, with_kwargs=True))
        else:
            hook = lambda m, a, o, p=p: keep(p, o)  # noqa: E731  (the output of the last block)
            handles.append(modules[plan.blocks[-1]].register_forward_hook(hook))
    model = plan.base
    was_training = model.training
    model.eval()  # dropout off, BatchNorm on running statistics: the prefix's eval-mode function
    try:
        with torch.inference_mode():
            for idx in eval_batches(enc, batch_size):  # longest first: almost no padding
                current["idx"] = idx
                batch = enc.collate(current["idx"], with_labels=False)
                with contextlib.suppress(_Stop):
                    model(**batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return out


def prefix_inputs(
    memo: dict,
    plan: Plan,
    enc: Encoded,
    *,
    budget_mb: float,
    batch_size: int = 64,
    log=lambda msg: None,
) -> tuple[CachedEncoded, dict]:
    """`enc` with the cached input of blocks[plan.block] attached: from `memo` when this prefix already ran on these
    inputs, else captured now (with the neighbouring head / last-layer cut in the same pass when it fits in RAM)."""
    store = cache_store(memo)
    n, k = len(plan.blocks), plan.block
    wanted = [k] if k < n - 1 else [n - 1, n]  # head and last-layer share one pass over the prefix
    keys = prefix_keys(plan, wanted)
    data_key = inputs_fingerprint(enc)
    key = ("acts", data_key, keys[k], k)
    info = {"block": k, "entry": plan.entry, "hit": key in store.entries}
    if not info["hit"]:
        budget = budget_mb * 2**20
        todo = [p for p in wanted if ("acts", data_key, keys[p], p) not in store.entries]

        def allocate(p: int, shape: tuple) -> tuple[torch.Tensor | None, bool]:
            nbytes = int(np.prod(shape)) * 4  # float32
            if store.ram_bytes + nbytes <= budget:
                store.ram_bytes += nbytes
                return torch.empty(shape), False
            if p != k:
                return None, False  # the neighbouring cut is a bonus: never spilled
            path = store.spill_path(f"{data_key[:12]}-{keys[p][:12]}-{p}")
            try:
                # the whole file now: a full disk is an error here, not a SIGBUS later
                disk.reserve(path, nbytes)
            except OSError as e:
                raise BadInput(f"--cache-budget-mb {budget_mb:g}: the frozen-prefix cache needs {nbytes / 2**20:,.0f} "
                               f"MiB more on disk in {store.spill_dir} ({e.strerror}); raise --cache-budget-mb, set "
                               "TMPDIR to a disk with room, or free some space") from None  # fmt: skip
            mm = np.memmap(path, dtype=np.float32, mode="r+", shape=shape)
            return torch.from_numpy(mm), True

        captured = _capture(plan, enc, todo, batch_size, allocate)
        store.builds += 1
        for p, acts in captured.items():
            if acts is not None:
                store.entries[("acts", data_key, keys[p], p)] = acts
        log(
            f"cached the input of block {k} of {n} for {len(enc)} samples "
            f"({captured[k].nbytes / 2**20:.0f} MiB{', on disk' if captured[k].on_disk else ''})"
        )
    acts = store.entries[key]
    info.update(mb=round(acts.nbytes / 2**20, 1), on_disk=acts.on_disk)
    return CachedEncoded(enc, acts), info


# --- the cut model ---------------------------------------------------------------------------------------------


@dataclass
class CutForward:
    """Forward functions for batches of a CachedEncoded, valid inside `skip_prefix`."""

    slot: list  # [activations of the current batch]

    def _run(self, model, batch: dict):
        batch = dict(batch)
        self.slot[0] = batch.pop(PREFIX_KEY)
        try:
            return model(**batch)
        finally:
            self.slot[0] = None

    def loss(self, model, batch: dict) -> torch.Tensor:
        return self._run(model, batch).loss

    def logits(self, model, batch: dict) -> torch.Tensor:
        return self._run(model, batch).logits


@contextlib.contextmanager
def skip_prefix(plan: Plan):
    """Inside: the entry module returns the batch's cached activations and blocks[:k] pass them on. Restored after,
    so saving and any later forward see the real model."""
    slot: list = [None]
    modules = dict(plan.base.named_modules())
    patched = [modules[plan.entry]] + [modules[name] for name in plan.blocks[: plan.block]]

    def entry_stub(*args, **kwargs):
        return slot[0]

    def passthrough(*args, **kwargs):
        return _first_tensor(args, kwargs)

    modules[plan.entry].forward = entry_stub
    for m in patched[1:]:
        m.forward = passthrough
    try:
        yield CutForward(slot)
    finally:
        for m in patched:
            del m.forward  # back to the class's forward


# --- `head`: one step further, the classifier's own input ---------------------------------------------------------


@dataclass
class HeadCut:
    """When only the head trains, its eval-mode input per sample is fixed too: train/fast.py trains the model's own
    head module on those features (Dropout(p) first, where the model applies one to them in train mode)."""

    name: str  # the head module's qualified name in the model
    module: nn.Module  # the model's own head: it trains in place, so saving and evaluation see it
    dropout: float  # p of the Dropout between the features and the head in train mode (0: none)


class DropThenHead(nn.Module):
    """features (B, ...) -> Dropout(p) -> the model's head -> logits (B, K): the model's train-mode tail."""

    def __init__(self, cut: HeadCut):
        super().__init__()
        self.drop, self.head = nn.Dropout(cut.dropout), cut.module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(x))


def _tail_capture(
    model: nn.Module, plan: Plan, fwd: CutForward, head_name: str, batch: dict, train_mode: bool
):
    """One cut forward (inside skip_prefix, whose `fwd` it is) -> (head input, logits, loss, [(name, module, input,
    output)] of every module outside the head that ran after the prefix, in order). train_mode: as the loop runs it."""
    from peftlab.train.loop import freeze_norm_statistics

    ran, seen = [], {}
    handles = []
    head = model.get_submodule(head_name)
    handles.append(head.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0])))
    skip = {head_name, plan.entry, *plan.blocks}
    inputs = {}  # module -> a copy of its input, taken before it runs (MobileNetV2's Dropout works in place)
    for name, module in model.named_modules():
        if name and not any(name == s or name.startswith(s + ".") for s in skip):
            keep = lambda m, a: inputs.__setitem__(m, a[0].clone() if a and torch.is_tensor(a[0]) else None)  # noqa: E731
            hook = lambda m, a, o, name=name: ran.append((name, m, inputs.get(m), o))  # noqa: E731
            handles.append(module.register_forward_pre_hook(keep))
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.train(train_mode)
    if train_mode:
        freeze_norm_statistics(model)
    try:
        with torch.no_grad():
            out = fwd._run(model, batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return seen.get("x"), out.logits, getattr(out, "loss", None), ran


def plan_head_cut(model: nn.Module, anat, plan: Plan, fwd: CutForward, probe: CachedEncoded,
                  log=lambda msg: None) -> HeadCut | None:  # fmt: skip
    """The head cut for `head` (plan.block == n: only the head trains), or None with the reason logged; called inside
    skip_prefix(plan) (`fwd`). A probe batch proves it on this model: the head on the captured input gives the model's
    logits; the model's loss is plain cross-entropy; in train mode the head's input is the eval-mode one, or one
    Dropout of it and nothing else."""
    if plan.block != len(plan.blocks) or len(anat.head) != 1:
        return None
    name = anat.head[0]
    head = model.get_submodule(name)
    if any(p.requires_grad for n, p in model.named_parameters() if not n.startswith(name + ".")):
        return None  # something besides the head trains
    every = list(range(min(4, len(probe))))
    batch = probe.collate(every)
    x_eval, logits, loss, _ = _tail_capture(model, plan, fwd, name, batch, train_mode=False)
    if not isinstance(x_eval, torch.Tensor) or (plan.ragged and x_eval.dim() > 2):
        log("head cut off: the head reads per-token states, not one vector per sample")
        return None
    with torch.no_grad():
        head.eval()
        direct = head(x_eval)
        ce = nn.functional.cross_entropy(logits, batch["labels"])
    if not torch.allclose(direct, logits, rtol=1e-4, atol=1e-5):
        log("head cut off: the model changes the head's output before returning it")
        return None
    if loss is None or not torch.allclose(loss, ce, rtol=1e-4, atol=1e-6):
        log("head cut off: the model's loss is not cross-entropy on its logits")
        return None
    x_train, _, _, ran = _tail_capture(model, plan, fwd, name, batch, train_mode=True)
    drops = [(n, m, i, o) for n, m, i, o in ran if isinstance(m, nn.Dropout) and m.p > 0]
    if not drops and torch.allclose(x_train, x_eval, rtol=1e-5, atol=1e-6):
        return HeadCut(name, head, 0.0)
    if (
        len(drops) == 1
        and drops[0][3] is x_train
        and torch.allclose(drops[0][2], x_eval, rtol=1e-5, atol=1e-6)
    ):
        return HeadCut(name, head, float(drops[0][1].p))
    log("head cut off: in train mode the head's input is more than one Dropout of its eval-mode input")
    return None


def head_features_key(plan: Plan, cut: HeadCut) -> str:
    """A hash of what the head's input depends on besides the cached activations: the frozen modules between the last
    block and the head (a pooler, MobileNetV2's last 1x1 convolution, a final norm), and where the cut is."""
    names = {id(m): n for n, m in plan.base.named_modules()}
    head = names.get(id(cut.module), cut.name)  # the head's name inside the base model
    skip = [plan.entry, *plan.prefix_modules, *plan.blocks, head]  # hashed by the prefix key, or trained
    h = hashlib.sha1(f"head-cut|{plan.signature}|{head}".encode())
    for name, t in list(plan.base.named_parameters()) + list(plan.base.named_buffers()):
        if not any(name.startswith(s + ".") for s in skip):
            h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
            h.update(t.detach().float().contiguous().numpy().reshape(-1).view(np.uint8))
    return h.hexdigest()


def head_features(
    model: nn.Module, fwd: CutForward, cut: HeadCut, cached: CachedEncoded, batch_size: int = 256
):
    """(N, ...) float32: the head's eval-mode input for every sample of `cached`, inside skip_prefix (`fwd`)."""
    rows: dict = {}

    def grab(module, args):
        rows["x"] = args[0]
        raise _Stop  # the head itself is not needed

    handle = cut.module.register_forward_pre_hook(grab)
    was_training = model.training
    model.eval()
    out = None
    try:
        with torch.inference_mode():
            for idx in eval_batches(cached, batch_size):
                with contextlib.suppress(_Stop):
                    fwd._run(model, cached.collate(idx, with_labels=False))
                if out is None:
                    out = torch.empty((len(cached), *rows["x"].shape[1:]))
                out[torch.as_tensor(idx)] = rows["x"].float()
    finally:
        handle.remove()
        model.train(was_training)
    return out.contiguous()
