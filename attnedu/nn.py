"""Attention as PyTorch modules.

Chapter 3's :class:`SelfAttention` is single-head self-attention with learned projections.
Chapter 4 builds :class:`MultiHeadAttention` from scratch (:func:`mha_parameter_count` and
:func:`mha_flops` count its parameters and the FLOPs of its forward pass). It has exactly the interface
and the semantics of ``torch.nn.MultiheadAttention(batch_first=True)`` (the tests check
outputs, attention weights and gradients against it, for every kind of mask), so that
torch's module can be swapped for ours anywhere, and
:meth:`MultiHeadAttention.from_torch` copies a torch module's weights. Its arguments are
therefore torch's (``embed_dim``, ``num_heads``, boolean masks True where attention is
*blocked*): it is the one place in attnedu where torch's vocabulary is spoken.

Chapter 5 builds the Transformer's blocks on top of it: :func:`layer_norm`, :class:`FeedForward`,
:class:`EncoderBlock` (and :func:`encoder_block`, the same block written from its parts) and
:class:`DecoderBlock` (causal self-attention, optional cross-attention; :func:`cross_attention`
and :func:`decoder_block` write them out from their parts), each with pre-norm or
post-norm residual connections; a
:class:`KVCache` lets a decoder generate one token at a time without recomputing the past.
The blocks speak the course's vocabulary (``d_model``, ``n_head``, ``d_ff``; a boolean mask is
True where a position *may attend*, as :func:`attnedu.functional.causal_mask` and
:func:`attnedu.functional.padding_mask` build them) and convert once, where they call
:class:`MultiHeadAttention`. Chapter 7's Llama-style modules are in :mod:`attnedu.llama`.

Like nanoGPT's model file, the attention module has two paths: the explicit one, which computes the
attention weights as ``softmax(q @ k^T / sqrt(d) + mask)`` and is what the chapter
teaches, and a fast one through ``torch.nn.functional.scaled_dot_product_attention``,
used when the weights are not asked for. Both give the same output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnedu._validate import dropout_rate, non_negative_number, positive_int
from attnedu.functional import causal_mask

__all__ = ["KVCache", "MultiHeadAttention", "FeedForward", "EncoderBlock", "DecoderBlock"]


# --------------------------------------------------------------------------- chapter 3
__all__ += ["SelfAttention"]


class SelfAttention(nn.Module):
    r"""Single-head self-attention as a module (chapter 3):

    .. math:: \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V, \qquad Q = X W_q, \ K = X W_k, \ V = X W_v

    ``W_q``, ``W_k`` and ``W_v`` are ``nn.Linear`` layers without bias. An ``nn.Linear(d_in, d_out)`` stores its
    weight as ``(d_out, d_in)`` and computes ``x @ weight.T``, so the matrix ``W_q`` of
    :func:`attnedu.functional.self_attention` is ``self.W_q.weight.T``.

    Args:
        d_model: the size of a token; d_k: of a query and a key; d_v: of a value (default ``d_k``).

    ``forward(x)`` maps ``(..., T, d_model)`` to ``(output, weights)``, of shapes ``(..., T, d_v)`` and ``(..., T, T)``.
    """

    def __init__(self, d_model: int, d_k: int, d_v: int | None = None):
        super().__init__()
        d_model, d_k = positive_int(d_model, "d_model"), positive_int(d_k, "d_k")
        d_v = d_k if d_v is None else positive_int(d_v, "d_v")
        self.W_q = nn.Linear(d_model, d_k, bias=False)
        self.W_k = nn.Linear(d_model, d_k, bias=False)
        self.W_v = nn.Linear(d_model, d_v, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        d_model = self.W_q.in_features
        if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[-1] != d_model:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a (..., T, {d_model}) tensor, got {got}")
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)  # (..., T, d_k), (..., T, d_k), (..., T, d_v)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., T, T)
        weights = torch.softmax(scores, dim=-1)  # (..., T, T), rows sum to 1
        return weights @ v, weights  # (..., T, d_v), (..., T, T)


# --------------------------------------------------------------------------- chapter 4
def _float_mask(mask: Tensor | None, name: str, dtype: torch.dtype) -> Tensor | None:
    """A boolean mask (True = not allowed) becomes an additive float mask (-inf / 0)."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, float("-inf"))
    if not torch.is_floating_point(mask):
        raise ValueError(f"{name} must be boolean (True = not allowed) or floating-point (added), got {mask.dtype}")
    return mask.to(dtype)


def _blocked(mask: Tensor | None, name: str, shape: tuple) -> Tensor | None:
    """A mask in the course's convention (True = may attend, or 1/0) -> torch's (True = blocked).

    The one place where the blocks of this module convert; ``shape`` is the one expected.
    """
    if mask is None:
        return None
    if not isinstance(mask, Tensor) or tuple(mask.shape) != tuple(shape):
        got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{name} must be a {tuple(shape)} tensor, True where a position may attend; got {got}")
    if torch.is_floating_point(mask) or mask.is_complex():
        raise ValueError(f"{name} must be boolean (True = may attend) or 0/1 integers, got {mask.dtype}")
    return mask == 0  # True where attention is blocked


def _check_x(x: Tensor, d_model: int) -> None:
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != d_model:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be (B, T, {d_model}), got {got}")


class KVCache:
    """The projected keys and values of the positions seen so far, for one attention layer.

    Generating text one token at a time, a model would otherwise project the keys and values
    of the whole prefix again at every step. With a cache, each step projects only the new
    token and appends its key and value here. The storage grows by doubling, so appending
    one position costs one small copy, not a copy of everything cached.

    A cache is only valid while its layer's weights stay the same (new weights would make the
    cached keys and values stale), so :class:`MultiHeadAttention` also keeps its fused input
    projection here, in ``projection``, rather than checking at every step that it is current.
    """

    def __init__(self):
        self._k: Tensor | None = None  # (B, H, capacity, dh)
        self._v: Tensor | None = None
        self._n = 0
        self.projection: tuple[Tensor, Tensor | None] | None = None  # (W_qkv, b_qkv), set by the layer

    def __len__(self) -> int:
        return self._n

    @property
    def k(self) -> Tensor | None:
        """The cached keys, ``(B, H, len(self), dh)``."""
        return None if self._k is None else self._k[:, :, : self._n]

    @property
    def v(self) -> Tensor | None:
        """The cached values, ``(B, H, len(self), dh)``."""
        return None if self._v is None else self._v[:, :, : self._n]

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append ``(B, H, T_new, dh)`` keys and values; return all of them, ``(B, H, T, dh)``."""
        if self._k is not None and (k.shape[:2] != self._k.shape[:2] or k.shape[-1] != self._k.shape[-1]):
            raise ValueError(f"new keys of shape {tuple(k.shape)} do not fit the cached {tuple(self.k.shape)}")
        n, t = self._n, k.shape[2]
        if self._k is None or n + t > self._k.shape[2]:
            capacity = max(2 * (n + t), 16)
            grown_k = k.new_empty(*k.shape[:2], capacity, k.shape[-1])
            grown_v = v.new_empty(*v.shape[:2], capacity, v.shape[-1])
            if n:
                grown_k[:, :, :n] = self._k[:, :, :n]
                grown_v[:, :, :n] = self._v[:, :, :n]
            self._k, self._v = grown_k, grown_v
        # narrow + copy_: the same as self._k[:, :, n : n + t] = k, a few microseconds cheaper a step
        self._k.narrow(2, n, t).copy_(k)
        self._v.narrow(2, n, t).copy_(v)
        self._n = n + t
        return self._k.narrow(2, 0, n + t), self._v.narrow(2, 0, n + t)  # (B, H, T, dh) views


class MultiHeadAttention(nn.Module):
    r"""Multi-head attention, batch first, with the semantics of ``torch.nn.MultiheadAttention``.

    This module is the boundary with PyTorch: its signature is torch's, so that chapter 4 can
    prove it equal to ``torch.nn.MultiheadAttention`` and either can replace the other. Its
    names (``embed_dim``, ``num_heads``, ``key_padding_mask``, ``attn_mask``) and its mask
    convention (a boolean True means *blocked*) are therefore torch's, the opposite of the
    rest of attnedu, where True means *may attend*. :class:`EncoderBlock` and
    :class:`DecoderBlock` take the course's masks and convert them once, here.

    .. math::
        \mathrm{MHA}(Q, K, V) = \mathrm{concat}(h_1, \dots, h_H)\, W_o, \qquad
        h_i = \mathrm{softmax}\!\left(\frac{(Q W_q^i)(K W_k^i)^\top}{\sqrt{d_h}} + M\right) V W_v^i

    Args:
        embed_dim: ``E``, the size of the queries and of the output.
        num_heads: ``H``; ``E`` must be divisible by ``H`` (each head has ``d_h = E / H``).
        dropout: dropout probability on the attention weights (in training mode only).
        bias: add biases to the four projections.
        kdim, vdim: sizes of the keys and of the values (default ``E``).
        fast: use ``scaled_dot_product_attention`` when the weights are not needed.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 kdim: int | None = None, vdim: int | None = None, *, fast: bool = True):
        super().__init__()
        embed_dim, num_heads = positive_int(embed_dim, "embed_dim"), positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ValueError(
                f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}: "
                "each head needs embed_dim / num_heads features"
            )
        dropout = dropout_rate(dropout, "dropout")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self.dropout, self.fast = dropout, fast
        self.batch_first = True
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W_q of all heads side by side
        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)  # W_o
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # torch's initialisation: Xavier-uniform over the stacked (3E, E) input projection,
        # zero biases; the output projection keeps nn.Linear's default weights.
        bound = math.sqrt(6.0 / (self.embed_dim + 3 * self.embed_dim)) if self.kdim == self.vdim == self.embed_dim else None
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            if bound is not None:
                nn.init.uniform_(proj.weight, -bound, bound)
            else:
                nn.init.xavier_uniform_(proj.weight)
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)
        if self.out_proj.bias is not None:
            nn.init.zeros_(self.out_proj.bias)

    # ------------------------------------------------------------------ helpers
    def _project(self, query: Tensor, key: Tensor, value: Tensor,
                 cache: KVCache | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The three input projections, split into heads: ``(B, H, L, dh)``, ``(B, H, S, dh)`` twice.

        Self-attention (``query is key is value``) takes one fused matrix product, whose
        ``(B, L, 3E)`` result is split into q, k, v and heads by one reshape. During
        generation the fused matrix is built once and kept in the ``cache``.
        """
        if query is key and key is value and self.kdim == self.vdim == self.embed_dim:
            if cache is not None and cache.projection is not None and not torch.is_grad_enabled():
                weight, bias = cache.projection  # the weights cannot change while the cache lives
            else:
                weight, bias = self._fused_weights()  # (3E, E), (3E,)
                if cache is not None and not torch.is_grad_enabled():
                    cache.projection = (weight, bias)
            B, L, _ = query.shape
            qkv = F.linear(query, weight, bias).view(B, L, 3, self.num_heads, self.head_dim)
            return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, L, dh)
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)  # (B, L, E), (B, S, E) twice
        return self._split_heads(q), self._split_heads(k), self._split_heads(v)

    def _fused_weights(self) -> tuple[Tensor, Tensor | None]:
        """W_q, W_k and W_v stacked into one (3E, E) matrix (and the biases likewise).

        Under autograd the stack is built anew each call, so gradients reach the three
        layers; without gradients (generation) it is kept until a weight changes.
        """
        projections = (self.q_proj, self.k_proj, self.v_proj)
        key = tuple((p.weight.data_ptr(), p.weight._version) for p in projections)
        if not torch.is_grad_enabled() and getattr(self, "_fused", (None,))[0] == key:
            return self._fused[1], self._fused[2]
        weight = torch.cat([p.weight for p in projections])
        bias = None if self.q_proj.bias is None else torch.cat([p.bias for p in projections])
        if not torch.is_grad_enabled():
            self._fused = (key, weight, bias)
        return weight, bias

    def _split_heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, dh)

    def _check(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask, attn_mask, past: int = 0) -> None:
        if query.dim() not in (2, 3) or key.dim() != query.dim() or value.dim() != query.dim():
            raise ValueError(
                f"query, key and value must all be (B, T, E) or all (T, E); got shapes "
                f"{tuple(query.shape)}, {tuple(key.shape)} and {tuple(value.shape)}"
            )
        for name, x, size in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if x.shape[-1] != size:
                raise ValueError(f"{name} has shape {tuple(x.shape)} but this module expects its last axis to be {size}")
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"key {tuple(key.shape)} and value {tuple(value.shape)} must have the same batch and length")
        if query.dim() == 3 and query.shape[0] != key.shape[0]:
            raise ValueError(f"query {tuple(query.shape)} and key {tuple(key.shape)} have different batch sizes")
        B = query.shape[0] if query.dim() == 3 else None
        L, S = query.shape[-2], key.shape[-2] + past  # S counts the cached positions too
        if key_padding_mask is not None:
            want = (B, S) if B is not None else (S,)
            if tuple(key_padding_mask.shape) != want:
                raise ValueError(f"key_padding_mask has shape {tuple(key_padding_mask.shape)}; expected {want}")
        if attn_mask is not None:
            allowed = [(L, S), (self.num_heads * (B or 1), L, S)]
            if tuple(attn_mask.shape) not in allowed:
                raise ValueError(
                    f"attn_mask has shape {tuple(attn_mask.shape)}; expected {allowed[0]} or {allowed[1]} "
                    "(batch * num_heads, L, S)"
                )

    # ------------------------------------------------------------------ forward
    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None,
                average_attn_weights: bool = True, is_causal: bool = False,
                cache: KVCache | None = None) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` ``(B, L, E)`` over ``key`` ``(B, S, kdim)`` / ``value`` ``(B, S, vdim)``.

        Masks follow ``torch.nn.MultiheadAttention``: a boolean True means "not allowed",
        a float mask is added to the scores. ``key_padding_mask`` is ``(B, S)``;
        ``attn_mask`` is ``(L, S)`` or ``(B * num_heads, L, S)``. ``is_causal`` is only a
        hint that ``attn_mask`` is the causal mask (which must still be given).

        With a :class:`KVCache`, the new keys and values are appended to the cached ones and
        the queries attend over all of them: masks then cover ``S = len(cache) + new``
        key positions. (This is an addition to torch's interface, for generation.)

        Returns:
            ``(output, weights)``: output ``(B, L, E)``; weights ``(B, L, S)`` averaged over
            heads, ``(B, H, L, S)`` with ``average_attn_weights=False``, or ``None`` when
            ``need_weights=False``. Unbatched ``(L, E)`` inputs give unbatched results.
        """
        past = len(cache) if cache is not None else 0
        self._check(query, key, value, key_padding_mask, attn_mask, past)
        batched = query.dim() == 3
        if not batched:  # (L, E) -> (1, L, E)
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        if is_causal and attn_mask is None:
            raise ValueError("is_causal=True is a hint about attn_mask, which must be given too (the causal mask)")
        B, L, H = query.shape[0], query.shape[1], self.num_heads

        q, k, v = self._project(query, key, value, cache)  # (B, H, L, dh), (B, H, S, dh), (B, H, S, dh)
        if cache is not None:
            k, v = cache.update(k, v)  # (B, H, past + S, dh)
        S = k.shape[2]

        # One additive float mask of shape broadcastable to (B, H, L, S), or None.
        use_causal_kernel = is_causal and key_padding_mask is None and not need_weights and past == 0
        mask = None
        if not use_causal_kernel:
            mask = _float_mask(attn_mask, "attn_mask", q.dtype)
            if mask is not None and mask.dim() == 3:
                mask = mask.view(B, H, L, S)
            pad = _float_mask(key_padding_mask, "key_padding_mask", q.dtype)
            if pad is not None:
                pad = pad.view(B, 1, 1, S)
                mask = pad if mask is None else mask + pad
        p = self.dropout if self.training else 0.0

        if need_weights or not self.fast:
            # The explicit path: the equation, line by line.
            scores = (q * (1.0 / math.sqrt(self.head_dim))) @ k.transpose(-2, -1)  # (B, H, L, S)
            if use_causal_kernel:  # is_causal: attn_mask is the causal mask (torch's contract)
                mask = _float_mask(attn_mask, "attn_mask", q.dtype)
            if mask is not None:
                scores = scores + mask
            weights = torch.softmax(scores, dim=-1)  # (B, H, L, S)
            if p > 0:
                weights = F.dropout(weights, p=p)
            out = weights @ v  # (B, H, L, dh)
        else:
            # The fast path: one fused kernel, same result.
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=use_causal_kernel)
            weights = None

        out = out.transpose(1, 2).reshape(B, L, self.embed_dim)  # concatenate the heads: (B, L, E)
        out = self.out_proj(out)  # (B, L, E)
        if need_weights:
            weights = weights.mean(dim=1) if average_attn_weights else weights  # (B, L, S) or (B, H, L, S)
        else:
            weights = None
        if not batched:
            out = out.squeeze(0)
            weights = weights.squeeze(0) if weights is not None else None
        return out, weights

    # ------------------------------------------------------------------ interop
    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> "MultiHeadAttention":
        """A :class:`MultiHeadAttention` with the weights of a ``torch.nn.MultiheadAttention``.

        Our module is always batch first: call it with ``(B, T, E)`` tensors whatever the
        torch module's ``batch_first`` was.
        """
        if not isinstance(module, nn.MultiheadAttention):
            raise ValueError(f"from_torch needs a torch.nn.MultiheadAttention, got {type(module).__name__}")
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError("add_bias_kv and add_zero_attn are not supported by attnedu's MultiHeadAttention")
        bias = module.in_proj_bias is not None
        ours = cls(module.embed_dim, module.num_heads, dropout=module.dropout, bias=bias,
                   kdim=module.kdim, vdim=module.vdim)
        ref = module.in_proj_weight if module._qkv_same_embed_dim else module.q_proj_weight
        ours.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            if module._qkv_same_embed_dim:
                wq, wk, wv = module.in_proj_weight.chunk(3)
            else:
                wq, wk, wv = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
            ours.q_proj.weight.copy_(wq)
            ours.k_proj.weight.copy_(wk)
            ours.v_proj.weight.copy_(wv)
            ours.out_proj.weight.copy_(module.out_proj.weight)
            if bias:
                bq, bk, bv = module.in_proj_bias.chunk(3)
                ours.q_proj.bias.copy_(bq)
                ours.k_proj.bias.copy_(bk)
                ours.v_proj.bias.copy_(bv)
                ours.out_proj.bias.copy_(module.out_proj.bias)
        ours.train(module.training)
        return ours

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
                f"kdim={self.kdim}, vdim={self.vdim}, fast={self.fast}")


__all__ += ["mha_parameter_count", "mha_flops"]


def mha_parameter_count(embed_dim: int, kdim: int | None = None, vdim: int | None = None, bias: bool = True) -> int:
    r"""The number of parameters of :class:`MultiHeadAttention` and of ``torch.nn.MultiheadAttention`` with these
    sizes, whatever the number of heads:

    .. math:: \underbrace{E^2}_{W_q} + \underbrace{k_\mathrm{dim} E}_{W_k} + \underbrace{v_\mathrm{dim} E}_{W_v}
        + \underbrace{E^2}_{W_o} + \underbrace{4E}_{\text{biases, if } \mathtt{bias}}

    Every projection outputs ``E`` features, so ``W_k`` is ``kdim x E`` and ``W_v`` is ``vdim x E``; ``kdim`` and
    ``vdim`` default to ``E``.
    """
    E = positive_int(embed_dim, "embed_dim")
    kd = E if kdim is None else positive_int(kdim, "kdim")
    vd = E if vdim is None else positive_int(vdim, "vdim")
    if not isinstance(bias, bool):
        raise ValueError(f"bias must be True or False, got {bias!r}")
    return 2 * E * E + (kd + vd) * E + (4 * E if bias else 0)


def mha_flops(batch: int, seq_len: int, embed_dim: int, num_heads: int) -> int:
    r"""Floating-point operations of the matrix products in one forward pass of multi-head self-attention.

    A product of an ``(m, k)`` and a ``(k, n)`` matrix costs ``2 m k n`` FLOPs (one multiply and one add per
    term). With ``B, T, E, H`` and ``d_h = E / H``:

    .. math:: \underbrace{4 \cdot 2 B T E^2}_{W_q, W_k, W_v, W_o} + \underbrace{2 B H T^2 d_h}_{Q K^\top}
        + \underbrace{2 B H T^2 d_h}_{\text{weights} \cdot V} = 8 B T E^2 + 4 B T^2 E

    Softmax, scaling and biases are left out: they grow like ``B H T^2`` or ``B T E``, not like a product of
    three sizes. It is what ``torch.utils.flop_counter.FlopCounterMode`` counts for :class:`MultiHeadAttention`
    on its explicit path (``need_weights=True``).
    """
    B, T = positive_int(batch, "batch"), positive_int(seq_len, "seq_len")
    E, H = positive_int(embed_dim, "embed_dim"), positive_int(num_heads, "num_heads")
    if E % H:
        raise ValueError(f"embed_dim={E} is not divisible by num_heads={H}")
    projections = 4 * 2 * B * T * E * E
    attention = 2 * (2 * B * H * T * T * (E // H))  # the scores, then the weighted sum
    return projections + attention


# --------------------------------------------------------------------------- chapter 5
__all__ += ["layer_norm", "encoder_block", "cross_attention", "decoder_block"]


def layer_norm(x, gamma, beta, eps: float = 1e-5) -> Tensor:
    r"""Layer normalisation of every row of ``x`` over its last axis, equal to ``torch.nn.functional.layer_norm``.

    .. math::
        \mathrm{LN}(x) = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta,
        \qquad \mu = \frac1d \sum_i x_i, \quad \sigma^2 = \frac1d \sum_i (x_i - \mu)^2

    The variance is the *biased* one (divided by ``d``, not ``d - 1``), as in ``torch.nn.LayerNorm``.

    Args:
        x: ``(..., d)`` tensor (or array).
        gamma, beta: ``(d,)``, the learned scale and shift.
        eps: added to the variance, so that a row without spread does not divide by 0.

    Returns:
        A tensor of the shape of ``x``.
    """
    x = torch.as_tensor(x)
    x = x if torch.is_floating_point(x) else x.to(torch.get_default_dtype())
    if x.dim() < 1:
        raise ValueError(f"x must have at least one axis, got shape {tuple(x.shape)}")
    gamma, beta = torch.as_tensor(gamma).to(x), torch.as_tensor(beta).to(x)
    d = x.shape[-1]
    if gamma.shape != (d,) or beta.shape != (d,):
        raise ValueError(f"gamma {tuple(gamma.shape)} and beta {tuple(beta.shape)} must both have shape ({d},) "
                         f"to match x of shape {tuple(x.shape)}")
    eps = non_negative_number(eps, "eps")
    mean = x.mean(dim=-1, keepdim=True)  # (..., 1)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # (..., 1), biased
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta  # (..., d)


def encoder_block(x, attn, ff, norm1, norm2, norm_first: bool = True) -> Tensor:
    r"""A Transformer encoder block written from its parts: what :class:`EncoderBlock` computes (without dropout
    or masks), and ``torch.nn.TransformerEncoderLayer`` given the same parts.

    Pre-norm (``norm_first=True``, GPT-2 and most recent models):

    .. math::
        h = x + \mathrm{Attn}(\mathrm{LN}_1(x)), \qquad y = h + \mathrm{FF}(\mathrm{LN}_2(h))

    Post-norm (``norm_first=False``, the original Transformer and BERT):

    .. math::
        h = \mathrm{LN}_1(x + \mathrm{Attn}(x)), \qquad y = \mathrm{LN}_2(h + \mathrm{FF}(h))

    Args:
        x: ``(B, T, d_model)``.
        attn: a self-attention module called as ``attn(q, k, v)`` that returns ``(output, weights)``
            (:class:`MultiHeadAttention`, or ``torch.nn.MultiheadAttention(batch_first=True)``).
        ff: the position-wise feed-forward module, ``(B, T, d_model) -> (B, T, d_model)``.
        norm1, norm2: the layer norms of the two sublayers.
        norm_first: pre-norm (True) or post-norm (False).

    Returns:
        ``(B, T, d_model)``.
    """
    x = torch.as_tensor(x)
    if x.dim() != 3:
        raise ValueError(f"x must be (B, T, d_model), got shape {tuple(x.shape)}")

    def self_attend(h):
        return attn(h, h, h, need_weights=False)[0]  # (B, T, d_model)

    if norm_first:
        x = x + self_attend(norm1(x))  # the residual path carries x untouched
        return x + ff(norm2(x))
    x = norm1(x + self_attend(x))
    return norm2(x + ff(x))


def cross_attention(x, memory, attn, memory_mask=None) -> tuple[Tensor, Tensor]:
    r"""Multi-head cross-attention written out: the queries come from the decoder's states ``x``,
    the keys and values from the encoder's output ``memory``, through ``attn``'s four projections.

    .. math::
        \mathrm{head}_i = \mathrm{softmax}\!\left(\frac{(x W_q^i)(m W_k^i)^\top}{\sqrt{d_h}} + M\right) m W_v^i,
        \qquad \mathrm{out} = \mathrm{concat}(\mathrm{head}_1, \dots, \mathrm{head}_H)\, W_o

    with :math:`M = -\infty` at the padded memory positions and 0 elsewhere, so that padding gets
    weight 0. It is what ``attn(x, memory, memory, key_padding_mask=~memory_mask,
    average_attn_weights=False)`` computes (without dropout), and what :class:`DecoderBlock`'s
    cross-attention sublayer computes on ``LN2(x)``.

    Args:
        x: ``(B, T, d_model)``, the decoder's states: one query per position.
        memory: ``(B, S, d_model)``, the encoder's output: one key and one value per position.
        attn: a :class:`MultiHeadAttention`, whose ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``
            and ``num_heads`` are used (not its forward).
        memory_mask: ``(B, S)`` booleans (or 0/1), True for the real memory positions and False
            for padding, the course's convention; ``None``: every position is real. Every
            sequence needs at least one real position (a row of zero weights cannot sum to 1).

    Returns:
        ``(output, weights)``: ``(B, T, d_model)`` and the per-head weights ``(B, H, T, S)``,
        each row summing to 1, zero at the padded positions.
    """
    if not all(hasattr(attn, name) for name in ("q_proj", "k_proj", "v_proj", "out_proj", "num_heads")):
        raise ValueError(f"attn must be an attnedu.nn.MultiHeadAttention, got {type(attn).__name__} "
                         "(convert torch's with MultiHeadAttention.from_torch)")
    _check_x(x, attn.embed_dim)
    if not isinstance(memory, Tensor) or memory.dim() != 3 or memory.shape[0] != x.shape[0] \
            or memory.shape[-1] != attn.kdim:
        got = tuple(memory.shape) if isinstance(memory, Tensor) else type(memory).__name__
        raise ValueError(f"memory must be (B={x.shape[0]}, S, {attn.kdim}) to go with x of shape {tuple(x.shape)}, "
                         f"got {got}")
    (B, T, _), S, H = x.shape, memory.shape[1], attn.num_heads
    blocked = _blocked(memory_mask, "memory_mask", (B, S))  # (B, S), True = padding

    def heads(t: Tensor) -> Tensor:  # (B, L, d_model) -> (B, H, L, d_h)
        return t.view(B, t.shape[1], H, attn.head_dim).transpose(1, 2)

    q = heads(attn.q_proj(x))  # (B, H, T, d_h): the decoder asks
    k, v = heads(attn.k_proj(memory)), heads(attn.v_proj(memory))  # (B, H, S, d_h): the encoder answers
    scores = q @ k.transpose(-2, -1) / math.sqrt(attn.head_dim)  # (B, H, T, S)
    if blocked is not None:  # (B, 1, 1, S): the same keys hidden from every head and every query
        scores = scores.masked_fill(blocked[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (B, H, T, S), rows sum to 1
    out = (weights @ v).transpose(1, 2).reshape(B, T, H * attn.head_dim)  # (B, T, d_model): heads side by side
    return attn.out_proj(out), weights


def decoder_block(x, memory, self_attn, cross_attn, ff, norm1, norm2, norm3, memory_mask=None) -> Tensor:
    r"""A pre-norm Transformer decoder block written from its parts: what
    :class:`DecoderBlock` ``(cross_attention=True)`` computes (without dropout, cache or padding of
    ``x``), and ``torch.nn.TransformerDecoderLayer(norm_first=True)`` given the same parts.

    .. math::
        h_1 = x + \mathrm{SelfAttn}_\text{causal}(\mathrm{LN}_1(x)), \qquad
        h_2 = h_1 + \mathrm{CrossAttn}(\mathrm{LN}_2(h_1), m), \qquad
        y = h_2 + \mathrm{FF}(\mathrm{LN}_3(h_2))

    Args:
        x: ``(B, T, d_model)``, the decoder's input; position ``t`` sees positions ``<= t`` only.
        memory: ``(B, S, d_model)``, the encoder's output ``m`` (not normalised again here).
        self_attn, cross_attn: :class:`MultiHeadAttention` modules; the cross-attention is
            :func:`cross_attention` with ``cross_attn``'s weights.
        ff: the feed-forward module; norm1, norm2, norm3: the layer norms of the three sublayers.
        memory_mask: ``(B, S)``, True for the memory's real positions (the course's convention).

    Returns:
        ``(B, T, d_model)``.
    """
    x = torch.as_tensor(x)
    if x.dim() != 3:
        raise ValueError(f"x must be (B, T, d_model), got shape {tuple(x.shape)}")
    blocked = ~torch.from_numpy(causal_mask(x.shape[1])).to(x.device)  # (T, T): torch's convention, True = blocked
    h = norm1(x)
    x = x + self_attn(h, h, h, attn_mask=blocked, need_weights=False)[0]  # causal self-attention
    x = x + cross_attention(norm2(x), memory, cross_attn, memory_mask)[0]  # read the encoder's output
    return x + ff(norm3(x))  # (B, T, d_model)


class FeedForward(nn.Module):
    r"""The position-wise feed-forward block: :math:`W_2\,\phi(W_1 x + b_1) + b_2`, applied to
    every position on its own. ``(B, T, d_model) -> (B, T, d_model)``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "gelu", bias: bool = True):
        super().__init__()
        if activation not in ("gelu", "relu"):
            raise ValueError(f"activation must be 'gelu' or 'relu', got {activation!r}")
        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)  # (d_model -> d_ff): widen
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)  # (d_ff -> d_model): back
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))  # (B, T, d_model)


class _Residual(nn.Module):
    """``x + sublayer(x)`` with a LayerNorm before (pre-norm) or after (post-norm) it.

    Pre-norm, ``x + f(LN(x))``, keeps an untouched path from the input to the output, so
    deep stacks train without a learning-rate warm-up; post-norm, ``LN(x + f(x))``, is the
    original Transformer's arrangement.
    """

    def __init__(self, d_model: int, norm_first: bool, bias: bool):
        super().__init__()
        self.norm = nn.LayerNorm(d_model, bias=bias)
        self.norm_first = norm_first

    def forward(self, x: Tensor, sublayer) -> Tensor:
        if self.norm_first:
            return x + sublayer(self.norm(x))
        return self.norm(x + sublayer(x))


class EncoderBlock(nn.Module):
    """Self-attention over the whole sequence, then a feed-forward block, each a residual.

    ``forward(x, mask=None, padding_mask=None, need_weights=False)``:

    * ``x``: ``(B, T, d_model)`` in and out;
    * ``mask``: ``(T, T)`` booleans, True where query ``i`` may attend to key ``j``
      (default: everywhere);
    * ``padding_mask``: ``(B, T)`` booleans (or 0/1), True for the real tokens and False for
      padding, which no query may attend to (``attnedu.functional.padding_mask(lengths, T)[:, 0]``
      as a tensor).

    Both are in the course's convention (True = may attend); the block converts them once to
    :class:`MultiHeadAttention`'s torch convention. With ``need_weights=True`` the per-head
    attention weights ``(B, H, T, T)`` are kept in ``self.attn_weights``.
    """

    def __init__(self, d_model: int, n_head: int, d_ff: int, dropout: float = 0.0,
                 norm_first: bool = True, bias: bool = True, activation: str = "gelu"):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_head, dropout=dropout, bias=bias)
        self.ff = FeedForward(d_model, d_ff, dropout, activation, bias)
        self.res1 = _Residual(d_model, norm_first, bias)
        self.res2 = _Residual(d_model, norm_first, bias)
        self.drop = nn.Dropout(dropout)
        self.attn_weights: Tensor | None = None

    def forward(self, x: Tensor, mask: Tensor | None = None, padding_mask: Tensor | None = None,
                need_weights: bool = False) -> Tensor:
        _check_x(x, self.res1.norm.normalized_shape[0])
        T = x.shape[1]
        blocked = _blocked(mask, "mask", (T, T))  # torch's convention from here on
        padding = _blocked(padding_mask, "padding_mask", (x.shape[0], T))

        def attend(h):
            out, w = self.self_attn(h, h, h, key_padding_mask=padding, attn_mask=blocked,
                                    need_weights=need_weights, average_attn_weights=False)
            self.attn_weights = w
            return self.drop(out)

        x = self.res1(x, attend)  # (B, T, d_model)
        return self.res2(x, self.ff)  # (B, T, d_model)


class DecoderBlock(nn.Module):
    """Causal self-attention, optional cross-attention to an encoder's output, feed-forward.

    ``forward(x, memory=None, mask=None, padding_mask=None, memory_padding_mask=None,
    cache=None, need_weights=False)``:

    * ``x``: ``(B, T, d_model)``; position ``t`` sees positions ``<= t`` only.
    * ``mask``: ``(T, past + T)`` booleans, True where query ``i`` may attend to key ``j``;
      default :func:`attnedu.functional.causal_mask` ``(T, past)``, built here (``past`` is
      the number of cached positions, 0 without a cache).
    * ``padding_mask``: ``(B, past + T)``, True for real tokens, False for padding.
    * ``memory``: ``(B, S, d_model)``, the encoder's output, for cross-attention
      (``cross_attention=True`` blocks only); ``memory_padding_mask`` ``(B, S)``, True for its
      real positions.
    * ``cache``: a :class:`KVCache` for the self-attention: ``x`` holds only the new
      positions, which attend to every cached one and causally among themselves.

    Every mask is in the course's convention (True = may attend); the block converts them
    once to :class:`MultiHeadAttention`'s torch convention. With cross-attention and pre-norm,
    it computes :func:`decoder_block` on its parts (``self_attn``, ``cross_attn``, ``ff``, and
    ``res1.norm``, ``res2.norm``, ``res3.norm``), whose cross-attention sublayer is
    :func:`cross_attention`; the tests hold the two equal.

    With ``need_weights=True``, ``self.attn_weights`` (self-attention) and
    ``self.cross_weights`` hold the per-head weights.
    """

    def __init__(self, d_model: int, n_head: int, d_ff: int, dropout: float = 0.0,
                 norm_first: bool = True, bias: bool = True, cross_attention: bool = False,
                 activation: str = "gelu"):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_head, dropout=dropout, bias=bias)
        self.cross_attn = MultiHeadAttention(d_model, n_head, dropout=dropout, bias=bias) if cross_attention else None
        self.ff = FeedForward(d_model, d_ff, dropout, activation, bias)
        self.res1 = _Residual(d_model, norm_first, bias)
        self.res2 = _Residual(d_model, norm_first, bias) if cross_attention else None
        self.res3 = _Residual(d_model, norm_first, bias)
        self.drop = nn.Dropout(dropout)
        self.attn_weights: Tensor | None = None
        self.cross_weights: Tensor | None = None

    def forward(self, x: Tensor, memory: Tensor | None = None, mask: Tensor | None = None,
                padding_mask: Tensor | None = None, memory_padding_mask: Tensor | None = None,
                cache: KVCache | None = None, need_weights: bool = False) -> Tensor:
        if memory is not None and self.cross_attn is None:
            raise ValueError("this DecoderBlock has no cross-attention: build it with cross_attention=True")
        if memory is None and self.cross_attn is not None:
            raise ValueError("this DecoderBlock has cross-attention: pass the encoder's output as memory")
        _check_x(x, self.res1.norm.normalized_shape[0])
        B, T = x.shape[:2]
        past = len(cache) if cache is not None else 0
        causal = mask is None
        if causal and not (T == 1 and padding_mask is None):
            mask = torch.from_numpy(causal_mask(T, past)).to(x.device)  # (T, past + T), True = may attend
        # (one new token may look at everything before it: no mask needed at all)
        blocked = _blocked(mask, "mask", (T, past + T))  # torch's convention from here on
        padding = _blocked(padding_mask, "padding_mask", (B, past + T))
        memory_padding = None
        if memory is not None:
            memory_padding = _blocked(memory_padding_mask, "memory_padding_mask", (B, memory.shape[1]))

        def self_attend(h):
            out, w = self.self_attn(h, h, h, attn_mask=blocked, key_padding_mask=padding,
                                    need_weights=need_weights, average_attn_weights=False, cache=cache,
                                    is_causal=causal and blocked is not None)
            self.attn_weights = w
            return self.drop(out)

        def cross_attend(h):
            out, w = self.cross_attn(h, memory, memory, key_padding_mask=memory_padding,
                                     need_weights=need_weights, average_attn_weights=False)
            self.cross_weights = w
            return self.drop(out)

        x = self.res1(x, self_attend)  # (B, T, d_model)
        if self.cross_attn is not None:
            x = self.res2(x, cross_attend)  # (B, T, d_model)
        return self.res3(x, self.ff)  # (B, T, d_model)
