"""Visible checks for chapter 3, *Self-attention*.

Each ``check_*`` takes the learner's function (or class), runs it on a few cases,
the first small enough to check by hand, and either prints one line of success or
raises :class:`~attnedu.checks.core.CheckFailed` explaining the first problem found.
When the numbers are wrong, the check also tries to *recognise* the mistake: each
check hands :func:`~attnedu.checks.core.check_function` the typical wrong
implementations (a forgotten scale, sines and cosines swapped, the half-split RoPE
layout, ...) as ``mistakes``, and when one gives the learner's result on the failing
case, the message names it ("Likely cause: ...").

The module also holds the chapter's reference code, which the notebook switches to
after each exercise so that a broken exercise cannot spill into later cells:

* :func:`self_attention_reference`: single-head self-attention in NumPy;
* :class:`SelfAttentionReference`: the same as a PyTorch ``nn.Module``;
* :func:`module_runner`: turn a module class into a function of NumPy arrays, so that
  a module can be checked like a function.

The expected answers come from :mod:`attnedu.functional`.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from .. import functional as F
from .core import Case, CheckFailed, call_learner, check_function, rows_sum_to_one

__all__ = [
    "self_attention_reference",
    "SelfAttentionReference",
    "module_runner",
    "check_self_attention",
    "check_self_attention_module",
    "check_sinusoidal_positions",
    "check_apply_rope",
]


# ------------------------------------------------------------------------ references
def self_attention_reference(x, W_q, W_k, W_v):
    r"""Single-head self-attention: :math:`\mathrm{softmax}(QK^\top/\sqrt{d_k})\,V`
    with :math:`Q = XW_q`, :math:`K = XW_k`, :math:`V = XW_v`.

    Args:
        x: ``(..., T, d_model)``, one row per token.
        W_q, W_k: ``(d_model, d_k)``.
        W_v: ``(d_model, d_v)``.

    Returns:
        ``(output, weights)`` of shapes ``(..., T, d_v)`` and ``(..., T, T)``.
    """
    x = np.asarray(x, dtype=float)
    q = x @ np.asarray(W_q, dtype=float)  # (..., T, d_k)
    k = x @ np.asarray(W_k, dtype=float)  # (..., T, d_k)
    v = x @ np.asarray(W_v, dtype=float)  # (..., T, d_v)
    return F.scaled_dot_product_attention(q, k, v)


class SelfAttentionReference(nn.Module):
    r"""Single-head self-attention as a PyTorch module.

    ``W_q``, ``W_k`` and ``W_v`` are ``nn.Linear`` layers without bias. An
    ``nn.Linear(d_in, d_out)`` stores its weight as ``(d_out, d_in)`` and computes
    ``x @ weight.T``, so the NumPy matrix ``W_q`` of the chapter is ``self.W_q.weight.T``.

    ``forward(x)`` maps ``(..., T, d_model)`` to ``(output, weights)``, of shapes
    ``(..., T, d_v)`` and ``(..., T, T)``.
    """

    def __init__(self, d_model: int, d_k: int, d_v: int | None = None):
        super().__init__()
        d_v = d_k if d_v is None else d_v
        self.W_q = nn.Linear(d_model, d_k, bias=False)
        self.W_k = nn.Linear(d_model, d_k, bias=False)
        self.W_v = nn.Linear(d_model, d_v, bias=False)

    def forward(self, x):
        q = self.W_q(x)  # (..., T, d_k)
        k = self.W_k(x)  # (..., T, d_k)
        v = self.W_v(x)  # (..., T, d_v)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, T)
        weights = torch.softmax(scores, dim=-1)  # (..., T, T), rows sum to 1
        return weights @ v, weights  # (..., T, d_v), (..., T, T)


def module_runner(cls) -> Callable:
    """A function ``run(x, W_q, W_k, W_v) -> (output, weights)`` that builds
    ``cls(d_model, d_k, d_v)`` in float64, loads the NumPy matrices into its
    ``W_q``, ``W_k`` and ``W_v`` layers (transposed, as ``nn.Linear`` stores them) and
    calls its ``forward`` on ``x``. The results are torch tensors."""

    def run(x, W_q, W_k, W_v):
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"expected a subclass of torch.nn.Module, got {type(cls).__name__}")
        d_model, d_k = np.shape(W_q)
        d_v = np.shape(W_v)[1]
        module = cls(d_model, d_k, d_v).double()
        with torch.no_grad():
            for name, W in (("W_q", W_q), ("W_k", W_k), ("W_v", W_v)):
                getattr(module, name).weight.copy_(torch.from_numpy(np.array(W, dtype=float).T))
        return module.forward(torch.from_numpy(np.array(x, dtype=float)))

    return run


# ------------------------------------------------------------------ self-attention
def _attend(q, k, v, scale, axis=-1, swap=False):
    """Scores, softmax, weighted sum, with the knobs that typical mistakes turn."""
    scores = q @ np.swapaxes(k, -1, -2) * scale  # (..., T, T)
    if swap:
        scores = np.swapaxes(scores, -1, -2)
    weights = F.softmax(scores, axis=axis)
    return weights @ v, weights


def _sqrt_dk(W_k):
    return 1 / np.sqrt(np.shape(W_k)[1])


_SA_MISTAKES = [
    (lambda x, Wq, Wk, Wv: _attend(x @ Wq, x @ Wk, x @ Wv, 1.0),
     "the scores were not scaled: divide q @ k.T by sqrt(d_k), where d_k = W_k.shape[1] is the size of a key."),
    (lambda x, Wq, Wk, Wv: _attend(x @ Wq, x @ Wk, x @ Wv, 1 / np.sqrt(x.shape[-1])),
     "divide by sqrt(d_k), the size of a key (W_k.shape[1]), not by sqrt(d_model), the size of a token."),
    (lambda x, Wq, Wk, Wv: _attend(x @ Wq, x @ Wk, x @ Wv, 1 / np.sqrt(Wv.shape[1])),
     "divide by sqrt(d_k), the size of a key (W_k.shape[1]), not by sqrt(d_v), the size of a value."),
    (lambda x, Wq, Wk, Wv: _attend(x @ Wq, x @ Wk, x @ Wv, 1 / Wk.shape[1]),
     "divide the scores by the square root of d_k, not by d_k itself."),
    (lambda x, Wq, Wk, Wv: _attend(x @ Wq, x @ Wk, x @ Wv, _sqrt_dk(Wk), swap=True),
     "scores[i, j] is the query of token i dotted with the key of token j: q @ k.T with q = x @ W_q and "
     "k = x @ W_k (not k @ q.T, nor W_q and W_k swapped)."),
    (lambda x, Wq, Wk, Wv: _attend(x @ Wq, x @ Wk, x @ Wv, _sqrt_dk(Wk), axis=-2),
     "the softmax normalises each query's scores over the keys: the last axis, axis=-1."),
    (lambda x, Wq, Wk, Wv: _attend(x @ Wq.T, x @ Wk.T, x @ Wv.T, _sqrt_dk(Wk)),
     "the projections are x @ W_q, x @ W_k and x @ W_v, with the weight matrices as given (not transposed)."),
    (lambda x, Wq, Wk, Wv: _attend(x, x, x @ Wv, 1 / np.sqrt(x.shape[-1])),
     "the queries and keys must be projected too: q = x @ W_q and k = x @ W_k."),
]

_SHAPES = " x has shape (T, d_model) and W_q has shape (d_model, d_k), so the queries are x @ W_q (x on the left)."
_SA = dict(params=["x", "W_q", "W_k", "W_v"], outputs=("output", "weights"), properties=[rows_sum_to_one()],
           mistakes=_SA_MISTAKES)


def _sa_cases(transpose: str, shapes: str = ""):
    """The cases of the NumPy function (``shapes``: the projection hint, added to the cases
    where a shape error shows first) and of the PyTorch module check. ``transpose`` is how
    the batched hint says to swap the last two axes of the keys."""
    x3 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    Wq3 = np.array([[1.0, 0.0], [1.0, 1.0]])
    Wk3 = np.array([[1.0, 0.0], [0.0, 2.0]])
    Wv3 = np.array([[0.0, 1.0], [1.0, 0.0]])
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 4))
    Wq, Wk, Wv = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    xb = rng.normal(size=(2, 5, 4))
    x_big = 30 * rng.normal(size=(6, 4))
    return [
        Case((x3, Wq3, Wk3, Wv3), self_attention_reference(x3, Wq3, Wk3, Wv3),
             hint="by hand, q = x @ W_q = [[1, 0], [1, 1], [2, 1]] and k = x @ W_k = [[1, 0], [0, 2], [1, 2]], "
                  "so the scores q @ k.T / sqrt(2) have first row [1, 0, 1] / sqrt(2)." + shapes),
        Case((x, Wq, Wk, Wv), self_attention_reference(x, Wq, Wk, Wv),
             hint="d_model = 4, d_k = 3 and d_v = 2 here: divide the scores by sqrt(d_k) = sqrt(W_k.shape[1])."
                  + shapes),
        Case((x_big, Wq, Wk, Wv), self_attention_reference(x_big, Wq, Wk, Wv),
             hint="large scores need a stable softmax, such as the library's `softmax`."),
        Case((xb, Wq, Wk, Wv), self_attention_reference(xb, Wq, Wk, Wv),
             hint="with a batch axis in front, x is (B, T, d_model) and the keys are still on the last axis: "
                  f"transpose only the last two axes of k, with {transpose}; k.T would reverse all three axes. "
                  "Normalise over axis=-1."),
    ]


def check_self_attention(self_attention) -> None:
    """Check ``self_attention(x, W_q, W_k, W_v) -> (output, weights)`` in NumPy."""
    check_function(self_attention, "self_attention", _sa_cases("np.swapaxes(k, -1, -2)", _SHAPES), **_SA)


def check_self_attention_module(SelfAttention) -> None:
    """Check a ``SelfAttention(d_model, d_k, d_v)`` module class whose ``forward(x)``
    returns ``(output, weights)``: values, a batch axis, and gradients reaching the weights."""
    name = "SelfAttention"
    if not (isinstance(SelfAttention, type) and issubclass(SelfAttention, nn.Module)):
        word = type(SelfAttention).__name__
        kind = "None" if SelfAttention is None else ("an " if word[0] in "aeiou" else "a ") + word
        raise CheckFailed(
            f"`{name}` should be a class derived from torch.nn.Module, but it is {kind}: "
            f"run the cell that defines `class {name}(nn.Module)` first."
        )
    cases = _sa_cases("k.transpose(-2, -1)")
    check_function(module_runner(SelfAttention), name, cases, quiet=True, **_SA)
    try:
        torch.manual_seed(0)
        module = SelfAttention(4, 3, 2).double()
        output = module(torch.randn(5, 4, dtype=torch.float64))[0]
        output.sum().backward()
        reached = all(getattr(module, w).weight.grad is not None for w in ("W_q", "W_k", "W_v"))
    except Exception:
        reached = False
    if not reached:
        raise CheckFailed(
            f"`{name}` gives the right numbers, but gradients do not flow back to W_q, W_k and W_v: "
            "compute with torch operations inside forward (no NumPy, no .detach(), no .item())."
        )
    print(f"\u2713 `{name}` passes all {len(cases) + 1} checks.")


# -------------------------------------------------------------- sinusoidal positions
def _sinusoids(T, d, omega, sin_first=True, interleave=True, start=0, own_column_freq=False):
    """A (T, d) table built with one of the typical mistakes."""
    p = np.arange(start, start + T)[:, None]  # (T, 1)
    if own_column_freq:  # every column j gets 10000 ** (-j / d), cosines included
        ang = p * 10000.0 ** (-np.arange(d) / d)  # (T, d)
        pe = np.where(np.arange(d) % 2 == 0, np.sin(ang), np.cos(ang))
        return pe
    ang = p * omega  # (T, d/2)
    first, second = (np.sin(ang), np.cos(ang)) if sin_first else (np.cos(ang), np.sin(ang))
    if not interleave:
        return np.concatenate([first, second], axis=1)
    pe = np.empty((T, d))
    pe[:, 0::2], pe[:, 1::2] = first, second
    return pe


def _omega(d, power=2.0, sign=-1.0):
    return 10000.0 ** (sign * power * np.arange(d // 2) / d)


def _cosines_first_in_a_block(sinusoidal_positions) -> Callable:
    """All the cosines, then all the sines, as a wrong implementation. With d = 2 this gives
    the table of sines and cosines swapped, so it counts only if the learner's own table
    with d = 8 shows it too."""

    def blocks(T, d):
        return _sinusoids(T, d, _omega(d), sin_first=False, interleave=False)

    def wrong(T, d):
        wide = call_learner(sinusoidal_positions, "sinusoidal_positions", Case((T, 8), None))
        if not np.allclose(np.asarray(wide, dtype=float), blocks(T, 8)):
            raise ValueError("not this mistake")  # a wrong implementation that raises is skipped
        return blocks(T, d)

    return wrong


_FREQ = "the frequency of pair i (columns 2i and 2i+1) is 10000 ** (-2 * i / d), for i = 0, 1, ..., d/2 - 1"
_SIN_MISTAKES = [
    (lambda T, d: _sinusoids(T, d, _omega(d), sin_first=False),
     "the even columns hold sines and the odd columns cosines: you have them the other way round."),
    (lambda T, d: _sinusoids(T, d, _omega(d), interleave=False),
     "sines and cosines must alternate, column by column (sin, cos, sin, cos, ...): "
     "you put all the sines first and then all the cosines."),
    (lambda T, d: _sinusoids(T, d, _omega(d, power=1.0)),
     f"{_FREQ}; yours fall too slowly (did you drop the 2 in the exponent?)."),
    (lambda T, d: _sinusoids(T, d, _omega(d, power=4.0)),
     f"{_FREQ}; yours fall too fast (did you put the column index 2i where the formula has i?)."),
    (lambda T, d: _sinusoids(T, d, _omega(d, sign=1.0)),
     f"{_FREQ}: divide the position by 10000 ** (2i / d) rather than multiplying by it."),
    (lambda T, d: _sinusoids(T, d, None, own_column_freq=True),
     "columns 2i and 2i+1 share one frequency, 10000 ** (-2i / d): your cosine columns use a frequency "
     "of their own."),
    (lambda T, d: _sinusoids(T, d, _omega(d), start=1),
     "positions start at 0, so row 0 is [0, 1, 0, 1, ...]."),
]


def check_sinusoidal_positions(sinusoidal_positions) -> None:
    """Check ``sinusoidal_positions(T, d) -> (T, d)`` for even ``d``."""
    cases = [
        Case((3, 2), F.sinusoidal_positions(3, 2),
             hint="by hand, with d = 2 row p is [sin(p), cos(p)]: row 0 is [0, 1], row 1 is [0.841, 0.540]."),
        Case((3, 4), F.sinusoidal_positions(3, 4),
             hint="with d = 4, row p is [sin(p), cos(p), sin(p / 100), cos(p / 100)]."),
        Case((50, 16), F.sinusoidal_positions(50, 16), hint=_FREQ + "."),
        Case((7, 128), F.sinusoidal_positions(7, 128)),
    ]
    cosines_first = (_cosines_first_in_a_block(sinusoidal_positions),
                     "the columns must alternate sin, cos, sin, cos, ...: "
                     "you put all the cosines first, then the sines.")
    check_function(sinusoidal_positions, "sinusoidal_positions", cases, params=["T", "d"],
                   mistakes=[cosines_first, *_SIN_MISTAKES])


# ------------------------------------------------------------------ rotary positions
def _rope(x, positions, power=2.0, sign=1.0, half_split=False, own_feature_freq=False):
    """RoPE of a (T, d) array, with the knobs that typical mistakes turn."""
    x = np.asarray(x, dtype=float)
    d = x.shape[-1]
    pos = np.asarray(positions, dtype=float)[:, None]  # (T, 1)
    if own_feature_freq:  # feature j rotated by 10000 ** (-j / d), pairs split apart
        ang = sign * pos * 10000.0 ** (-np.arange(d) / d)  # (T, d)
        even_ang, odd_ang = ang[:, 0::2], ang[:, 1::2]
        out = np.empty_like(x)
        a, b = x[:, 0::2], x[:, 1::2]
        out[:, 0::2] = a * np.cos(even_ang) - b * np.sin(even_ang)
        out[:, 1::2] = a * np.sin(odd_ang) + b * np.cos(odd_ang)
        return out
    ang = sign * pos * 10000.0 ** (-power * np.arange(d // 2) / d)  # (T, d/2)
    cos, sin = np.cos(ang), np.sin(ang)
    if half_split:
        a, b = x[:, : d // 2], x[:, d // 2:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=1)
    a, b = x[:, 0::2], x[:, 1::2]
    out = np.empty_like(x)
    out[:, 0::2] = a * cos - b * sin
    out[:, 1::2] = a * sin + b * cos
    return out


_THETA = "theta_i = 10000 ** (-2 * i / d), for the pair i = 0, 1, ..., d/2 - 1"
_ROPE_MISTAKES = [
    (lambda x, p: _rope(x, p, half_split=True),
     "you rotated the pairs (i, i + d/2), the half-split layout of GPT-NeoX and Hugging Face's Llama; "
     "this exercise pairs adjacent features (2i, 2i+1)."),
    (lambda x, p: _rope(x, p, sign=-1.0),
     "you rotated the wrong way: the pair (a, b) becomes (a cos - b sin, a sin + b cos)."),
    (lambda x, p: _rope(x, np.arange(len(p))),
     "rotate row t by the angle positions[t] * theta_i: you used t itself instead of the positions given."),
    (lambda x, p: _rope(x, p, power=1.0),
     f"{_THETA}; yours fall too slowly (did you drop the 2 in the exponent?)."),
    (lambda x, p: _rope(x, p, power=4.0),
     f"{_THETA}; yours fall too fast (did you put the feature index 2i where the formula has i?)."),
    (lambda x, p: _rope(x, p, sign=1.0, power=-2.0),
     f"{_THETA}: the angles shrink from p down to about p / 10000, so use a negative exponent."),
    (lambda x, p: _rope(x, p, own_feature_freq=True),
     "both features of a pair are rotated by the same angle, p * 10000 ** (-2i / d)."),
]


def check_apply_rope(apply_rope) -> None:
    """Check ``apply_rope(x, positions) -> (T, d)`` (adjacent pairs, base 10000)."""
    x2 = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    p3 = np.array([0, 1, 2])
    rng = np.random.default_rng(4)
    x4 = rng.normal(size=(3, 4))
    x8 = rng.normal(size=(6, 8))
    p8 = np.array([3, 0, 7, 7, 1, 10])
    x16 = rng.normal(size=(40, 16))
    p40 = np.arange(40)
    cases = [
        Case((x2, p3), F.apply_rope(x2, p3),
             hint="by hand, with d = 2 the row at position p turns by p radians: [1, 0] at position 1 "
                  "becomes [cos 1, sin 1] = [0.540, 0.841], and [0, 1] at position 2 becomes [-sin 2, cos 2]."),
        Case((x4, p3), F.apply_rope(x4, p3),
             hint="with d = 4 the pairs are the adjacent features (0, 1), turned by p * 1, and (2, 3), "
                  "turned by p / 100."),
        Case((x8, p8), F.apply_rope(x8, p8),
             hint="turn row t by positions[t] * theta_i: the positions need not be 0, 1, 2, ..."),
        Case((x16, p40), F.apply_rope(x16, p40), hint=_THETA + "."),
    ]
    check_function(apply_rope, "apply_rope", cases, params=["x", "positions"], mistakes=_ROPE_MISTAKES)
