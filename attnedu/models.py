r"""A GPT: a character-level causal language model built from the course's own blocks (chapter 6).

Read it top to bottom, like nanoGPT's model file:

* :class:`GPTConfig`: the numbers that define a model;
* :class:`GPT`: token embedding + learned position embedding, a stack of
  :class:`attnedu.nn.DecoderBlock` (causal self-attention, no cross-attention, pre-norm), a
  final LayerNorm and an output layer that *shares* the token embedding's matrix;
* :class:`CausalSelfAttention`: the GPT's attention written for itself (chapter 6's exercise),
  with the parameter names of the blocks' attention, and :func:`kv_cache_step`, one decoding
  step of it with a KV cache; ``GPT(config, attention=CausalSelfAttention)`` builds its blocks
  around it;
* :func:`parameter_count`: the number of parameters, derived from the config by formula
  (:func:`gpt_parameter_count` from the sizes alone);
* :func:`next_token_loss`: the mean cross-entropy of the next token, the loss :meth:`GPT.forward` returns;
* sampling: :func:`top_k_filter`, :func:`top_p_filter` and :func:`sample_next`, which
  :meth:`GPT.generate` uses one token at a time, with a :class:`attnedu.nn.KVCache` per layer.

Generation has one API for the course's decoder-only models (this GPT and chapter 7's
:class:`attnedu.llama.Llama` / :class:`attnedu.pretrained.smollm.SmolLM`):
``generate(ids, max_new_tokens, *, temperature=0.0, top_k=None, top_p=None, seed=None)``
takes a list of token ids, a ``(T,)`` or a ``(B, T)`` tensor, decodes greedily at temperature 0,
and returns only the new ids, as a ``torch.long`` tensor ``(n,)`` or ``(B, n)`` matching the
prompt.

.. math::
    h_0 = W_{te}[x] + W_{pe}[0..T), \quad h_\ell = \mathrm{Block}_\ell(h_{\ell-1}), \quad
    \mathrm{logits} = \mathrm{LN}(h_L)\, W_{te}^\top
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnedu._validate import dropout_rate, non_negative_int, non_negative_number, positive_int, probability
from attnedu.functional import causal_mask
from attnedu.nn import DecoderBlock, KVCache

__all__ = ["GPTConfig", "GPT", "CausalSelfAttention", "kv_cache_step", "parameter_count", "gpt_parameter_count",
           "next_token_loss", "top_k_filter", "top_p_filter", "sample_next", "SHIPPED_CHECKPOINT"]

#: A small trained GPT that the project ships (3.2 MB, float32), for chapter 6: the chapter's model
#: (4 blocks, 4 heads, d_model 128, context 64, no biases, 808,064 parameters) trained for nanoGPT's
#: 2,000 iterations on :func:`attnedu.corpus.python_corpus` of Python 3.11 (validation loss 1.58).
#: Load it with ``GPT.load(SHIPPED_CHECKPOINT)``; its vocabulary is in the returned notes. Made, and
#: reproduced, by ``.venv/bin/python benchmarks/gpt_train.py --threads 1 --save attnedu/data/gpt-python-2000.pt``.
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "data" / "gpt-python-2000.pt"


@dataclass
class GPTConfig:
    """The shape of a :class:`GPT`.

    Attributes:
        vocab_size: ``V``, the number of distinct tokens.
        context: ``T_max``, the context length: the most tokens the model looks at (the rows
            of the position embedding).
        n_layer: number of decoder blocks.
        n_head: attention heads per block; ``d_model`` must be divisible by it.
        d_model: ``C``, the width of every token's vector.
        d_ff: the width of the feed-forward blocks; ``None`` (the default) is GPT-2's ``4 * d_model``.
        dropout: dropout probability (embeddings, attention weights, residual branches).
        bias: biases in the linear layers and LayerNorms (nanoGPT's default is ``False``).
    """

    vocab_size: int
    context: int
    n_layer: int
    n_head: int
    d_model: int
    d_ff: int | None = None
    dropout: float = 0.0
    bias: bool = True

    def __post_init__(self):
        for name in ("vocab_size", "context", "n_layer", "n_head", "d_model"):
            positive_int(getattr(self, name), f"GPTConfig.{name}")
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        positive_int(self.d_ff, "GPTConfig.d_ff")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}: "
                             "each head needs d_model / n_head features")
        dropout_rate(self.dropout, "GPTConfig.dropout")


def parameter_count(config: GPTConfig, non_embedding: bool = False) -> int:
    r"""The number of parameters of ``GPT(config)``, by formula.

    With ``C = d_model``, ``F = d_ff``, ``V = vocab_size``, ``T = context``, ``L = n_layer`` and
    ``b = 1`` if ``config.bias`` else ``0``:

    * token embedding ``V C`` (the output layer reuses it: 0 more), position embedding ``T C``;
    * per block: two LayerNorms ``2 (C + b C)``; attention, four ``C x C`` projections
      ``4 C^2 + 4 b C``; feed-forward ``C -> F -> C``: ``2 C F + b (F + C)``;
      in all ``4 C^2 + 2 C F + (2 + 7 b) C + b F``, which is ``12 C^2 + (2 + 11 b) C`` for
      GPT-2's ``F = 4 C``;
    * final LayerNorm ``C + b C``.

    ``non_embedding=True`` leaves out the position embedding (nanoGPT's convention: the
    token embedding stays, as it is also the output layer).
    """
    if not isinstance(config, GPTConfig):
        raise ValueError(f"parameter_count needs a GPTConfig, got {type(config).__name__}")
    C, F, V, T, L = config.d_model, config.d_ff, config.vocab_size, config.context, config.n_layer
    b = int(config.bias)
    per_block = 4 * C * C + 2 * C * F + (2 + 7 * b) * C + b * F
    total = V * C + T * C + L * per_block + (1 + b) * C
    return total - T * C if non_embedding else total


def gpt_parameter_count(vocab_size: int, context: int, n_layer: int, d_model: int, bias: bool = True) -> int:
    r"""The number of parameters of a GPT with GPT-2's ``d_ff = 4 d_model``: :func:`parameter_count` from the sizes.

    With ``V, T, L, C`` and ``b = 1`` if ``bias`` else ``0``:

    .. math::
        N = \underbrace{VC}_{\text{tokens, tied}} + \underbrace{TC}_{\text{positions}}
          + L\,\big(12C^2 + (2 + 11b)\,C\big) + \underbrace{(1 + b)\,C}_{\text{final LN}}

    The number of heads does not appear: the heads split ``C`` features, they add none. A size that is
    not a positive integer raises ``ValueError`` naming it.
    """
    return parameter_count(GPTConfig(vocab_size=vocab_size, context=context, n_layer=n_layer, n_head=1,
                                     d_model=d_model, bias=bool(bias)))


def next_token_loss(logits, targets) -> Tensor:
    r"""The mean cross-entropy of next-token predictions, over every position of every row.

    .. math::
        \mathcal{L} = -\frac{1}{BT} \sum_{b, t} \log \mathrm{softmax}(z_{b,t})_{y_{b,t}}

    Args:
        logits: ``(B, T, V)``, the scores ``z`` of every token at every position.
        targets: ``(B, T)`` integer ids ``y`` in ``[0, V)``, the token that comes next; ``-1`` marks a
            position that does not count (the mean is over the others).

    Returns:
        A 0-d tensor: ``F.cross_entropy`` on the flattened ``(B*T, V)`` logits and ``(B*T,)`` targets.
    """
    logits, targets = torch.as_tensor(logits), torch.as_tensor(targets)
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"logits must be (B, T, V) and targets (B, T), got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise ValueError(f"targets must be integer token ids, got dtype {targets.dtype}")
    if not torch.is_floating_point(logits):
        logits = logits.to(torch.get_default_dtype())
    V = logits.shape[-1]
    if targets.numel() and (int(targets.min()) < -1 or int(targets.max()) >= V):
        raise ValueError(f"targets must be in [0, V={V}) (or -1, ignored), got min {int(targets.min())}, "
                         f"max {int(targets.max())}")
    return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1).long(), ignore_index=-1)  # (B*T, V), (B*T,)


# ----------------------------------------------------------------------------- sampling
def _check_logits(logits: Tensor) -> None:
    if not isinstance(logits, Tensor) or not torch.is_floating_point(logits) or logits.dim() < 1:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating-point tensor (..., V), got {shape}")


def _check_sampling(temperature, top_k, top_p) -> None:
    non_negative_number(temperature, "temperature")
    if top_k is not None:
        positive_int(top_k, "top_k")
    if top_p is not None:
        probability(top_p, "top_p")


def _prompt_ids(ids, vocab_size: int) -> tuple[Tensor, bool]:
    """A prompt as a ``(B, T)`` ``torch.long`` tensor, and whether it came as a batch.

    ``ids``: a list of ints or a ``(T,)`` integer tensor (one prompt), or a ``(B, T)`` one.
    """
    try:
        t = ids if isinstance(ids, Tensor) else torch.as_tensor(ids)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"ids must be a list of token ids, a (T,) or a (B, T) tensor of them, "
                         f"got {type(ids).__name__}") from None
    if t.dim() not in (1, 2) or t.shape[-1] == 0:
        raise ValueError(f"ids must be a non-empty list of token ids, a (T,) or a (B, T) tensor of them, "
                         f"got shape {tuple(t.shape)}")
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise ValueError(f"ids must hold integer token ids, got dtype {t.dtype}")
    if int(t.min()) < 0 or int(t.max()) >= vocab_size:
        raise ValueError(f"ids holds token ids outside [0, {vocab_size}): min {int(t.min())}, max {int(t.max())}")
    batched = t.dim() == 2
    return (t if batched else t[None]).long(), batched


def _generation_options(ids, max_new_tokens, temperature, top_k, top_p, seed, vocab_size: int,
                        device=None) -> tuple[Tensor, bool, int, torch.Generator | None]:
    """The checked arguments of a ``generate`` call: ``(prompt (B, T) on device, batched, n_new, generator)``.

    The generator is seeded by ``seed`` when sampling (``temperature > 0``); ``None`` otherwise.
    """
    idx, batched = _prompt_ids(ids, vocab_size)
    n_new = non_negative_int(max_new_tokens, "max_new_tokens")
    _check_sampling(temperature, top_k, top_p)
    if seed is not None:
        non_negative_int(seed, "seed")
    idx = idx.to(device) if device is not None else idx
    generator = None
    if seed is not None and temperature > 0:
        generator = torch.Generator(device=idx.device).manual_seed(seed)
    return idx, batched, n_new, generator


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of each row, set the others to ``-inf``.

    ``(..., V) -> (..., V)``. Exactly ``k`` survive even when values tie; ``k >= V`` keeps all.
    """
    _check_logits(logits)
    return _top_k(logits, positive_int(k, "top_k"))


def _top_k(logits: Tensor, k: int) -> Tensor:
    if k >= logits.shape[-1]:
        return logits
    values, idx = torch.topk(logits, k, dim=-1)  # (..., k)
    return torch.full_like(logits, float("-inf")).scatter_(-1, idx, values)  # the k back in their places


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability sums to ``>= p``.

    ``(..., V) -> (..., V)``, the others set to ``-inf``. Tokens are taken in order of
    decreasing probability; a token is kept if the probability of the tokens before it is
    still ``< p`` (so the most likely token always stays). ``p = 1`` keeps all.
    """
    _check_logits(logits)
    return _top_p(logits, probability(p, "top_p"))


def _top_p(logits: Tensor, p: float) -> Tensor:
    if p >= 1.0:
        return logits
    probs = torch.softmax(logits, dim=-1)  # (..., V)
    sorted_probs, order = probs.sort(dim=-1, descending=True)  # (..., V)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs  # mass of the more likely tokens
    drop_sorted = before >= p
    drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sample_next(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    r"""Draw one token per row from ``softmax(logits / temperature)``, after top-k, then top-p.

    ``(B, V) -> (B, 1)`` token ids. ``temperature = 0`` is greedy decoding (the argmax; no
    random number is drawn), the limit of ever smaller temperatures.
    """
    _check_logits(logits)
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, V), got shape {tuple(logits.shape)}")
    _check_sampling(temperature, top_k, top_p)
    return _sample(logits, temperature, top_k, top_p, generator)


def _sample(logits: Tensor, temperature: float, top_k: int | None, top_p: float | None,
            generator: torch.Generator | None) -> Tensor:
    """:func:`sample_next` without the checks, for :meth:`GPT.generate`, which checks once."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    logits = logits / temperature
    if top_k is not None:
        logits = _top_k(logits, top_k)
    if top_p is not None:
        logits = _top_p(logits, top_p)
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)


# ----------------------------------------------------------------------------- the GPT's attention
class CausalSelfAttention(nn.Module):
    r"""Multi-head causal self-attention, the attention of a GPT block, written for that case alone.

    ``forward(x)``: ``x`` ``(B, T, d_model)`` -> ``(B, T, d_model)``. With ``H = n_head`` heads of
    ``d_head = d_model / H`` features each:

    .. math::
        q, k, v = x W_q, x W_k, x W_v \quad \text{split into } H \text{ heads, } (B, H, T, d_{head}) \\
        \mathrm{out} = \mathrm{concat}_h\!\left(\mathrm{softmax}\!\left(\frac{q_h k_h^\top}{\sqrt{d_{head}}}
            + M\right) v_h\right) W_o, \qquad M_{ij} = 0 \text{ if } j \le i \text{ else } -\infty

    Its layers are named as those of the blocks' :class:`attnedu.nn.MultiHeadAttention`
    (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, each ``nn.Linear(d_model, d_model)``), so
    the weights of a :class:`GPT` built either way load into the other. It has no KV cache of its
    own: :func:`kv_cache_step` is one decoding step of it.

    Args:
        d_model: ``C``, the width of every token's vector; divisible by ``n_head``.
        n_head: ``H``, the number of heads.
        bias: biases in the four projections.
    """

    def __init__(self, d_model: int, n_head: int, bias: bool = True):
        super().__init__()
        d_model, n_head = positive_int(d_model, "d_model"), positive_int(n_head, "n_head")
        if d_model % n_head:
            raise ValueError(f"d_model={d_model} is not divisible by n_head={n_head}: "
                             "each head needs d_model / n_head features")
        self.n_head = n_head
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)  # W_q of all heads side by side
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W_o

    def forward(self, x: Tensor) -> Tensor:
        C = self.q_proj.in_features
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != C:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be (B, T, {C}), got {got}")
        B, T, _ = x.shape
        H, d_head = self.n_head, C // self.n_head
        q, k, v = (proj(x).view(B, T, H, d_head).transpose(1, 2)  # (B, T, C) -> (B, H, T, d_head)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)  # (B, H, T, T)
        allowed = torch.from_numpy(causal_mask(T)).to(x.device)  # (T, T), True where a query may attend
        scores = scores.masked_fill(~allowed, float("-inf"))  # the future gets probability 0
        weights = torch.softmax(scores, dim=-1)  # (B, H, T, T): each query's weights over the keys
        out = (weights @ v).transpose(1, 2).reshape(B, T, C)  # the heads side by side again: (B, T, C)
        return self.out_proj(out)  # (B, T, C)


def kv_cache_step(attn: nn.Module, x_new: Tensor, cache: tuple[Tensor, Tensor] | None = None
                  ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    r"""One decoding step of causal self-attention with a KV cache: the newest position only.

    The new position's query attends over every cached key and its own: as the last position,
    it may see all of them, so no mask is needed. Stepping through a sequence one position at
    a time, from ``cache=None``, gives exactly ``attn(x)`` on the whole sequence.

    Args:
        attn: a :class:`CausalSelfAttention` (or a module with its ``n_head`` and four layers).
        x_new: ``(B, 1, C)``, the newest position's input.
        cache: ``(k, v)``, the keys and values of the ``t`` positions before it, each
            ``(B, H, t, d_head)``; ``None`` when there are none yet.

    Returns:
        ``(out, (k, v))``: ``out`` ``(B, 1, C)``, and the cache with the new position appended
        at the end, each ``(B, H, t + 1, d_head)``.
    """
    C = attn.q_proj.in_features
    if not isinstance(x_new, Tensor) or x_new.dim() != 3 or x_new.shape[1:] != (1, C):
        got = tuple(x_new.shape) if isinstance(x_new, Tensor) else type(x_new).__name__
        raise ValueError(f"x_new must be (B, 1, {C}): one new position, got {got}")
    B, H = x_new.shape[0], attn.n_head
    q, k, v = (proj(x_new).view(B, 1, H, C // H).transpose(1, 2)  # (B, H, 1, d_head) each
               for proj in (attn.q_proj, attn.k_proj, attn.v_proj))
    if cache is not None:
        k_old, v_old = cache
        if k_old.shape[:2] != (B, H) or k_old.shape[-1] != C // H or v_old.shape != k_old.shape:
            raise ValueError(f"cache must be two (B, H, t, d_head) = ({B}, {H}, t, {C // H}) tensors, got "
                             f"{tuple(k_old.shape)} and {tuple(v_old.shape)}")
        k, v = torch.cat([k_old, k], dim=2), torch.cat([v_old, v], dim=2)  # (B, H, t + 1, d_head)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(C // H), dim=-1)  # (B, H, 1, t + 1)
    out = (weights @ v).transpose(1, 2).reshape(B, 1, C)  # (B, 1, C)
    return attn.out_proj(out), (k, v)


class _StepCache:
    """The ``(k, v)`` pair of one block whose attention steps with a ``kv_step`` function."""

    def __init__(self):
        self.pair: tuple[Tensor, Tensor] | None = None

    def __len__(self) -> int:
        return 0 if self.pair is None else self.pair[0].shape[2]


class _AttentionBlock(DecoderBlock):
    """A GPT block whose self-attention is any module ``(B, T, C) -> (B, T, C)`` (with a cache:
    stepped one position at a time by ``kv_step``). It is built as a pre-norm
    :class:`DecoderBlock` whose ``self_attn`` is then replaced, so the names of its parameters are
    a ``DecoderBlock``'s and the weights of either load into the other."""

    def __init__(self, attention, kv_step, d_model: int, n_head: int, d_ff: int, dropout: float, bias: bool):
        super().__init__(d_model, n_head, d_ff, dropout=dropout, norm_first=True, bias=bias)
        self.self_attn = attention(d_model, n_head, bias=bias)
        self.kv_step = kv_step

    def forward(self, x: Tensor, cache: _StepCache | None = None) -> Tensor:
        def attend(h):  # h: (B, T, C)
            if cache is None:
                return self.drop(self.self_attn(h))
            outs = []
            for t in range(h.shape[1]):  # one new position at a time, each appended to the cache
                out, cache.pair = self.kv_step(self.self_attn, h[:, t:t + 1], cache.pair)
                outs.append(out)
            return self.drop(torch.cat(outs, dim=1))

        x = self.res1(x, attend)  # x + attention(LN(x)): (B, T, C)
        return self.res3(x, self.ff)  # x + feed-forward(LN(x)): (B, T, C)


def _check_attention(attn, d_model: int, n_head: int, bias: bool) -> None:
    """A ``ValueError`` naming what a GPT's own attention module lacks: the four ``(d_model, d_model)``
    layers (their weights load by name) and ``n_head``."""
    if not isinstance(attn, nn.Module):
        raise ValueError(f"attention(d_model, n_head, bias=...) must build an nn.Module, got {type(attn).__name__}")
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        layer = getattr(attn, name, None)
        if not isinstance(layer, nn.Linear) or (layer.in_features, layer.out_features) != (d_model, d_model) \
                or (layer.bias is not None) != bias:
            raise ValueError(f"the attention module needs `{name} = nn.Linear({d_model}, {d_model}, bias={bias})`, "
                             f"got {layer!r}")
    if getattr(attn, "n_head", None) != n_head:
        raise ValueError(f"the attention module needs `n_head = {n_head}`, got {getattr(attn, 'n_head', None)!r}")


# ----------------------------------------------------------------------------- the model
class GPT(nn.Module):
    """A decoder-only Transformer language model. See the module docstring for the picture.

    Args:
        config: its sizes, a :class:`GPTConfig`.
        attention: ``None`` (the default): the blocks are :class:`attnedu.nn.DecoderBlock`, whose
            attention is :class:`attnedu.nn.MultiHeadAttention`, with its fast path and its
            :class:`~attnedu.nn.KVCache`. Or a class (or factory) called as
            ``attention(d_model, n_head, bias=config.bias)``, such as :class:`CausalSelfAttention`
            or the learner's own: a module ``(B, T, C) -> (B, T, C)`` with the layers ``q_proj``,
            ``k_proj``, ``v_proj``, ``out_proj`` and the attribute ``n_head``; every block's
            self-attention is then one of these (``config.dropout`` still applies to the residual
            branches and the embeddings, not to the attention weights). The parameters have the
            same names either way, so the weights of one load into the other.
        kv_step: with ``attention``, the function of one decoding step that :meth:`generate` uses
            with its cache, ``kv_step(attn, x_new, cache) -> (out, cache)`` (default
            :func:`kv_cache_step`).
    """

    def __init__(self, config: GPTConfig, *, attention=None, kv_step=None):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        if attention is None and kv_step is not None:
            raise ValueError("kv_step is the decoding step of a given attention: pass attention=... too")
        if attention is not None and not callable(attention):
            raise ValueError(f"attention must be a class or a function that builds the module, got "
                             f"{type(attention).__name__}")
        if kv_step is not None and not callable(kv_step):
            raise ValueError(f"kv_step must be a function, got {type(kv_step).__name__}")
        self.config = config
        C = config.d_model
        self.wte = nn.Embedding(config.vocab_size, C)  # token embedding
        self.wpe = nn.Embedding(config.context, C)  # learned position embedding
        self.drop = nn.Dropout(config.dropout)
        if attention is None:
            self.blocks = nn.ModuleList(
                DecoderBlock(C, config.n_head, config.d_ff, dropout=config.dropout, norm_first=True,
                             bias=config.bias)
                for _ in range(config.n_layer)
            )
        else:
            self.blocks = nn.ModuleList(
                _AttentionBlock(attention, kv_step or kv_cache_step, C, config.n_head, config.d_ff,
                                config.dropout, config.bias)
                for _ in range(config.n_layer)
            )
            _check_attention(self.blocks[0].self_attn, C, config.n_head, config.bias)
        self.ln_f = nn.LayerNorm(C, bias=config.bias)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        # Weight tying: reading a token in and writing it out use one matrix, (V, C).
        self.lm_head.weight = self.wte.weight
        self._init_weights()

    @property
    def kv_step(self):
        """The decoding step used with the cache (blocks built with ``attention=`` only; else ``None``)."""
        return getattr(self.blocks[0], "kv_step", None)

    @kv_step.setter
    def kv_step(self, step) -> None:
        if not isinstance(self.blocks[0], _AttentionBlock):
            raise ValueError("only a GPT built with attention=... steps with a kv_step")
        if not callable(step):
            raise ValueError(f"kv_step must be a function, got {type(step).__name__}")
        for block in self.blocks:
            block.kv_step = step

    def _init_weights(self) -> None:
        """GPT-2's initialisation, as in nanoGPT: N(0, 0.02) weights, zero biases, and the
        projections that write into the residual stream scaled by ``1 / sqrt(2 n_layer)``
        so that the stream's variance does not grow with depth."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for block in self.blocks:
            for proj in (block.self_attn.out_proj, block.ff.fc2):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))

    def num_parameters(self, non_embedding: bool = False) -> int:
        """The number of parameters (the tied matrix counted once); equals :func:`parameter_count`."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a shared tensor once
        return n - self.wpe.weight.numel() if non_embedding else n

    # ------------------------------------------------------------------ forward
    def _check_ids(self, ids: Tensor, context: int | None = None) -> None:
        if not isinstance(ids, Tensor):
            raise ValueError(f"ids must be a (B, T) tensor of token ids (torch.long), got {type(ids).__name__}")
        if ids.dim() != 2 or ids.dtype != torch.long:
            hint = " (a single sequence? use ids[None])" if ids.dim() == 1 else ""
            raise ValueError(f"ids must be a (B, T) tensor of token ids (torch.long), got shape "
                             f"{tuple(ids.shape)} and dtype {ids.dtype}{hint}")
        if ids.shape[1] == 0:
            raise ValueError(f"ids has shape {tuple(ids.shape)}: it needs at least one token")
        if context is not None and ids.shape[1] > context:
            raise ValueError(f"ids has shape {tuple(ids.shape)}: {ids.shape[1]} tokens, more than "
                             f"context={context}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"ids holds token ids outside [0, vocab_size={self.config.vocab_size}): "
                             f"min {int(ids.min())}, max {int(ids.max())}")

    def _hidden(self, ids: Tensor, caches: list[KVCache] | None = None) -> Tensor:
        """``(B, T)`` ids -> ``(B, T, C)`` final hidden states. With ``caches`` (one per block),
        ``ids`` holds only the new tokens, which sit at positions ``len(cache) ..``."""
        B, T = ids.shape
        past = len(caches[0]) if caches is not None else 0
        pos = torch.arange(past, past + T, device=ids.device)  # (T,)
        x = self.drop(self.wte(ids) + self.wpe(pos))  # (B, T, C) + (T, C)
        for i, block in enumerate(self.blocks):
            # the block builds the causal mask itself: (T, past + T), True where a query may attend
            x = block(x, cache=caches[i] if caches is not None else None)  # (B, T, C)
        return self.ln_f(x)  # (B, T, C)

    def forward(self, ids: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Next-token logits for every position, and the loss if ``targets`` are given.

        Args:
            ids: ``(B, T)`` token ids, ``T <= context``.
            targets: ``(B, T)`` the next token at every position (``-1`` = ignore), or ``None``.

        Returns:
            ``(logits, loss)``: logits ``(B, T, V)``; loss the mean cross-entropy, a scalar, or
            ``None`` without targets.
        """
        self._check_ids(ids, context=self.config.context)
        logits = self.lm_head(self._hidden(ids))  # (B, T, V)
        loss = None
        if targets is not None:
            if not isinstance(targets, Tensor) or targets.shape != ids.shape:
                shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
                raise ValueError(f"targets must have the shape of ids {tuple(ids.shape)}, got {shape}")
            loss = next_token_loss(logits, targets)
        return logits, loss

    # ------------------------------------------------------------------ generation
    def generate(self, ids, max_new_tokens: int, *, temperature: float = 0.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, use_cache: bool = True) -> Tensor:
        """The ``max_new_tokens`` tokens that continue the prompt ``ids``, drawn one at a time.

        At each step the model reads the sequence so far (its last ``context`` tokens), and
        :func:`sample_next` draws the next token from its last position's logits with
        ``temperature``, ``top_k`` and ``top_p``; ``temperature=0`` (the default) is greedy
        decoding, the most likely token every time.

        With ``use_cache`` (the fast path), a :class:`~attnedu.nn.KVCache` per block keeps the
        keys and values of the positions already read: the prompt is read once (the
        *prefill*), then each step feeds in only the newest token. Without it (the readable
        path) every step reads the whole window again. Both give the same tokens. (A GPT built
        with ``attention=`` keeps a ``(k, v)`` pair per block instead, and feeds every position,
        the prompt's too, through its ``kv_step`` one at a time.)

        Past the context window: once the sequence is longer than ``context``, the window
        slides, and every token moves to a new position. With learned *absolute* position
        embeddings that changes every cached key and value, so no cache can be reused: from
        then on ``generate`` recomputes the cropped window at each step, exactly as without a
        cache (the cache speeds up the first ``context`` tokens and never changes the result).

        The model is put in eval mode (no dropout) while generating, then restored. It runs
        under ``torch.inference_mode()`` (no autograd bookkeeping at all, a little faster than
        ``no_grad``); the result is an ordinary tensor, which may be fed back into training.

        Args:
            ids: the prompt: a list of token ids, a ``(T,)`` or a ``(B, T)`` integer tensor
                (``T >= 1``; a prompt longer than ``context`` is cropped to its last ``context`` tokens).
            max_new_tokens: how many tokens to add, ``>= 0``.
            temperature: ``> 0`` divides the logits; ``0`` is greedy decoding.
            top_k: sample among the ``top_k`` most likely tokens only (``None``: all).
            top_p: sample from the smallest set of tokens of total probability ``>= top_p``.
            seed: seeds the sampling, for reproducible samples (``None``: torch's global generator).
            use_cache: use a KV cache.

        Returns:
            The new tokens only, a ``torch.long`` tensor: ``(max_new_tokens,)`` for a list or a
            ``(T,)`` prompt, ``(B, max_new_tokens)`` for a ``(B, T)`` one. (The same API as
            chapter 7's :meth:`attnedu.llama.Llama.generate`.)
        """
        idx, batched, n_new, generator = _generation_options(
            ids, max_new_tokens, temperature, top_k, top_p, seed, self.config.vocab_size, self.wte.weight.device)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                out = self._generate(idx, n_new, temperature, top_k, top_p, use_cache, generator)
        finally:
            self.train(was_training)
        new = out[:, idx.shape[1]:].clone()  # an inference-mode tensor could not be saved for a backward pass
        return new if batched else new[0]

    def _generate(self, idx, max_new_tokens, temperature, top_k, top_p, use_cache, generator) -> Tensor:
        """The prompt ``idx`` ``(B, T)`` followed by ``max_new_tokens`` new tokens."""
        T_max = self.config.context
        caches = None
        if use_cache and max_new_tokens:
            caches = [_StepCache() if isinstance(block, _AttentionBlock) else KVCache() for block in self.blocks]
            h = self._hidden(idx[:, -T_max:], caches)  # prefill: (B, T, C), fills every cache
        for step in range(max_new_tokens):
            if caches is not None and step > 0:
                if len(caches[0]) < T_max:
                    h = self._hidden(idx[:, -1:], caches)  # only the newest token: (B, 1, C)
                else:
                    caches = None  # the window starts to slide: see the docstring
            if caches is None:
                h = self._hidden(idx[:, -T_max:])  # the whole window again: (B, T, C)
            logits = self.lm_head(h[:, -1, :])  # (B, V), the last position only
            next_id = _sample(logits, temperature, top_k, top_p, generator)  # (B, 1), checked once, up front
            idx = torch.cat([idx, next_id], dim=1)  # (B, T + 1)
        return idx

    # ------------------------------------------------------------------ checkpoints
    def save(self, path, dtype: torch.dtype | None = None, **extra) -> None:
        """Save the config, the weights (cast to ``dtype`` if given, e.g. ``torch.float16`` to
        halve the file) and any ``extra`` entries (a vocabulary, training notes) to ``path``."""
        reserved = {"config", "state_dict"} & set(extra)
        if reserved:
            raise ValueError(f"extra entries may not be named {sorted(reserved)}")
        state, cast = {}, {}
        for name, tensor in self.state_dict().items():
            key = tensor.data_ptr()  # the tied matrix appears twice: cast (and save) it once
            if key not in cast:
                cast[key] = tensor.detach().to(dtype) if dtype is not None else tensor.detach()
            state[name] = cast[key]
        # str subclasses (torch.__version__ is one) would not load with weights_only=True
        extra = {k: str(v) if isinstance(v, str) else v for k, v in extra.items()}
        torch.save({"config": asdict(self.config), "state_dict": state, **extra}, path)

    @classmethod
    def load(cls, path, map_location="cpu") -> tuple["GPT", dict]:
        """The model saved by :meth:`save` (float32, in eval mode), and the dict of its extra entries."""
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        unknown = set(checkpoint["config"]) - {f.name for f in fields(GPTConfig)}
        if unknown:
            raise ValueError(f"the checkpoint's config has fields GPTConfig does not know: {sorted(unknown)}")
        model = cls(GPTConfig(**checkpoint["config"]))
        model.load_state_dict({k: v.float() for k, v in checkpoint["state_dict"].items()})
        model.eval()
        extra = {k: v for k, v in checkpoint.items() if k not in ("config", "state_dict")}
        return model, extra
