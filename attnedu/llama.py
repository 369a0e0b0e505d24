r"""A Llama-style decoder: the architecture of SmolLM2 and of most open chat models (chapter 7).

Read it top to bottom, like chapter 6's GPT (:mod:`attnedu.models`):

* :class:`GroupedQueryAttention`: causal self-attention in which groups of query heads share
  one key/value head, with rotary positions (:class:`attnedu.rope.RotaryEmbedding`) inside;
  :func:`grouped_query_attention` is its equation for one sequence (chapter 7's exercise);
* :class:`RMSNorm`: LayerNorm without the centring and the bias;
* :class:`SwiGLU`: the gated feed-forward block;
* :class:`LlamaConfig`: the numbers that define the model; :func:`kv_cache_mib`, the memory
  its KV cache takes (what grouped-query attention saves);
* :class:`LlamaBlock`: pre-norm residual blocks,
  :math:`x \leftarrow x + \mathrm{GQA}(\mathrm{RMSNorm}(x))`, then
  :math:`x \leftarrow x + \mathrm{SwiGLU}(\mathrm{RMSNorm}(x))`;
* :class:`Llama`: token embedding, the blocks, a final RMSNorm, and an output layer that shares
  the embedding's matrix (tied embeddings), with :meth:`Llama.generate`. Unlike GPT there is no
  position embedding: positions enter only through the rotation of queries and keys.

.. math::
    h_0 = W_{te}[x], \quad h_\ell = \mathrm{Block}_\ell(h_{\ell-1}), \quad
    \mathrm{logits} = \mathrm{RMSNorm}(h_L)\, W_{te}^\top

:mod:`attnedu.pretrained.smollm` reads SmolLM2's GGUF file into these modules and adds the
tokenizer and the chat template (:class:`attnedu.pretrained.smollm.SmolLM`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnedu._validate import positive_int, positive_number
from attnedu.functional import causal_mask
from attnedu.models import _generation_options, _sample
from attnedu.nn import KVCache
from attnedu.rope import RotaryEmbedding

__all__ = ["grouped_query_attention", "GroupedQueryAttention", "RMSNorm", "SwiGLU", "LlamaConfig", "kv_cache_mib",
           "LlamaBlock", "Llama"]


def _fused_weight(module: nn.Module, layers: tuple[nn.Linear, ...]) -> Tensor:
    """The weights of ``layers`` stacked into one matrix, for one matrix product instead of several.

    Under autograd the stack is built anew each call, so gradients reach every layer; without
    gradients (generation) it is kept on ``module`` until a weight changes.
    """
    if torch.is_grad_enabled():
        return torch.cat([layer.weight for layer in layers])
    key = tuple((w.data_ptr(), 0 if w.is_inference() else w._version) for w in (layer.weight for layer in layers))
    cached = module.__dict__.get("_fused_cache")
    if cached is not None and cached[0] == key:
        return cached[1]
    weight = torch.cat([layer.weight for layer in layers])
    module.__dict__["_fused_cache"] = (key, weight)
    return weight


# --------------------------------------------------------------------------- the attention
def grouped_query_attention(q, k, v) -> tuple[Tensor, Tensor]:
    r"""One step of causal grouped-query attention, the equation of :class:`GroupedQueryAttention`
    for one sequence, without the projections and the rotation.

    ``q``: ``(H, T, d)`` queries; ``k``, ``v``: ``(H_kv, T, d)`` keys and values, ``H`` divisible
    by ``H_kv`` (tensors or arrays). Query head ``i`` uses key/value head ``g(i) = i // (H / H_kv)``
    (heads ``0 .. H/H_kv - 1`` share head 0, and so on), and position ``t`` sees the keys ``s <= t``:

    .. math::
        A_i = \mathrm{softmax}\!\left(\frac{q_i k_{g(i)}^\top}{\sqrt d} + M\right), \qquad
        \mathrm{out}_i = A_i\, v_{g(i)}

    Returns ``(out, weights)``: ``(H, T, d)`` and ``(H, T, T)``.
    """
    q, k, v = (torch.as_tensor(x) for x in (q, k, v))
    q, k, v = (x if torch.is_floating_point(x) else x.to(torch.get_default_dtype()) for x in (q, k, v))
    if q.dim() != 3:
        raise ValueError(f"q must be (heads, T, d), got shape {tuple(q.shape)}")
    H, T, d = q.shape
    if k.dim() != 3 or k.shape != v.shape or k.shape[1:] != (T, d):
        raise ValueError(f"k {tuple(k.shape)} and v {tuple(v.shape)} must both be (H_kv, T, d) = (H_kv, {T}, {d}) "
                         f"to match q {tuple(q.shape)}")
    if k.shape[0] < 1 or H % k.shape[0]:
        raise ValueError(f"k: {H} query heads cannot be shared evenly by {k.shape[0]} key/value heads")
    n_rep = H // k.shape[0]
    k, v = k.repeat_interleave(n_rep, dim=0), v.repeat_interleave(n_rep, dim=0)  # (H, T, d): heads 0,0,..,1,1,..
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (H, T, T)
    allowed = torch.from_numpy(causal_mask(T)).to(scores.device)  # (T, T), True = may attend
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)  # (H, T, T)
    return weights @ v, weights  # (H, T, d), (H, T, T)


class GroupedQueryAttention(nn.Module):
    r"""Causal self-attention in which groups of query heads share one key/value head.

    With ``H`` query heads and ``H_kv`` key/value heads (``H`` divisible by ``H_kv``), query
    head ``i`` attends with key/value head ``g(i) = \lfloor i / (H / H_kv) \rfloor``:

    .. math::
        h_i = \mathrm{softmax}\!\left(\frac{R(q_i) R(k_{g(i)})^\top}{\sqrt{d_h}} + M\right) v_{g(i)},
        \qquad \mathrm{GQA}(x) = \mathrm{concat}(h_1, \dots, h_H)\, W_o

    where :math:`R` is the rotary position embedding (if any) and :math:`M` the causal mask
    (:func:`attnedu.functional.causal_mask`). ``H_kv = H`` is ordinary multi-head attention;
    ``H_kv = 1`` is multi-query attention. The gain is in generation: the :class:`KVCache`
    holds ``H_kv`` heads, not ``H`` (SmolLM2 caches 3 heads instead of 9, a third of the memory
    and of the memory traffic).

    Args:
        d_model: ``E``, the size of the input and of the output.
        n_head: ``H``, the number of query heads.
        n_kv_head: ``H_kv``, the number of key/value heads; ``H % H_kv == 0``.
        head_dim: ``d_h`` (default ``E // H``).
        bias: biases on the four projections (Llama has none).
        rope: ``None`` or a callable ``rope(x, start) -> x`` that rotates ``x`` ``(B, heads, T, d_h)``
            as positions ``start..start+T-1``, e.g. :class:`attnedu.rope.RotaryEmbedding`.
        fast: use ``scaled_dot_product_attention`` when the weights are not asked for.

    ``forward(x, cache=None, need_weights=False)``: ``x`` ``(B, T, E)``; returns
    ``(out, weights)`` like :class:`attnedu.nn.MultiHeadAttention`: ``out`` ``(B, T, E)`` and,
    with ``need_weights=True``, the per-head weights ``(B, H, T, S)`` (else ``None``). With a
    :class:`KVCache`, ``x`` holds only the new positions; they attend to every cached one.
    """

    def __init__(self, d_model: int, n_head: int, n_kv_head: int, head_dim: int | None = None,
                 bias: bool = False, rope=None, *, fast: bool = True):
        super().__init__()
        d_model, n_head = positive_int(d_model, "d_model"), positive_int(n_head, "n_head")
        n_kv_head = positive_int(n_kv_head, "n_kv_head")
        if n_head % n_kv_head:
            raise ValueError(f"n_head={n_head} is not divisible by n_kv_head={n_kv_head}: "
                             "each key/value head must serve the same number of query heads")
        if head_dim is None:
            if d_model % n_head:
                raise ValueError(f"d_model={d_model} is not divisible by n_head={n_head}; pass head_dim")
            head_dim = d_model // n_head
        head_dim = positive_int(head_dim, "head_dim")
        self.d_model, self.n_head, self.n_kv_head, self.head_dim = d_model, n_head, n_kv_head, head_dim
        self.n_rep = n_head // n_kv_head  # query heads per key/value head
        self.q_proj = nn.Linear(d_model, n_head * head_dim, bias=bias)  # W_q of all query heads
        self.k_proj = nn.Linear(d_model, n_kv_head * head_dim, bias=bias)  # only H_kv key heads...
        self.v_proj = nn.Linear(d_model, n_kv_head * head_dim, bias=bias)  # ...and value heads
        self.out_proj = nn.Linear(n_head * head_dim, d_model, bias=bias)  # W_o
        self.rope, self.fast = rope, fast

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q ``(B, T, H*dh)``, k and v ``(B, T, H_kv*dh)``: one fused product when not training."""
        layers = (self.q_proj, self.k_proj, self.v_proj)
        if torch.is_grad_enabled() or self.q_proj.bias is not None:
            return self.q_proj(x), self.k_proj(x), self.v_proj(x)
        qkv = F.linear(x, _fused_weight(self, layers))  # (B, T, (H + 2 H_kv) dh)
        sizes = (self.n_head * self.head_dim, self.n_kv_head * self.head_dim, self.n_kv_head * self.head_dim)
        return qkv.split(sizes, dim=-1)

    def forward(self, x: Tensor, cache: KVCache | None = None, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must be (B, T, {self.d_model}), got shape {tuple(x.shape)}")
        B, T, _ = x.shape
        H, Hkv, dh = self.n_head, self.n_kv_head, self.head_dim
        past = len(cache) if cache is not None else 0

        q, k, v = self._project(x)
        q = q.view(B, T, H, dh).transpose(1, 2)  # (B, H, T, dh)
        k = k.view(B, T, Hkv, dh).transpose(1, 2)  # (B, H_kv, T, dh)
        v = v.view(B, T, Hkv, dh).transpose(1, 2)  # (B, H_kv, T, dh)
        if self.rope is not None:  # rotate by the absolute positions past..past+T-1
            q, k = self.rope(q, past), self.rope(k, past)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, H_kv, S, dh), S = past + T

        if need_weights or not self.fast:
            # The explicit path: give every query head its group's key/value head, then the equation.
            k = k.repeat_interleave(self.n_rep, dim=1)  # (B, H, S, dh): heads 0,0,0,1,1,1,2,2,2
            v = v.repeat_interleave(self.n_rep, dim=1)  # (B, H, S, dh)
            scores = (q * (1.0 / math.sqrt(dh))) @ k.transpose(-2, -1)  # (B, H, T, S)
            if T > 1:  # query t (absolute position past + t) may only see keys up to it
                allowed = torch.from_numpy(causal_mask(T, past)).to(x.device)  # (T, S)
                scores = scores.masked_fill(~allowed, float("-inf"))
            weights = torch.softmax(scores, dim=-1)  # (B, H, T, S)
            out = weights @ v  # (B, H, T, dh)
        else:
            weights = None
            out = self._sdpa(q, k, v, past)  # (B, H, T, dh)

        out = out.transpose(1, 2).reshape(B, T, H * dh)  # concatenate the heads: (B, T, H*dh)
        return self.out_proj(out), weights  # (B, T, E)

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, past: int) -> Tensor:
        """The fast path: one fused kernel, same result as the explicit path."""
        B, H, T, dh = q.shape
        Hkv = k.shape[1]
        if T == 1:
            # One new token sees every key: no mask. Stack the query heads of a group as rows,
            # so the group's key/value head is shared without copying it.
            q = q.view(B, Hkv, self.n_rep, dh)  # (B, H_kv, n_rep, dh): heads in group order
            out = F.scaled_dot_product_attention(q, k, v)  # (B, H_kv, n_rep, dh)
            return out.view(B, H, 1, dh)
        k = k.repeat_interleave(self.n_rep, dim=1)  # (B, H, S, dh)
        v = v.repeat_interleave(self.n_rep, dim=1)
        if past == 0:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        allowed = torch.from_numpy(causal_mask(T, past)).to(q.device)  # (T, S), True = may attend
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_head={self.n_head}, n_kv_head={self.n_kv_head}, "
                f"head_dim={self.head_dim}, fast={self.fast}")


# --------------------------------------------------------------------------- norm and MLP
class RMSNorm(nn.Module):
    r"""Root-mean-square normalisation: LayerNorm without the centring and without a bias.

    .. math::
        \mathrm{RMSNorm}(x) = \frac{x}{\sqrt{\frac{1}{d}\sum_j x_j^2 + \epsilon}} \odot g

    ``(..., d) -> (..., d)``. The statistic is computed in float32 whatever the input's
    dtype, as Llama does. With ``fast=True`` (and torch >= 2.4), float32 inputs go through the
    fused ``torch.nn.functional.rms_norm``, which gives the same bits in one kernel.
    """

    def __init__(self, d: int, eps: float = 1e-6, *, fast: bool = True):
        super().__init__()
        d = positive_int(d, "d")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps!r}")
        self.weight = nn.Parameter(torch.ones(d))  # g
        self.eps, self.fast = eps, fast

    def forward(self, x: Tensor) -> Tensor:
        if self.fast and x.dtype == torch.float32 and hasattr(F, "rms_norm"):
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)  # (..., d), unit RMS
        return self.weight * x.to(dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class SwiGLU(nn.Module):
    r"""The gated feed-forward block of Llama (Shazeer, 2020):

    .. math::
        \mathrm{SwiGLU}(x) = W_{down}\,\big(\mathrm{SiLU}(W_{gate}\,x) \odot W_{up}\,x\big),
        \qquad \mathrm{SiLU}(z) = z\,\sigma(z)

    ``(B, T, d_model) -> (B, T, d_model)`` through a hidden size ``d_ff``. The gate decides,
    feature by feature, how much of the "up" projection passes.
    """

    def __init__(self, d_model: int, d_ff: int, bias: bool = False):
        super().__init__()
        d_model, d_ff = positive_int(d_model, "d_model"), positive_int(d_ff, "d_ff")
        self.gate_proj = nn.Linear(d_model, d_ff, bias=bias)  # (d_model -> d_ff)
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)  # (d_model -> d_ff)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)  # (d_ff -> d_model)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() or self.gate_proj.bias is not None:
            gate, up = self.gate_proj(x), self.up_proj(x)  # (B, T, d_ff) each
        else:  # one product for both when not training
            gate, up = F.linear(x, _fused_weight(self, (self.gate_proj, self.up_proj))).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)  # (B, T, d_model)


# --------------------------------------------------------------------------- the model
@dataclass
class LlamaConfig:
    """The shape of a :class:`Llama` (defaults: SmolLM2-135M: 30 layers, 576 wide, 9 query heads
    sharing 3 key/value heads of 64 features, an MLP 1536 wide, 49152 tokens, 8192 positions).

    Attributes:
        vocab_size: ``V``, the number of distinct tokens.
        d_model: ``E``, the width of every token's vector.
        n_layer: number of :class:`LlamaBlock`.
        n_head, n_kv_head: query heads, and key/value heads (``n_head % n_kv_head == 0``).
        head_dim: ``d_h``, the size of each head.
        d_ff: the hidden size of the :class:`SwiGLU` block.
        rope_base: the base of the rotary frequencies.
        rms_eps: the :class:`RMSNorm` epsilon.
        context: the most tokens the model reads: the rotary table's length.
    """

    vocab_size: int = 49152
    d_model: int = 576
    n_layer: int = 30
    n_head: int = 9
    n_kv_head: int = 3
    head_dim: int = 64
    d_ff: int = 1536
    rope_base: float = 100000.0
    rms_eps: float = 1e-5
    context: int = 8192

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layer", "n_head", "n_kv_head", "head_dim", "d_ff", "context"):
            positive_int(getattr(self, name), f"LlamaConfig.{name}")
        positive_number(self.rope_base, "LlamaConfig.rope_base")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}")


def kv_cache_mib(config: LlamaConfig | None = None, tokens: int | None = None, *, n_kv_head: int | None = None,
                 bytes_per_number: int = 4) -> float:
    r"""The memory a KV cache takes, in MiB (:math:`2^{20}` bytes): a key and a value of ``head_dim``
    numbers for every key/value head of every layer, for every token.

    .. math:: 2 \cdot n_{layer} \cdot n_{kv\_head} \cdot d_h \cdot T \cdot \text{bytes per number} \,/\, 2^{20}

    Args:
        config: the model's shape (default: ``LlamaConfig()``, SmolLM2-135M).
        tokens: ``T``, the tokens cached (default: a full context, ``config.context``).
        n_kv_head: key/value heads (default: the config's; ``config.n_head`` gives the cache of
            ordinary multi-head attention).
        bytes_per_number: 4 for float32, 2 for float16.

    ``kv_cache_mib()`` is SmolLM2's cache for a full context of 8,192 tokens in float32: 360 MiB
    (with 9 key/value heads instead of 3, 1,080 MiB).
    """
    config = LlamaConfig() if config is None else config
    tokens = config.context if tokens is None else positive_int(tokens, "tokens")
    n_kv_head = config.n_kv_head if n_kv_head is None else positive_int(n_kv_head, "n_kv_head")
    numbers = 2 * config.n_layer * n_kv_head * config.head_dim * tokens  # keys and values
    return numbers * positive_int(bytes_per_number, "bytes_per_number") / 2**20


class LlamaBlock(nn.Module):
    """One pre-norm decoder block: ``(B, T, E) -> (B, T, E)``."""

    def __init__(self, config: LlamaConfig, rope: RotaryEmbedding):
        super().__init__()
        c = config
        self.attn_norm = RMSNorm(c.d_model, c.rms_eps)
        self.attn = GroupedQueryAttention(c.d_model, c.n_head, c.n_kv_head, c.head_dim, bias=False, rope=rope)
        self.mlp_norm = RMSNorm(c.d_model, c.rms_eps)
        self.mlp = SwiGLU(c.d_model, c.d_ff)

    def forward(self, x: Tensor, cache: KVCache | None = None) -> Tensor:
        x = x + self.attn(self.attn_norm(x), cache)[0]  # (B, T, E)
        return x + self.mlp(self.mlp_norm(x))  # (B, T, E)


class Llama(nn.Module):
    """A Llama-style decoder-only language model. See the module docstring for the picture."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise ValueError(f"Llama needs a LlamaConfig, got {type(config).__name__}")
        self.config = c = config
        self.rope = RotaryEmbedding(c.head_dim, c.context, c.rope_base, layout="adjacent")  # shared by all layers
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.blocks = nn.ModuleList(LlamaBlock(c, self.rope) for _ in range(c.n_layer))
        self.norm = RMSNorm(c.d_model, c.rms_eps)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied: one (V, E) matrix in and out

    def forward(self, ids: Tensor, caches: list[KVCache] | None = None, last_only: bool = False) -> Tensor:
        """``ids`` ``(B, T)`` -> logits ``(B, T, V)`` (``(B, 1, V)`` with ``last_only``).

        With ``caches`` (one :class:`KVCache` per block), ``ids`` are the new tokens only and
        continue the cached positions.
        """
        x = self.tok_emb(ids)  # (B, T, E)
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[i])
        if last_only:
            x = x[:, -1:]  # (B, 1, E): the output layer is the largest matrix; skip the rows not needed
        return self.lm_head(self.norm(x))  # (B, T, V)

    def generate(self, ids, max_new_tokens: int, *, temperature: float = 0.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int | None = None, use_cache: bool = True,
                 stop_ids=()) -> Tensor:
        """The new token ids that continue ``ids``: the same API as :meth:`attnedu.models.GPT.generate`.

        Args:
            ids: the prompt: a list of ints, a ``(T,)`` or a ``(B, T)`` tensor of token ids.
            max_new_tokens: at most this many new tokens (``>= 0``); fewer if a row reaches a stop
                token, or the context (``config.context``) is full.
            temperature, top_k, top_p: as :func:`attnedu.models.sample_next`; ``temperature=0``
                (the default) is greedy decoding.
            seed: seeds the sampling (``temperature > 0``); ``None`` draws from torch's global generator.
            use_cache: a :class:`KVCache` per block (``False`` recomputes the whole sequence at
                every step: slow; for checking the cache).
            stop_ids: token ids that end a row (the stop token is kept). Once a row has stopped,
                it repeats its stop token until every row has stopped.

        Returns:
            The new ids only, a ``torch.long`` tensor: ``(n,)`` for a list or ``(T,)`` prompt,
            ``(B, n)`` for a ``(B, T)`` one, ``n <= max_new_tokens``.
        """
        idx, batched, n_new, generator = _generation_options(
            ids, max_new_tokens, temperature, top_k, top_p, seed, self.config.vocab_size)
        T = idx.shape[1]
        if T > self.config.context or (T == self.config.context and n_new):
            raise ValueError(f"the prompt has {T} tokens: no room left in the context of {self.config.context}")
        n_new = min(n_new, self.config.context - T)
        stop = torch.tensor(sorted(stop_ids), dtype=torch.long, device=idx.device)
        with torch.inference_mode():  # no autograd bookkeeping at all
            caches = [KVCache() for _ in self.blocks] if use_cache else None
            seq, step_input = idx, idx  # (B, T): all of it first, then one token per step
            new, done = [], torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
            for _ in range(n_new):
                logits = self(step_input if use_cache else seq, caches, last_only=True)[:, -1]  # (B, V)
                token = _sample(logits, temperature, top_k, top_p, generator)[:, 0]  # (B,)
                if new:  # a row that has stopped repeats its stop token
                    token = torch.where(done, new[-1], token)
                new.append(token)
                done |= torch.isin(token, stop)
                if bool(done.all()):
                    break
                step_input = token[:, None]  # (B, 1)
                if not use_cache:
                    seq = torch.cat([seq, step_input], dim=1)
            out = torch.stack(new, dim=1) if new else idx.new_empty(idx.shape[0], 0)  # (B, n)
        out = out.clone()  # an ordinary tensor: an inference-mode one could not be saved for a backward pass
        return out if batched else out[0]
