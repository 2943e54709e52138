"""Seconds from FLOPs on this machine: every product of a step (flops/graph.py ops) timed once at the run's shapes,
forward and each backward product it needs; elementwise work, the optimiser and the loop per element or per call.
Measurements are cached per machine, thread count and library versions (platformdirs' user cache dir), so a later plan
on the same machine reuses them; named accelerators use their peak specs instead (plan/accelerators.py).

`Calibration()` holds the table; `step_seconds(cal, graph, batch, tokens)` -> (forward s, backward s, overhead s).
Shapes are bucketed (batch and tokens rounded to steps of 2^(1/4), ~19%) and times scaled by the FLOP ratio to the
bucket, so a text run with many padded lengths needs a few measurements per product, not one per batch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path

from peftlab.flops.graph import Graph, Op, Poly

CACHE_VERSION = 2
LOOP_S = 0.002  # each timing is the best of 5 loops of about this long
SIZES = tuple(2**i for i in range(10, 23, 2))  # elementwise work and the optimiser: values measured at


def machine() -> dict:
    """What a timing depends on besides the shape: CPU or GPU, threads, library versions."""
    import peft
    import torch
    import transformers

    from peftlab.run import cpu_name

    cpu = cpu_name()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": platform.python_version(),
    }


def _cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("PEFTLAB_CACHE") or user_cache_dir("peftlab")) / "calibration"


def bucket(x: int) -> int:
    """x rounded to a step of 2^(1/4) (1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16, 19, 23, 27, 32, 38, 45, 54, 64, ...)."""
    if x <= 8:
        return max(int(x), 1)
    return round(2 ** (round(4 * math.log2(x)) / 4))


class Calibration:
    """Timings of this machine by key ("linear|m,k,n|fwd" -> seconds), read from and written to the cache file."""

    def __init__(self, *, path: Path | None = None, measure: bool = True, stored: bool = False,
                 fresh: bool = False):  # fmt: skip
        """path None: this machine's cache file. stored: `path` is a table made elsewhere (`--calibration FILE`): its
        machine is the one reported, and nothing is measured (a shape it lacks is bad input). fresh: measure
        everything again (`--recalibrate`; the cache file is replaced)."""
        import torch

        self.machine = machine()
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        digest = hashlib.sha1(json.dumps({**self.machine, "v": CACHE_VERSION}, sort_keys=True).encode())
        self.path = Path(path) if path else _cache_dir() / f"{digest.hexdigest()[:16]}.json"
        self.measure = measure and not stored
        self.stored = stored
        self.table: dict[str, float] = {}
        self._pending: dict = {}  # _both's measurements, by their shared key
        self.new = 0  # keys measured by this process
        self.spent_s = 0.0  # seconds spent measuring
        try:
            if fresh:
                raise OSError("recalibrating")
            data = json.loads(self.path.read_text())
            if stored or data.get("machine") == self.machine:
                self.table = data.get("timings", {})
                self.machine = data.get("machine", self.machine) if stored else self.machine
        except (OSError, ValueError):
            if stored:
                from peftlab.errors import BadInput

                raise BadInput(f"--calibration {path}: not a readable calibration file; leave the flag out to calibrate "
                               "this machine") from None  # fmt: skip

    def get(self, key: str, run) -> float:
        if key not in self.table:
            if self.stored:
                from peftlab.errors import BadInput

                raise BadInput(f"--calibration {self.path}: holds no timing for {key} (another shape or setting); "
                               "leave the flag out to calibrate this machine")  # fmt: skip
            if not self.measure:
                raise KeyError(key)
            t0 = time.perf_counter()
            self.table[key] = float(run())
            self.spent_s += time.perf_counter() - t0
            self.new += 1
        return self.table[key]

    def save(self) -> None:
        """Write the table (atomically: a second process's plan never reads half a file)."""
        if not self.new:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"machine": self.machine, "timings": self.table}, indent=0))
            tmp.replace(self.path)
        except OSError:
            pass  # an unwritable cache only costs the next plan its calibration

    # --- measuring ---------------------------------------------------------------------------------------------

    def _timed(self, fn) -> float:
        """Seconds per call of fn: the best of 5 loops of ~2 ms each (the minimum shrugs off a busy machine's pauses,
        which inflate single timings: what is predicted is this machine undisturbed)."""
        import torch

        sync = torch.cuda.synchronize if self.device == "cuda" else (lambda: None)
        one_call_s(fn, sync)  # warm-up: caches, oneDNN's kernels
        one = min(one_call_s(fn, sync) for _ in range(3))
        if one > 0.05:  # long products (a ViT-B step's matmuls): the best of three calls
            return one
        reps = max(1, min(500, int(LOOP_S / max(one, 1e-7))))
        best = one
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            sync()
            best = min(best, (time.perf_counter() - t0) / reps)
        return best

    def linear(self, m: int, k: int, n: int) -> tuple[float, float, float]:
        """(forward, input-gradient, weight-gradient) seconds of x (m×k) · Wᵀ (k×n) + b."""
        import torch

        def run():
            dev = self.device
            x, w, b = torch.randn(m, k, device=dev), torch.randn(n, k, device=dev), torch.randn(n, device=dev)
            g = torch.randn(m, n, device=dev)
            fwd = self._timed(lambda: torch.addmm(b, x, w.t()))
            dx = self._timed(lambda: torch.mm(g, w))
            dw = self._timed(lambda: torch.mm(g.t(), x))
            return fwd, dx, dw

        return self._triple(f"linear|{m},{k},{n}", run)

    def bmm(self, batch: int, m: int, k: int, n: int) -> tuple[float, float, float]:
        import torch

        def run():
            dev = self.device
            a, b = torch.randn(batch, m, k, device=dev), torch.randn(batch, k, n, device=dev)
            g = torch.randn(batch, m, n, device=dev)
            fwd = self._timed(lambda: torch.bmm(a, b))
            da = self._timed(lambda: torch.bmm(g, b.transpose(1, 2)))
            db = self._timed(lambda: torch.bmm(a.transpose(1, 2), g))
            return fwd, da, db

        return self._triple(f"bmm|{batch},{m},{k},{n}", run)

    def conv(self, n: int, shape: tuple) -> tuple[float, float, float]:
        """Conv2d over n images, channels-last as peftlab runs CNNs: (forward, input-grad, weight-grad) seconds."""
        import torch

        c_in, c_out, k, groups, h, w, stride, ho, wo = shape

        def run():
            dev, cl = self.device, torch.channels_last
            x = torch.randn(n, c_in, h, w, device=dev).to(memory_format=cl)
            wt = torch.randn(c_out, c_in // groups, k, k, device=dev).to(memory_format=cl)
            y = torch.nn.functional.conv2d(x, wt, None, stride, k // 2, 1, groups)
            g = torch.randn_like(y)
            fwd = self._timed(lambda: torch.nn.functional.conv2d(x, wt, None, stride, k // 2, 1, groups))

            def back(mask):
                return lambda: torch.ops.aten.convolution_backward(
                    g, x, wt, None, [stride] * 2, [k // 2] * 2, [1, 1], False, [0, 0], groups, mask
                )

            return fwd, self._timed(back([True, False, False])), self._timed(back([False, True, False]))

        return self._triple(f"conv|{n}|{','.join(map(str, shape))}", run)

    def attention(self, batch: int, heads: int, tq: int, tk: int, d: int, mask: bool) -> tuple[float, float]:
        """Fused SDPA: (forward, backward) seconds."""
        import torch

        def run():
            dev = self.device
            q = torch.randn(batch, heads, tq, d, device=dev, requires_grad=True)
            k = torch.randn(batch, heads, tk, d, device=dev, requires_grad=True)
            v = torch.randn(batch, heads, tk, d, device=dev, requires_grad=True)
            m = torch.ones(batch, 1, tq, tk, dtype=torch.bool, device=dev) if mask else None
            sdpa = torch.nn.functional.scaled_dot_product_attention
            with torch.no_grad():
                fwd = self._timed(lambda: sdpa(q, k, v, attn_mask=m))
            both = self._timed(lambda: sdpa(q, k, v, attn_mask=m).sum().backward())
            return fwd, max(both - fwd, 0.0)

        key = f"attention|{batch},{heads},{tq},{tk},{d},{int(mask)}"
        fwd = self.get(key + "|fwd", lambda: self._both(key, run)[0])
        return fwd, self.get(key + "|bwd", lambda: self._both(key, run)[1])

    def elementwise(self, what: str, numel: int) -> tuple[float, float]:
        """(forward, backward) seconds of one elementwise step over numel values (layer norm, batch norm, GELU,
        dropout masks, adds): measured once per machine at 2^10 .. 2^24 values, interpolated (`_curve`)."""
        import torch

        kind = _ew_kind(what)

        def measure(n: int) -> tuple[float, float]:
            width = min(384, n)
            x = torch.randn(max(n // width, 1), width, device=self.device, requires_grad=True)
            f = _EW[kind]
            with torch.no_grad():
                fwd = self._timed(lambda: f(x))
            both = self._timed(lambda: f(x).sum().backward())
            return fwd, max(both - fwd, 0.0)

        return self._curve(f"ew|{kind}", SIZES, measure, numel)

    def optimizer(self, params: int) -> float:
        """One AdamW step (fused, as train/loop.py) + gradient clipping over `params` trainable values."""
        import torch

        def measure(n: int) -> tuple[float, float]:
            w = torch.nn.Parameter(torch.randn(n, device=self.device))
            w.grad = torch.randn_like(w)
            opt = torch.optim.AdamW([w], lr=1e-4, fused=True)

            def step():
                torch.nn.utils.clip_grad_norm_([w], 1.0)
                opt.step()

            return self._timed(step), 0.0

        return self._curve("optimizer", SIZES, measure, params)[0] if params else 0.0

    def _curve(self, name: str, sizes, measure, n: int) -> tuple[float, float]:
        """A cost over sizes measured once per machine and cleaned of a busy machine's pauses (which only ever add
        time): a smaller size never costs more than a larger one, and a larger one never costs more per value than a
        smaller one; then interpolated linearly, and beyond the grid linear in n."""
        points = []
        for size in sizes:
            f = self.get(
                f"{name}|{size}|fwd", lambda size=size: self._both(f"{name}|{size}", lambda: measure(size))[0]
            )
            b = self.get(
                f"{name}|{size}|bwd", lambda size=size: self._both(f"{name}|{size}", lambda: measure(size))[1]
            )
            points.append((size, f, b))
        out = []
        for part in (1, 2):
            ys = [p[part] for p in points]
            for i in range(1, len(ys)):  # per value, a larger size is never dearer than a smaller one
                ys[i] = min(ys[i], ys[i - 1] * sizes[i] / sizes[i - 1])
            for i in range(len(ys) - 2, -1, -1):  # and a smaller size never dearer in total than a larger one
                ys[i] = min(ys[i], ys[i + 1])
            if n >= sizes[-1]:
                out.append(ys[-1] * n / sizes[-1])
            elif n <= sizes[0]:
                out.append(ys[0])
            else:
                j = next(i for i, size in enumerate(sizes) if size >= n)
                x0, x1 = sizes[j - 1], sizes[j]
                out.append(ys[j - 1] + (ys[j] - ys[j - 1]) * (n - x0) / (x1 - x0))
        return out[0], out[1]

    def per_op(self) -> tuple[float, float]:
        """(forward, backward) seconds of framework work per module call beyond its kernel (Python, dispatch,
        autograd bookkeeping): a chain of 64 tiny Linear layers timed whole."""
        f = self.get("overhead|fwd", lambda: self._overhead()[0])
        return f, self.get("overhead|bwd", lambda: self._overhead()[1])

    def collate(self, batch: int, tokens: int, image: tuple[int, int] | None = None) -> float:
        """Making one batch from encoded data: text padded Python-side to `tokens`; images gathered at `image`."""
        import torch

        from peftlab.train.encode import Encoded

        def run():
            if tokens > 0:
                ids = [torch.randint(3, 100, (tokens,)) for _ in range(batch)]
                enc = Encoded("text-classification", torch.zeros(batch, dtype=torch.long), input_ids=ids)
            else:
                h, w = image or (8, 8)
                enc = Encoded("image-classification", torch.zeros(4 * batch, dtype=torch.long),
                              pixel_values=torch.zeros(4 * batch, 3, h, w))  # fmt: skip
            idx = (
                list(range(0, 4 * batch, 4)) if tokens <= 0 else list(range(batch))
            )  # scattered, as shuffled
            return self._timed(lambda: enc.collate(idx))

        side = f"|{image[0]}x{image[1]}" if tokens <= 0 and image else ""
        return self.get(f"collate|{batch},{tokens}{side}", run)

    def fixed(self) -> tuple[float, float, float, float]:
        """(train set-up, train per step, evaluation set-up, evaluation per batch) seconds that do not depend on the
        model: accelerate, the optimiser and scheduler, the data loader, the loop's own work per step, the metrics;
        timed by running peftlab's loop and evaluation on a two-parameter model over 1 and 41 tiny batches."""
        import torch

        from peftlab.train.encode import Encoded
        from peftlab.train.evaluate import evaluate
        from peftlab.train.loop import train

        class Two(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(torch.zeros(2))

            def forward(self, pixel_values, labels=None):
                logits = pixel_values.flatten(1)[:, :2] * self.w
                loss = torch.nn.functional.cross_entropy(logits, labels) if labels is not None else None
                return type("Out", (), {"loss": loss, "logits": logits})()

        def enc(n: int) -> Encoded:
            return Encoded("image-classification", torch.arange(n) % 2, pixel_values=torch.zeros(n, 3, 2, 2))

        def loop(n: int) -> float:
            return min(train(Two(), enc(n), lr=1e-3, epochs=1, batch_size=2, seed=0, progress=False).train_s
                       for _ in range(3))  # fmt: skip

        def run_train():
            one, many = loop(2), loop(82)
            return one, max((many - one) / 40, 0.0)

        def run_eval():
            model = Two()
            one = self._timed(lambda: evaluate(model, enc(2), 2, ["a", "b"]))
            many = self._timed(lambda: evaluate(model, enc(82), 2, ["a", "b"]))
            return one, max((many - one) / 40, 0.0)

        keys = ("fixed|train", "fixed|train_step", "fixed|eval", "fixed|eval_batch")
        train_set_up = self.get(keys[0], lambda: self._both("fixed|train", run_train)[0])
        train_step = self.get(keys[1], lambda: self._both("fixed|train", run_train)[1])
        eval_set_up = self.get(keys[2], lambda: self._both("fixed|eval", run_eval)[0])
        eval_batch = self.get(keys[3], lambda: self._both("fixed|eval", run_eval)[1])
        return train_set_up, train_step, eval_set_up, eval_batch

    def fast_head(self, batch: int, features: int, labels: int) -> tuple[float, float]:
        """(set-up, per step) seconds of train/fast.py's lean loop training one linear head (features -> labels) on
        index-slice batches from a features table, one thread as `head` runs it: timed over 1 and 41 batches."""
        import torch

        from peftlab.train.fast import fit_heads, hf_schedule

        def loop(steps: int) -> float:
            n = batch * steps
            feats, y = torch.randn(n, features), torch.arange(n) % labels
            # the run's tail as `head` trains it: its dropout (~0.2 ms a step here, a third of a small head's step)
            # then the classifier, on the accelerate loop's schedule
            head = lambda: torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(features, labels))  # noqa: E731
            return min(fit_heads([head()], lambda idx: (feats[idx],), y, epochs=1, lr=1e-3, batch_size=batch,
                                 weight_decay=0.01, warmup_ratio=0.1, max_grad_norm=1.0, seed=0, threads=1,
                                 progress=False, lr_factor=hf_schedule).train_s for _ in range(3))  # fmt: skip

        def run():
            # per step from the 41-batch loop whole (its set-up is a fraction of one step): the difference of the
            # two loops came out at half the per-step cost real runs show
            one, many = loop(1), loop(41)
            per_step = many / 41
            return max(one - per_step, 0.0), per_step

        key = f"fast_head|{batch},{features},{labels}"
        set_up = self.get(f"{key}|set_up", lambda: self._both(key, run)[0])
        return set_up, self.get(f"{key}|step", lambda: self._both(key, run)[1])

    def hashing(self, nbytes: float) -> float:
        """Seconds to SHA-1 `nbytes` of weights: what the frozen-prefix cache's key costs a run (train/cache.py
        prefix_keys hashes the prefix's tensors once per run, cache hit or not). Rate timed on 32 MiB."""
        import hashlib

        import numpy as np

        def run():
            block = np.ones(8 * 2**20, dtype=np.float32)  # 32 MiB
            return 32 * 2**20 / self._timed(lambda: hashlib.sha1(block.view(np.uint8)).digest())

        if self.stored and "sha1|bytes_per_s" not in self.table:
            return 0.0  # a table saved before this was timed: the key's cost left out (tens of ms)
        return nbytes / self.get("sha1|bytes_per_s", run)

    def gather(self, batch: int, tokens: int, width: int) -> float:
        """Reading one batch of cached frozen-prefix activations (train/cache.py): text copies each sample's
        tokens × width rows into a padded batch; images index whole samples of `width` values."""
        import numpy as np
        import torch

        from peftlab.train.cache import Activations

        def run():
            if tokens > 0:
                offsets = np.arange(0, (4 * batch + 1) * tokens, tokens)
                acts = Activations(torch.zeros(4 * batch * tokens, width), offsets, False)
                idx = list(range(0, 4 * batch, 4))
                return self._timed(lambda: acts.gather(idx, tokens))
            acts = Activations(torch.zeros(4 * batch, width), None, False)
            idx = list(range(0, 4 * batch, 4))
            return self._timed(lambda: acts.gather(idx, None))

        return self.get(f"gather|{batch},{tokens},{width}", run)

    # helpers: several numbers from one measurement

    def _triple(self, key: str, run) -> tuple[float, float, float]:
        parts = ("fwd", "dx", "dw")
        if all(f"{key}|{p}" in self.table for p in parts):
            return tuple(self.table[f"{key}|{p}"] for p in parts)
        values = run() if self.measure else tuple(self.get(f"{key}|{p}", None) for p in parts)
        for p, v in zip(parts, values):
            self.get(f"{key}|{p}", lambda v=v: v)
        return tuple(values)

    def _both(self, key: str, run):
        """One measurement answering several keys (forward and backward, set-up and per step): made once."""
        if key not in self._pending:
            self._pending[key] = run()
        return self._pending[key]

    def _overhead(self) -> tuple[float, float]:
        import torch

        def run():
            chain = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(64)]).to(self.device)
            x = torch.randn(1, 4, device=self.device)
            with torch.no_grad():
                fwd = self._timed(lambda: chain(x))
            both = self._timed(lambda: chain(x).sum().backward())
            return fwd / 64, max(both - fwd, 0.0) / 64

        return self._both("overhead", run)


def one_call_s(fn, sync) -> float:
    """Seconds of one call (the first, which also warms caches up)."""
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def _hashed_dropout(x):
    from peftlab.train.dropout import hashed_dropout

    return hashed_dropout(x, 0.1)


_EW = {  # kind -> a representative op over (rows, 384)
    "norm": lambda x: __import__("torch").nn.functional.layer_norm(x, x.shape[-1:]),
    "batchnorm": lambda x: __import__("torch").nn.functional.relu6(
        __import__("torch").nn.functional.batch_norm(x, None, None, training=True)
    ),
    "activation": lambda x: __import__("torch").nn.functional.gelu(x),
    "dropout": _hashed_dropout,
    "softmax": lambda x: x.softmax(-1),
    "add": lambda x: x + x,
}


def _ew_kind(what: str) -> str:
    """An elementwise step's label (flops/ walkers) -> the calibrated kind that costs most like it."""
    if "batchnorm" in what:
        return "batchnorm"
    if "norm" in what or what == "embeddings":
        return "norm"
    if what in ("activation", "tanh"):
        return "activation"
    if "dropout" in what:
        return "dropout"
    if what == "softmax":
        return "softmax"
    return "add"


# --- a step's seconds ------------------------------------------------------------------------------------------------


def op_seconds(cal: Calibration, op: Op, batch: int, tokens: int, *, text_mask: bool) -> tuple[float, float]:
    """(forward, backward) seconds of one op for a batch of `batch` samples of `tokens` tokens: measured at the
    bucketed shape, scaled by the FLOPs of the real shape over the bucket's."""
    b_at = 1 if op.per_step else bucket(batch)
    t_at = tokens if op.per_step or not tokens else bucket(tokens)

    def val(p) -> int:
        return max(int(Poly.of(p).at(t_at)), 1)

    if op.kind == "rnn":  # one fused recurrent kernel: as a product of its rows × (in + h) × gates·h
        rows, fan_in, hidden, gates = op.shape
        f = cal.linear(rows, fan_in + hidden, gates * hidden)[0]
        return f, (2 * f if op.bwd != Poly() else 0.0)
    if op.kind == "linear":
        r, k, n = op.shape
        fwd, dx, dw = cal.linear(val(r) * b_at, k, n)
    elif op.kind == "bmm":
        nb, m, k, n = op.shape
        fwd, dx, dw = cal.bmm(nb * b_at, val(m), val(k), val(n))
        if op.fwd == Poly():  # products only a hand-written backward computes: that many forwards' time
            return 0.0, fwd * op.bwd.at(tokens) / (2 * nb * val(m) * val(k) * val(n))
    elif op.kind == "conv":
        fwd, dx, dw = cal.conv(b_at, op.shape)
    else:  # fused attention
        heads, tq, tk, d, _ = op.shape
        fwd, back = cal.attention(b_at, heads, val(tq), val(tk), d, text_mask)
        dx, dw = back, 0.0
    at = op.fwd.at(t_at) * (1 if op.per_step else b_at)
    scale = op.fwd.at(tokens) * (1 if op.per_step else batch) / at if at else 1.0
    bwd = (dx if op.grads[0] else 0.0) + (dw if op.grads[1] else 0.0)
    return fwd * scale, bwd * scale


# A whole step's products and elementwise work take longer than the same operations timed one by one, each on warm
# caches and as the best of several calls: measured / predicted on `make demo`'s runs on the 2-core machine of
# docs/plan.md, with a fresh calibration and nothing else running: MiniLM-L6 BitFit, IA3, LoRA, last block and full
# fine-tuning 1.30-1.41 (the five within 4% of 1.36); MobileNetV2 LoRA and full 1.5-1.7. The calibration times the
# parts; these factors are the whole step's share that no single part shows.
COMPOSE = {"transformer": 1.36, "cnn": 1.5}


def step_seconds(cal: Calibration, g: Graph, batch: int, tokens: int, *, optimizer_params: int = 0,
                 text: bool = False, image: tuple[int, int] | None = None, cached: int = 0,
                 kind: str | None = None) -> dict:  # fmt: skip
    """Seconds of one pass of graph g over a batch: products (forward, backward), elementwise work, framework
    overhead per call, the optimiser step (training) and making the batch. kind ("transformer" | "cnn") scales the
    products and elementwise work by COMPOSE[kind] (None: the parts as timed)."""
    fwd = bwd = 0.0
    for op in g.ops:
        f, b = op_seconds(cal, op, batch, tokens, text_mask=text)
        fwd, bwd = fwd + f, bwd + b
    ew_f = ew_b = 0.0
    for what, numel, backward in g.elementwise:
        f, b = cal.elementwise(what, int(numel.at(tokens)) * batch)
        ew_f += f
        ew_b += b if backward else 0.0
    calls = len(g.ops) + len(g.elementwise)
    per_f, per_b = cal.per_op()
    backward_calls = sum(1 for op in g.ops if op.bwd != Poly()) + sum(1 for e in g.elementwise if e[2])
    collate = cal.collate(bucket(batch), bucket(tokens) if text else 0, image)
    if cached:  # the batch's cached block inputs (`cached` values per token, or per image)
        collate += cal.gather(bucket(batch), bucket(tokens) if text else 0, cached)
    _, train_step, _, eval_batch = cal.fixed()
    overhead = calls * per_f + backward_calls * per_b + collate + (train_step if g.training else eval_batch)
    opt = cal.optimizer(optimizer_params) if g.training and optimizer_params else 0.0
    c = COMPOSE.get(kind, 1.0) if kind else 1.0
    fwd, bwd, ew_f, ew_b = c * fwd, c * bwd, c * ew_f, c * ew_b
    return {"products_fwd": fwd, "products_bwd": bwd, "elementwise": ew_f + ew_b, "overhead": overhead,
            "optimizer": opt, "total": fwd + bwd + ew_f + ew_b + overhead + opt}  # fmt: skip
