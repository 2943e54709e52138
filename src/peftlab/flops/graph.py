"""A training step as a list of matmuls: each op's forward and backward FLOPs, built by walking the model's layers.

Family modules (flops/transformer.py, flops/cnn.py) call `Graph.linear / conv / matmul / attention / ew` in the order
the model runs them; every call knows whether its inputs need a gradient, so the backward of each op counts exactly the
products autograd computes: the input's gradient when the input needs one, the weight's when the weight trains.

FLOPs are counted as torch.utils.flop_counter.FlopCounterMode counts them: 2·m·k·n per (m×k)·(k×n) product (mm, addmm,
bmm), 2·N·Ho·Wo·C_out·(C_in/g)·kh·kw per convolution, 4·B·h·Tq·Tk·d per attention forward and, for a fused attention
kernel, 10·B·h·Tq·Tk·d backward (scores recomputed, then all three gradients); elementwise work counts 0.
Counts are per sample as polynomials in the tokens per sample T (`Poly`), or per step for ops that do not grow with
the batch (an adapter building its weight).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

# --- integer polynomials in T ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Poly:
    """c[0] + c[1]·T + c[2]·T² (T: tokens per sample; images have constant counts)."""

    c: tuple[int, ...] = (0,)

    @staticmethod
    def of(x) -> Poly:
        return x if isinstance(x, Poly) else Poly((int(x),))

    def _trim(self) -> Poly:
        c = list(self.c)
        while len(c) > 1 and c[-1] == 0:
            c.pop()
        return Poly(tuple(c))

    def __add__(self, other) -> Poly:
        o = Poly.of(other)
        n = max(len(self.c), len(o.c))
        a, b = self.c + (0,) * (n - len(self.c)), o.c + (0,) * (n - len(o.c))
        return Poly(tuple(x + y for x, y in zip(a, b)))._trim()

    __radd__ = __add__

    def __mul__(self, other) -> Poly:
        o = Poly.of(other)
        out = [0] * (len(self.c) + len(o.c) - 1)
        for i, x in enumerate(self.c):
            for j, y in enumerate(o.c):
                out[i + j] += x * y
        return Poly(tuple(out))._trim()

    __rmul__ = __mul__

    def at(self, t: float) -> float:
        return sum(x * t**i for i, x in enumerate(self.c))

    @property
    def constant(self) -> bool:
        return len(self._trim().c) == 1

    def __str__(self) -> str:
        terms = []
        for i in reversed(range(len(self.c))):
            x = self.c[i]
            if x == 0:
                continue
            sym = {0: "", 1: "·T", 2: "·T²"}.get(i, f"·T^{i}")
            terms.append(f"{x:,}{sym}")
        return " + ".join(terms) or "0"


T = Poly((0, 1))  # the tokens of one sample (text: its padded length)


@dataclass(frozen=True)
class Dim:
    """A size that may grow with T, with the text formulas show for it: T, (T+20), 197."""

    value: Poly
    text: str

    @staticmethod
    def of(x) -> Dim:
        return x if isinstance(x, Dim) else Dim(Poly.of(x), str(x))

    def __add__(self, n: int) -> Dim:
        return Dim(self.value + n, f"({self.text}+{n})") if n else self


TOKENS = Dim(T, "T")


# --- activations and ops --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Act:
    """One tensor of the forward pass: does it need a gradient (requires_grad), its size per sample (elements)."""

    rg: bool
    numel: Poly = field(default_factory=Poly)
    per_step: bool = False  # a weight-sized tensor (does not grow with the batch)


@dataclass
class Op:
    """One counted product. fwd / bwd: FLOPs per sample (Poly in T), or per step when `per_step`."""

    name: str  # the layer (or adapter part) it belongs to
    component: str  # breakdown line
    block: int | None
    kind: str  # "linear" | "conv" | "bmm" | "attention"
    fwd: Poly
    bwd: Poly
    expr: str  # the forward count as arithmetic, with T: "2×T×384×384"
    per_step: bool = False
    # shapes for timing: linear (rows, k, n); conv (c_in, c_out, k, groups, h_in, w_in, stride, h_out, w_out);
    # bmm (batch, m, k, n) per sample or per step; attention (heads, tq, tk, d, composite)
    shape: tuple = ()
    grads: tuple[bool, bool] = (
        False,
        False,
    )  # backward computes (the input's gradient, the weight's / 2nd operand's)


@dataclass
class Saved:
    """A tensor autograd keeps for the backward: bytes per sample (or per step)."""

    what: str
    numel: Poly
    bytes_per: int = 4
    per_step: bool = False


class Graph:
    """Records ops while a family module walks the model. `training`: backward counts are kept; `composite`: attention
    runs as two matmuls (peftlab's CPU path with attention dropout, train/dropout.py) rather than one fused kernel."""

    def __init__(self, *, training: bool, composite_attention: bool):
        self.training = training
        self.composite = composite_attention
        self.ops: list[Op] = []
        self.saved: list[Saved] = []
        self.elementwise: list[tuple[str, Poly, bool]] = []  # (what, elements per sample, backward runs)
        self.component = ""
        self.block: int | None = None
        self.off = False  # inside `recorded(False)`: shapes are followed, nothing is recorded

    @contextlib.contextmanager
    def recorded(self, on: bool):
        old, self.off = self.off, not on
        try:
            yield
        finally:
            self.off = old

    @contextlib.contextmanager
    def at(self, component: str, block: int | None = None):
        """Ops recorded inside count in `component` (and block)."""
        old = self.component, self.block
        self.component, self.block = component, block
        try:
            yield
        finally:
            self.component, self.block = old

    def _op(
        self, name, kind, fwd: Poly, need: tuple[bool, bool], expr, shape, per_step=False, comp=None
    ) -> None:
        if self.off:
            return
        n_bwd = (need[0] + need[1]) if self.training else 0
        self.ops.append(Op(name, comp or self.component, self.block, kind, fwd, fwd * n_bwd, expr, per_step, shape,
                           need if self.training else (False, False)))  # fmt: skip

    def keep(self, what: str, x: Act, bytes_per: int = 4) -> None:
        """x is saved for the backward (counted once per tensor)."""
        if self.training and not self.off and not getattr(x, "_kept", False):
            x._kept = True
            self.saved.append(Saved(what, x.numel, bytes_per, x.per_step))

    # --- ops -----------------------------------------------------------------------------------------------------

    def linear(self, x: Act, rows: Dim, fan_in: int, fan_out: int, *, name: str, trains: bool = False,
               bias_trains: bool = False, comp: str | None = None, per_step: bool = False,
               grad: bool = True) -> Act:  # fmt: skip
        """y = x @ W.T (+ b): (rows, in) -> (rows, out); W (out, in) trains or not. 2·rows·in·out forward; backward
        the input's gradient (rows·out·in, when x needs one) and the weight's (when it trains). `grad` False: the
        output is only used detached (no backward); `per_step`: rows do not grow with the batch."""
        out = Act(grad and (x.rg or trains or bias_trains), rows.value * fan_out, per_step)
        fwd = 2 * rows.value * (fan_in * fan_out)
        need = (x.rg, trains) if grad else (False, False)
        self._op(name, "linear", fwd, need, f"2×{rows.text}×{fan_in}×{fan_out}", (rows.value, fan_in, fan_out),
                 per_step, comp=comp)  # fmt: skip
        if trains and grad:
            self.keep(f"{name} input", x)  # the weight's gradient reads it
        return out

    def matmul(self, a: Act, b: Act, *, batch: int, m: Dim, k: Dim, n: Dim, name: str, per_step: bool = False,
               out_numel: Poly | None = None, comp: str | None = None, grad: bool = True) -> Act:  # fmt: skip
        """(batch × m×k) @ (batch × k×n), both operands activations (or parameters as Act): 2·batch·m·k·n; backward
        the gradient of each operand that needs one."""
        m, k, n = Dim.of(m), Dim.of(k), Dim.of(n)
        out = Act(grad and (a.rg or b.rg), out_numel if out_numel is not None else batch * m.value * n.value,
                  per_step)  # fmt: skip
        fwd = 2 * batch * m.value * k.value * n.value
        lead = f"{batch}×" if batch != 1 else ""
        need = (a.rg, b.rg) if grad else (False, False)
        self._op(name, "bmm", fwd, need, f"2×{lead}{m.text}×{k.text}×{n.text}",
                 (batch, m.value, k.value, n.value), per_step, comp=comp)  # fmt: skip
        if not grad:
            return out
        if b.rg:
            self.keep(f"{name} left operand", a)
        if a.rg:
            self.keep(f"{name} right operand", b)
        return out

    def backward_only(self, *, batch: int, m: int, k: int, n: int, products: int, name: str,
                      per_step: bool = True) -> None:  # fmt: skip
        """Products a hand-written backward computes (an autograd.Function's own matmuls): `products` × 2·batch·m·k·n,
        counted in the backward only."""
        if self.off or not self.training:
            return
        flops = Poly.of(2 * batch * m * k * n * products)
        self.ops.append(Op(name, self.component, self.block, "bmm", Poly(), flops, f"{products} × 2×{m}×{k}×{n}",
                           per_step, (batch, m, k, n), (True, True)))  # fmt: skip

    def rnn(self, *, rows: int, fan_in: int, hidden: int, gates: int, name: str) -> None:
        """One direction of one recurrent layer, one fused kernel (oneDNN's LSTM on CPU): 2·rows·(in + h)·gates·h
        forward; its backward forms every gradient, twice that. Once per step (a prompt encoder's n tokens)."""
        if self.off:
            return
        fwd = Poly.of(2 * rows * (fan_in + hidden) * gates * hidden)
        self.ops.append(Op(name, self.component, self.block, "rnn", fwd, fwd * (2 if self.training else 0),
                           f"2×{rows}×({fan_in}+{hidden})×{gates}×{hidden}", True, (rows, fan_in, hidden, gates),
                           (self.training, self.training)))  # fmt: skip

    def conv(self, x: Act, *, name: str, c_in: int, c_out: int, k: int, groups: int, hw_in: tuple[int, int],
             stride: int, hw_out: tuple[int, int], trains: bool = False, bias_trains: bool = False,
             comp: str | None = None) -> Act:  # fmt: skip
        """Conv2d (c_in -> c_out, k×k, groups): 2·Ho·Wo·c_out·(c_in/g)·k² per sample; backward as linear. (The weight's
        gradient of a grouped conv is counted with its groups: the same FLOPs as the forward.)"""
        ho, wo = hw_out
        out = Act(x.rg or trains or bias_trains, Poly.of(c_out * ho * wo))
        fwd = Poly.of(2 * ho * wo * c_out * (c_in // groups) * k * k)
        expr = f"2×{ho}×{wo}×{c_out}×{c_in // groups}" + (f"×{k}×{k}" if k > 1 else "")
        shape = (c_in, c_out, k, groups, hw_in[0], hw_in[1], stride, ho, wo)
        self._op(name, "conv", fwd, (x.rg, trains), expr, shape, comp=comp)
        if trains:
            self.keep(f"{name} input", x)
        return out

    def attention(self, q: Act, k: Act, v: Act, *, heads: int, tq: Dim, tk: Dim, d: int, dropout: bool,
                  name: str) -> Act:  # fmt: skip
        """softmax(q kᵀ / √d [+ mask]) v over heads: q (h, tq, d), k and v (h, tk, d) per sample.

        Composite (two matmuls): forward 2·h·tq·d·tk + 2·h·tq·tk·d; backward the gradients the inputs need. Fused
        (SDPA kernel): the same forward; backward, when anything needs a gradient, FlopCounterMode's SDPA formula:
        the scores again, then dV, dP, dQ, dK: 5 × 2·h·tq·tk·d."""
        if self.composite:
            scores = self.matmul(q, k, batch=heads, m=tq, k=Dim.of(d), n=tk, name=f"{name} q·kᵀ",
                                 out_numel=heads * tq.value * tk.value)  # fmt: skip
            probs = self.ew(scores, what="softmax")
            if scores.rg:
                self.keep(f"{name} probabilities", probs)
            if dropout:  # the mask is kept, and the dropped-out probabilities (p·v's left operand)
                probs = self.ew(probs, what="dropout", keep_new=1)
            return self.matmul(probs, v, batch=heads, m=tq, k=tk, n=Dim.of(d), name=f"{name} p·v",
                               out_numel=heads * tq.value * d)  # fmt: skip
        rg = q.rg or k.rg or v.rg
        out = Act(rg, heads * tq.value * d)
        if self.off:
            return out
        fwd = 4 * heads * tq.value * tk.value * d
        bwd = 10 * heads * tq.value * tk.value * d if (rg and self.training) else Poly()
        self.ops.append(Op(name, self.component, self.block, "attention", fwd, bwd,
                           f"2×2×{heads}×{tq.text}×{tk.text}×{d}", shape=(heads, tq.value, tk.value, d, False),
                           grads=(rg and self.training, False)))  # fmt: skip
        if rg:
            for t in (q, k, v, out):
                self.keep(f"{name} q, k, v, out", t)
        return out

    def ew(self, *xs: Act, trains: bool = False, what: str = "elementwise", numel: Poly | None = None,
           keep_in: bool = False, keep_new: int = 0) -> Act:  # fmt: skip
        """Elementwise work (norms, activations, dropout, residual adds, scaling by a trained vector): no FLOPs counted;
        the output needs a gradient when an input does or a parameter of it trains. For memory: `keep_in`, its input is
        kept for the backward (a norm, GELU); `keep_new`, that many new tensors of the output's size are (dropout
        masks, the sum a post-norm normalises)."""
        rg = any(x.rg for x in xs) or trains
        size = numel if numel is not None else xs[0].numel
        out = Act(rg, size, all(x.per_step for x in xs))
        if self.off:
            return out
        self.elementwise.append((what, size, rg and self.training))
        if rg and self.training:
            if keep_in:
                self.keep(f"{what} input", xs[0])
            for i in range(keep_new):
                self.saved.append(Saved(f"{what} ({i + 1})", size, 4, out.per_step))
        return out

    @staticmethod
    def param(trains: bool, numel: int = 0) -> Act:
        """A parameter (or buffer) used as a matmul operand."""
        return Act(trains, Poly.of(numel), per_step=True)

    @staticmethod
    def data(numel=0) -> Act:
        """Model input: ids or pixels, never a gradient."""
        return Act(False, Poly.of(numel) if not isinstance(numel, Poly) else numel)
