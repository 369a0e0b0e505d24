"""Visible checks for chapter 7, *Real models, your attention*.

How a check works (one sentence per problem, typical mistakes named): see
:mod:`attnedu.checks`.

The ``*_reference`` functions are the tested versions the chapter switches to
after each exercise, and the source of every expected value:

* :func:`our_name_reference`: the name of our parameter that receives a tensor of the
  all-MiniLM-L6-v2 checkpoint (the table of :func:`attnedu.pretrained.minilm.minilm_weight_map`),
  or ``None`` for the tensors our model does not use;
* :func:`mean_pool_reference`: the mean of the real tokens' vectors, padding left out
  (:func:`attnedu.pretrained.pooling.mean_pool`);
* :func:`grouped_query_attention_reference`: one step of causal grouped-query attention,
  ``H`` query heads sharing ``H_kv`` key/value heads, as in
  :class:`attnedu.nn.GroupedQueryAttention`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from typing import Callable, Sequence

import torch

from .core import with_article as _a
from .core import DEFAULT_TIME_LIMIT, Case, CheckFailed, call_learner, check_function, rows_sum_to_one

__all__ = [
    "our_name_reference",
    "mean_pool_reference",
    "grouped_query_attention_reference",
    "CHECKPOINT_NAMES",
    "check_our_name",
    "check_mean_pool",
    "check_grouped_query_attention",
]


# ------------------------------------------------------------------- references
_LAYER_NAME = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")


def _weight_map(num_layers: int) -> dict[str, str]:
    from ..pretrained.minilm import minilm_weight_map

    return minilm_weight_map(num_layers)


def our_name_reference(checkpoint_name: str) -> str | None:
    """Our :class:`~attnedu.pretrained.minilm.BertEncoder` parameter that receives the
    checkpoint tensor ``checkpoint_name``, or ``None`` for a tensor we do not use.

    ``"encoder.layer.3.attention.self.query.weight"`` -> ``"layers.3.self_attn.q_proj.weight"``;
    ``"embeddings.LayerNorm.bias"`` -> ``"embeddings.norm.bias"``; ``"pooler.dense.weight"``
    -> ``None``. Works for any layer number (BERT-base has 12 layers, MiniLM-L6 six). Raises
    ``ValueError`` for a name that is in neither the table nor the list of unused tensors.
    """
    from ..pretrained.minilm import UNUSED_WEIGHTS

    if not isinstance(checkpoint_name, str):
        raise ValueError(f"checkpoint_name must be a string, got {type(checkpoint_name).__name__}")
    if checkpoint_name in UNUSED_WEIGHTS:
        return None
    match = _LAYER_NAME.match(checkpoint_name)
    layers = int(match.group(1)) + 1 if match else 1
    table = _weight_map(layers)
    if checkpoint_name not in table:
        raise ValueError(f"{checkpoint_name!r} is not a tensor of a BERT checkpoint that our encoder knows")
    return table[checkpoint_name]


def mean_pool_reference(hidden, mask) -> torch.Tensor:
    r"""The mean of the real tokens' vectors: ``hidden (B, T, E)``, ``mask (B, T)`` -> ``(B, E)``.

    .. math:: s_b = \frac{\sum_t m_{bt}\, h_{bt}}{\max(\sum_t m_{bt},\ 10^{-9})}

    ``mask`` is 1 (or True) on real tokens and 0 on padding. A sentence with no real token
    gets a vector of zeros (the clamp is sentence-transformers').
    """
    from ..pretrained.pooling import mean_pool

    hidden = torch.as_tensor(hidden)
    if not torch.is_floating_point(hidden):
        hidden = hidden.to(torch.get_default_dtype())
    return mean_pool(hidden, torch.as_tensor(mask))


def _as_float_tensor(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if not torch.is_floating_point(t):
        t = t.to(torch.get_default_dtype())
    if t.dim() != 3:
        raise ValueError(f"{name} must be (heads, T, d), got shape {tuple(t.shape)}")
    return t


def grouped_query_attention_reference(q, k, v) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One step of causal grouped-query attention.

    ``q``: ``(H, T, d)`` queries; ``k``, ``v``: ``(H_kv, T, d)`` keys and values, with ``H``
    divisible by ``H_kv``. Query head ``i`` uses key/value head ``g(i) = i // (H / H_kv)``
    (heads ``0 .. H/H_kv - 1`` share head 0, and so on), and position ``t`` sees the keys
    ``s <= t``:

    .. math::
        A_i = \mathrm{softmax}\!\left(\frac{q_i k_{g(i)}^\top}{\sqrt d} + M\right), \qquad
        \mathrm{out}_i = A_i\, v_{g(i)}

    Returns ``(out, weights)``: ``(H, T, d)`` and ``(H, T, T)``.
    """
    q, k, v = _as_float_tensor(q, "q"), _as_float_tensor(k, "k"), _as_float_tensor(v, "v")
    H, T, d = q.shape
    H_kv = k.shape[0]
    if k.shape != v.shape or k.shape[1:] != (T, d):
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must both be (H_kv, T, d) = (H_kv, {T}, {d}) "
                         f"to match q {tuple(q.shape)}")
    if H_kv < 1 or H % H_kv:
        raise ValueError(f"{H} query heads cannot be shared evenly by {H_kv} key/value heads")
    n_rep = H // H_kv
    k = k.repeat_interleave(n_rep, dim=0)  # (H, T, d): key/value heads 0,0,..,1,1,..
    v = v.repeat_interleave(n_rep, dim=0)  # (H, T, d)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (H, T, T)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)  # (T, T): True above the diagonal
    weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)  # (H, T, T)
    return weights @ v, weights  # (H, T, d), (H, T, T)


# ------------------------------------------------------------ checking names
#: The names of the all-MiniLM-L6-v2 checkpoint that the visible check tries, easiest first.
CHECKPOINT_NAMES = (
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.0.attention.self.key.bias",
    "encoder.layer.0.attention.self.value.weight",
    "encoder.layer.3.attention.self.query.bias",
    "encoder.layer.3.intermediate.dense.weight",
    "encoder.layer.3.output.dense.weight",
    "encoder.layer.3.attention.output.dense.weight",
    "encoder.layer.5.attention.output.LayerNorm.weight",
    "encoder.layer.5.output.LayerNorm.bias",
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "embeddings.LayerNorm.weight",
    "encoder.layer.11.attention.self.key.weight",
    "pooler.dense.weight",
    "embeddings.position_ids",
)

_HINTS = {
    "encoder.layer.0.attention.self.query.weight":
        "by hand: the checkpoint's `encoder.layer.0` is our `layers.0`, its `attention.self.query` is our "
        "`self_attn.q_proj`, and the last part, `.weight`, stays: 'layers.0.self_attn.q_proj.weight'.",
    "encoder.layer.0.attention.self.key.bias": "keep the last part as it is: `.weight` stays `.weight`, "
                                               "`.bias` stays `.bias`.",
    "encoder.layer.3.attention.self.query.bias": "take the layer number from the name.",
    "encoder.layer.3.intermediate.dense.weight":
        "`intermediate.dense` widens each token from 384 to 1536 features: the feed-forward's first layer, ff.fc1.",
    "encoder.layer.3.output.dense.weight":
        "`output.dense` (without `attention.` in front) narrows 1536 features back to 384: the feed-forward's "
        "second layer, ff.fc2.",
    "encoder.layer.3.attention.output.dense.weight":
        "`attention.output.dense` is the attention's output projection W_o, self_attn.out_proj; compare whole "
        "module names, not their endings.",
    "encoder.layer.5.attention.output.LayerNorm.weight":
        "`attention.output.LayerNorm` is the norm after the attention's residual connection: res1.norm.",
    "encoder.layer.5.output.LayerNorm.bias":
        "`output.LayerNorm` (without `attention.` in front) is the norm after the feed-forward's residual: res2.norm.",
    "embeddings.word_embeddings.weight": "the embeddings have their own names: word_embeddings is our embeddings.word.",
    "embeddings.LayerNorm.weight": "the embeddings' LayerNorm is our embeddings.norm, not a norm of a layer.",
    "encoder.layer.11.attention.self.key.weight":
        "a bigger BERT has layers 10, 11, ...: read the whole number, e.g. with name.split('.')[2].",
    "pooler.dense.weight": "our model has no pooler (sentence-transformers averages the tokens instead): "
                           "return None for it.",
    "embeddings.position_ids": "embeddings.position_ids is not a weight but a saved buffer holding 0, 1, ..., 511; "
                               "we compute torch.arange(T) instead, so return None.",
}

_CASE_MISTAKES = {
    "embeddings.position_ids": [
        ("embeddings.position.weight", "embeddings.position_ids is not the position embedding (that is "
                                       "embeddings.position_embeddings.weight) but a saved buffer of 0, 1, ..., "
                                       "511 that our model computes with torch.arange(T): return None."),
    ],
}


def _layer_parts() -> dict[str, str]:
    """The per-layer part of the table: checkpoint module -> our module, e.g.
    ``"attention.self.query" -> "self_attn.q_proj"``."""
    prefix, suffix = "encoder.layer.0.", ".weight"
    return {theirs[len(prefix):-len(suffix)]: ours[len("layers.0."):-len(suffix)]
            for theirs, ours in _weight_map(1).items() if theirs.startswith(prefix) and theirs.endswith(suffix)}


def _mapper(change: Callable[[dict[str, str]], dict[str, str]] | None = None, *, layer=lambda i: i,
            prefix="layers.{i}.", keep_param=True, param=None, embeddings=None) -> Callable:
    """A wrong (or, with no arguments, the right) ``our_name``, built from the table."""

    def wrong(name: str):
        if not isinstance(name, str):
            return None
        match = _LAYER_NAME.match(name)
        if not match:
            if embeddings is not None and name in embeddings:
                return embeddings[name]
            try:
                return our_name_reference(name)
            except ValueError:
                return None
        i, rest = int(match.group(1)), match.group(2)
        module, _, p = rest.rpartition(".")
        parts = _layer_parts()
        if change is not None:
            parts = change(parts)
        if module not in parts:
            return None
        text = prefix.format(i=layer(i)) + parts[module]
        return text + "." + (param or p) if keep_param else text

    return wrong


def _swap(a: str, b: str) -> Callable[[dict[str, str]], dict[str, str]]:
    def change(parts):
        parts = dict(parts)
        parts[a], parts[b] = parts[b], parts[a]
        return parts
    return change


def _set(**new) -> Callable[[dict[str, str]], dict[str, str]]:
    def change(parts):
        parts = dict(parts)
        parts.update({k.replace("__", "."): v for k, v in new.items()})
        return parts
    return change


def _ends_with_matcher(name: str):
    """Matching the module by the end of the name, shortest pattern first: ``output.dense``
    catches ``attention.output.dense`` too."""
    match = _LAYER_NAME.match(name) if isinstance(name, str) else None
    if not match:
        return _mapper()(name)
    i, rest = int(match.group(1)), match.group(2)
    module, _, p = rest.rpartition(".")
    for theirs, ours in sorted(_layer_parts().items(), key=lambda kv: len(kv[0])):
        if module.endswith(theirs):
            return f"layers.{i}.{ours}.{p}"
    return None


_NAME_MISTAKES = [
    (_ends_with_matcher, "it matches a module by the end of its name, so `output.dense` also catches "
                         "`attention.output.dense` (and `output.LayerNorm` catches `attention.output.LayerNorm`): "
                         "look the whole module name up in a dict, or test the longer name first."),
    (_mapper(_swap("attention.output.LayerNorm", "output.LayerNorm")),
     "the two LayerNorms of a layer are swapped: `attention.output.LayerNorm` follows the attention "
     "(res1.norm), `output.LayerNorm` follows the feed-forward (res2.norm)."),
    (_mapper(_swap("intermediate.dense", "output.dense")),
     "the feed-forward's two layers are swapped: `intermediate.dense` (384 -> 1536) is ff.fc1, "
     "`output.dense` (1536 -> 384) is ff.fc2; the shapes in the listing tell them apart."),
    (_mapper(_set(attention__output__dense="ff.fc2")),
     "`attention.output.dense` went to ff.fc2: it is the attention's output projection, self_attn.out_proj "
     "(its shape is (384, 384), fc2's is (384, 1536))."),
    (_mapper(_set(attention__output__LayerNorm="res2.norm")),
     "`attention.output.LayerNorm` went to res2.norm: it is the norm after the attention, res1.norm."),
    (_mapper(_swap("attention.self.query", "attention.self.key")),
     "query and key are swapped: `attention.self.query` is q_proj and `attention.self.key` is k_proj."),
    (_mapper(_swap("attention.self.key", "attention.self.value")),
     "key and value are swapped: `attention.self.key` is k_proj and `attention.self.value` is v_proj."),
    (_mapper(keep_param=False), "it leaves out the parameter's last part: keep `.weight` or `.bias` at the end."),
    (_mapper(param="weight"), "it always ends the name with `.weight`: keep the checkpoint's own last part, "
                              "`.bias` for a bias."),
    (_mapper(layer=lambda i: 0), "it always uses layer 0: take the layer number from the checkpoint's name."),
    (_mapper(layer=lambda i: int(str(i)[0])), "it reads only the first digit of the layer number: split the name "
                                              "on '.' and take the whole third part."),
    (_mapper(layer=lambda i: i + 1), "the layer number is off by one: both count from 0, so encoder.layer.3 is "
                                     "layers.3."),
    (_mapper(prefix="encoder.layer.{i}."), "it keeps the checkpoint's prefix `encoder.layer.{i}.`: our layers are "
                                           "called `layers.{i}.`."),
    (_mapper(prefix="layer.{i}."), "our layers are called `layers.{i}.` (plural), not `layer.{i}.`."),
    (lambda name: name, "it returns the checkpoint's own name: translate it into our model's parameter name."),
    (_mapper(embeddings={"embeddings.LayerNorm.weight": "res1.norm.weight",
                         "embeddings.LayerNorm.bias": "res1.norm.bias"}),
     "the embeddings' LayerNorm is our `embeddings.norm`, not a layer's res1.norm."),
]


def _same_name(got, wrong) -> bool:
    return (got is None and wrong is None) or (isinstance(got, str) and got == wrong)


_RAISED = object()  # stands for "the function raised" when comparing answers


def _answers(fn, names, time_limit) -> list:
    """``fn``'s answer for each name (``_RAISED`` where it raised or ran too long)."""
    out = []
    for name in names:
        try:
            out.append(call_learner(fn, "our_name", Case((name,), None), time_limit))
        except CheckFailed:
            out.append(_RAISED)
    return out


def _probe_names() -> list[str]:
    """Every kind of name, for telling apart mistakes that agree on one name."""
    layer = [f"encoder.layer.{i}.{module}.{p}"
             for i in (2, 10) for module in _layer_parts() for p in ("weight", "bias")]
    return list(CHECKPOINT_NAMES) + layer


def _name_mistake(fn, got, case: Case, time_limit) -> str | None:
    """The explanation of the known mistake that gives ``got`` on ``case`` and agrees most
    with the learner's function on the other names (several mistakes can give the same
    wrong name for one tensor: matching by name endings and swapping the norms both send
    attention.output.LayerNorm to res2.norm)."""
    candidates = []
    for wrong, explanation in list(case.mistakes) + _NAME_MISTAKES:
        if callable(wrong):
            try:
                wrong_answer = wrong(*copy.deepcopy(case.args))
            except Exception:
                continue
        else:
            wrong_answer = wrong
        if _same_name(got, wrong_answer) and not _same_name(got, case.expected):
            candidates.append((wrong, explanation))
    if len(candidates) <= 1:
        return candidates[0][1] if candidates else None
    probes = _probe_names()
    mine = _answers(fn, probes, time_limit)

    def agreement(wrong) -> int:
        if not callable(wrong):
            return 0
        theirs = [wrong(name) for name in probes]
        return sum(a is not _RAISED and _same_name(a, b) for a, b in zip(mine, theirs))

    best = max(candidates, key=lambda c: agreement(c[0]))  # the first of equals wins
    return best[1]


def check_our_name(our_name, names: Sequence[str] | None = None, *, time_limit: float | None = DEFAULT_TIME_LIMIT,
                   quiet: bool = False) -> None:
    """Check ``our_name(checkpoint_name) -> str | None`` on ``names`` (default
    :data:`CHECKPOINT_NAMES`) against :func:`our_name_reference`."""
    fn_name = "our_name"
    if not callable(our_name):
        kind = "None" if our_name is None else _a(type(our_name).__name__)
        raise CheckFailed(f"`{fn_name}` should be a function, but it is {kind}: run the cell that defines "
                          f"`def {fn_name}(...)` first.")
    names = CHECKPOINT_NAMES if names is None else names
    for checkpoint_name in names:
        case = Case((checkpoint_name,), our_name_reference(checkpoint_name), about=repr(checkpoint_name),
                    hint=_HINTS.get(checkpoint_name), mistakes=_CASE_MISTAKES.get(checkpoint_name, ()))
        try:
            got = call_learner(our_name, fn_name, case, time_limit)
        except CheckFailed as failure:
            if case.hint and failure.learner_traceback is not None:  # it raised: the hint may say why
                raise CheckFailed(f"{failure} Hint: {case.hint}", failure.learner_traceback) from None
            raise
        if _same_name(got, case.expected):
            continue
        lead = f"`{fn_name}({checkpoint_name!r})`"
        if callable(got):
            raise CheckFailed(f"{lead} returned a function: did you forget to call it?")
        if got is not None and not isinstance(got, str):
            raise CheckFailed(f"{lead} returned {_a(type(got).__name__)}; expected a string such as "
                              "'layers.0.self_attn.q_proj.weight', or None for a tensor our model does not use.")
        if case.expected is None:
            message = (f"{lead} returned {got!r}; expected None: our model has no parameter for this tensor "
                       "(see UNUSED_WEIGHTS in the listing).")
        elif got is None:
            message = (f"{lead} returned None, as if our model did not use this tensor; expected "
                       f"{case.expected!r} (and if you did not mean None: does every branch end with `return`?).")
        else:
            message = f"{lead} returned {got!r}; expected {case.expected!r}."
        named = _name_mistake(our_name, got, case, time_limit)
        if named:
            raise CheckFailed(f"{message} Likely cause: {named}")
        if case.hint:
            raise CheckFailed(f"{message} Hint: {case.hint}")
        raise CheckFailed(message)
    if not quiet:
        print(f"\u2713 `{fn_name}` passes all {len(names)} checks.")


# ------------------------------------------------------------ typical mistakes: pooling
def _pool_parts(hidden, mask):
    hidden = torch.as_tensor(hidden)
    m = torch.as_tensor(mask).to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return hidden, m


def _pool_plain_mean(hidden, mask):
    return torch.as_tensor(hidden).mean(dim=1)


def _pool_sum(hidden, mask):
    h, m = _pool_parts(hidden, mask)
    return (h * m).sum(dim=1)


def _pool_by_T(hidden, mask):
    h, m = _pool_parts(hidden, mask)
    return (h * m).sum(dim=1) / h.shape[1]


def _pool_by_batch_count(hidden, mask):
    h, m = _pool_parts(hidden, mask)
    return (h * m).sum(dim=1) / m.sum()


def _pool_inverted(hidden, mask):
    h, m = _pool_parts(hidden, mask)
    return mean_pool_reference(h, (m[..., 0] == 0).to(h.dtype))


def _pool_cls(hidden, mask):
    return torch.as_tensor(hidden)[:, 0]


def _pool_normalised(hidden, mask):
    return torch.nn.functional.normalize(mean_pool_reference(hidden, mask), dim=-1)


def _pool_max(hidden, mask):
    h, m = _pool_parts(hidden, mask)
    return h.masked_fill(m == 0, float("-inf")).amax(dim=1)


_POOL_MISTAKES = [
    (_pool_plain_mean, "it averages the padding positions too: multiply by the mask before summing over the "
                       "tokens, and divide by the number of real tokens."),
    (_pool_sum, "it sums the real tokens' vectors without dividing by how many there are: divide by "
                "mask.sum(dim=1, keepdim=True)."),
    (_pool_by_T, "it divides by T, the padded length: divide by the number of real tokens of each sentence, "
                 "mask.sum(dim=1, keepdim=True)."),
    (_pool_by_batch_count, "it divides by the number of real tokens in the whole batch: count each sentence's "
                           "own tokens, mask.sum(dim=1, keepdim=True)."),
    (_pool_inverted, "it averages the padding instead of the tokens: the mask is 1 on real tokens and 0 on padding."),
    (_pool_cls, "it returns the first token's vector ([CLS] pooling): this model averages the real tokens."),
    (_pool_normalised, "it also scales the result to unit length: mean_pool returns the mean; l2_normalize is "
                       "the separate next step."),
    (_pool_max, "it takes the largest value of each feature (max pooling): average the real tokens instead."),
]


def check_mean_pool(mean_pool) -> None:
    """Check ``mean_pool(hidden, mask)``: ``(B, T, E)`` and ``(B, T)`` tensors -> ``(B, E)``."""
    ref = mean_pool_reference
    g = torch.Generator().manual_seed(71)
    tiny = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]], dtype=torch.float64)  # (1, 3, 2)
    tiny_mask = torch.tensor([[1, 1, 0]])
    h2 = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)
    m2 = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    h3 = torch.randn(3, 5, 4, generator=g, dtype=torch.float64) * 3 + 1
    m3 = torch.tensor([[True, True, True, False, False], [True] * 5, [True, False, False, False, False]])
    h4 = torch.randn(2, 3, 6, generator=g, dtype=torch.float64)
    m4 = torch.ones(2, 3, dtype=torch.long)
    h5 = torch.randn(2, 3, 2, generator=g, dtype=torch.float64)
    m5 = torch.tensor([[1, 1, 0], [0, 0, 0]])
    cases = [
        Case((tiny, tiny_mask), ref(tiny, tiny_mask).numpy(),
             about="hidden = [[[1, 2], [3, 4], [100, 100]]], mask = [[1, 1, 0]]",
             hint="by hand: the third token is padding and must not count, so the result is "
                  "[(1 + 3) / 2, (2 + 4) / 2] = [[2, 3]], shape (B, E) = (1, 2)."),
        Case((h2, m2), ref(h2, m2).numpy(), about="hidden of shape (2, 4, 3), sentences of 4 and 2 tokens",
             hint="divide each sentence's sum by its own number of real tokens: mask.sum(dim=1, keepdim=True)."),
        Case((h3, m3), ref(h3, m3).numpy(), about="hidden of shape (3, 5, 4), a boolean mask",
             hint="the mask may hold booleans: convert it with mask.to(hidden.dtype) (or .float()) before "
                  "multiplying, and use it as (B, T, 1) so that it broadcasts over the features."),
        Case((h4, m4), ref(h4, m4).numpy(), about="hidden of shape (2, 3, 6), no padding",
             hint="without padding the result is the plain mean over the tokens, hidden.mean(dim=1)."),
        Case((h5, m5), ref(h5, m5).numpy(), about="hidden of shape (2, 3, 2), the second sentence all padding",
             hint="a sentence without a single real token would divide 0 by 0: clamp the count, "
                  "count.clamp(min=1e-9), as sentence-transformers does, so that it gets zeros."),
    ]
    check_function(mean_pool, "mean_pool", cases, params=["hidden", "mask"], mistakes=_POOL_MISTAKES)


# ------------------------------------------------------------ typical mistakes: GQA
def _gqa_parts(q, k, v):
    q, k, v = (torch.as_tensor(x) for x in (q, k, v))
    return q, k, v, q.shape[0] // k.shape[0]


def _gqa_with(q, k, v, *, kv_index=None, mask="causal", scale=None, softmax_dim=-1):
    q, k, v, n_rep = _gqa_parts(q, k, v)
    H, T, d = q.shape
    index = torch.tensor([kv_index(i, n_rep, k.shape[0]) for i in range(H)]) if kv_index else \
        torch.arange(H) // n_rep
    k, v = k[index], v[index]  # (H, T, d)
    scores = q @ k.transpose(-2, -1) / (math.sqrt(d) if scale is None else scale)
    if mask == "causal":
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    elif mask == "flipped":
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).tril(-1), float("-inf"))
    w = torch.softmax(scores, dim=softmax_dim)
    return w @ v, w


def _gqa_mask_after_softmax(q, k, v):
    _, w = _gqa_with(q, k, v, mask=None)
    T = w.shape[-1]
    w = w * torch.ones(T, T, dtype=w.dtype).tril()
    k, v = torch.as_tensor(k), torch.as_tensor(v)
    n_rep = w.shape[0] // v.shape[0]
    return w @ v.repeat_interleave(n_rep, dim=0), w


_GQA_MISTAKES = [
    (lambda q, k, v: _gqa_with(q, k, v, kv_index=lambda i, n_rep, h_kv: i % h_kv),
     "it tiles the key/value heads (0, 1, 0, 1, ...), as k.repeat does: query head i uses key/value head "
     "i // (H // H_kv) (0, 0, 1, 1, ...), which is what k.repeat_interleave(H // H_kv, dim=0) gives."),
    (lambda q, k, v: _gqa_with(q, k, v, kv_index=lambda i, n_rep, h_kv: 0),
     "every query head uses key/value head 0: query head i uses head i // (H // H_kv)."),
    (lambda q, k, v: _gqa_with(q, k, v, mask=None),
     "there is no causal mask: position t may attend only to the keys s <= t; set the scores above the "
     "diagonal to -inf before the softmax."),
    (lambda q, k, v: _gqa_with(q, k, v, mask="flipped"),
     "the causal mask is flipped: it hides the past instead of the future; mask the scores above the "
     "diagonal (torch.triu(..., diagonal=1)), not below it."),
    (lambda q, k, v: _gqa_with(q, k, v, scale=1.0),
     "the scores are not scaled: divide q @ k^T by sqrt(d), d being the size of one head."),
    (lambda q, k, v: _gqa_with(q, k, v, scale=torch.as_tensor(q).shape[-1]),
     "the scores are divided by d: divide them by sqrt(d)."),
    (lambda q, k, v: _gqa_mask_after_softmax(q, k, v),
     "it masks after the softmax: the weights left no longer sum to 1; set the future scores to -inf before "
     "the softmax instead."),
    (lambda q, k, v: _gqa_with(q, k, v, softmax_dim=-2),
     "the softmax runs over the queries (dim=-2): each query's weights over the keys must sum to 1, dim=-1."),
]


def _qkv(g: torch.Generator, H: int, H_kv: int, T: int, d: int):
    q = torch.randn(H, T, d, generator=g, dtype=torch.float64)
    k = torch.randn(H_kv, T, d, generator=g, dtype=torch.float64)
    v = torch.randn(H_kv, T, d, generator=g, dtype=torch.float64)
    return q, k, v


def _expected_gqa(q, k, v):
    out, w = grouped_query_attention_reference(q, k, v)
    return out.numpy(), w.numpy()


def check_grouped_query_attention(grouped_query_attention) -> None:
    """Check ``grouped_query_attention(q, k, v) -> (out, weights)``, causal, with ``q`` ``(H, T, d)``
    and ``k``, ``v`` ``(H_kv, T, d)``."""
    g = torch.Generator().manual_seed(72)
    q1 = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[2.0, 1.0], [1.0, -1.0]]], dtype=torch.float64)  # (2, 2, 2)
    k1 = torch.zeros(1, 2, 2, dtype=torch.float64)
    v1 = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=torch.float64)  # (1, 2, 2)
    cases = [
        Case((q1, k1, v1), _expected_gqa(q1, k1, v1), about="2 query heads, 1 key/value head, T = 2, keys all 0",
             hint="by hand: every score is 0, so with the causal mask the weights of each head are "
                  "[[1, 0], [0.5, 0.5]] and the output is [[1, 0], [0.5, 0.5]]; return (out, weights)."),
        Case(_qkv(g, 4, 2, 3, 4), None, about="4 query heads sharing 2 key/value heads, T = 3, d = 4",
             hint="query heads 0 and 1 use key/value head 0, heads 2 and 3 use head 1; divide the scores by "
                  "sqrt(d) and mask the future."),
        Case(_qkv(g, 9, 3, 5, 8), None, about="SmolLM2's grouping: 9 query heads, 3 key/value heads, T = 5",
             hint="read H, H_kv, T and d from the shapes; each key/value head serves H // H_kv query heads."),
        Case(_qkv(g, 3, 3, 4, 2), None, about="3 query heads and 3 key/value heads (ordinary multi-head)",
             hint="with H_kv = H every query head has its own key/value head."),
        Case(_qkv(g, 4, 1, 6, 3), None, about="4 query heads sharing 1 key/value head (multi-query), T = 6"),
    ]
    cases = [dataclasses.replace(c, expected=_expected_gqa(*c.args)) if c.expected is None else c for c in cases]
    check_function(grouped_query_attention, "grouped_query_attention", cases, params=["q", "k", "v"],
                   outputs=("out", "weights"), properties=[rows_sum_to_one()], mistakes=_GQA_MISTAKES)
