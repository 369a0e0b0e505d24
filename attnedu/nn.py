"""Attention as PyTorch modules.

Chapter 4 builds :class:`MultiHeadAttention` from scratch. It has exactly the interface
and the semantics of ``torch.nn.MultiheadAttention(batch_first=True)`` (the tests check
outputs, attention weights and gradients against it, for every kind of mask), so that
torch's module can be swapped for ours anywhere, and
:meth:`MultiHeadAttention.from_torch` copies a torch module's weights.

Chapter 5 builds the Transformer's blocks on top of it: :class:`FeedForward`,
:class:`EncoderBlock` and :class:`DecoderBlock` (causal self-attention, optional
cross-attention), each with pre-norm or post-norm residual connections; a
:class:`KVCache` lets a decoder generate one token at a time without recomputing the past.

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

__all__ = ["KVCache", "MultiHeadAttention", "FeedForward", "EncoderBlock", "DecoderBlock"]


def _float_mask(mask: Tensor | None, name: str, dtype: torch.dtype) -> Tensor | None:
    """A boolean mask (True = not allowed) becomes an additive float mask (-inf / 0)."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, float("-inf"))
    if not torch.is_floating_point(mask):
        raise ValueError(f"{name} must be boolean (True = not allowed) or floating-point (added), got {mask.dtype}")
    return mask.to(dtype)


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
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be positive, got {embed_dim} and {num_heads}")
        if embed_dim % num_heads:
            raise ValueError(
                f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}: "
                "each head needs embed_dim / num_heads features"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
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
            if mask is not None:
                scores = scores + mask
            elif use_causal_kernel:
                scores = scores.masked_fill(torch.ones(L, S, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
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


# --------------------------------------------------------------------------- chapter 5
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

    ``forward(x, key_padding_mask=None, need_weights=False)``: ``(B, T, d_model)`` in and
    out; ``key_padding_mask`` is ``(B, T)`` with True on padding (torch's convention). With
    ``need_weights=True`` the per-head attention weights ``(B, H, T, T)`` are kept in
    ``self.attn_weights``.
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

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None, need_weights: bool = False) -> Tensor:
        def attend(h):
            out, w = self.self_attn(h, h, h, key_padding_mask=key_padding_mask,
                                    need_weights=need_weights, average_attn_weights=False)
            self.attn_weights = w
            return self.drop(out)

        x = self.res1(x, attend)  # (B, T, d_model)
        return self.res2(x, self.ff)  # (B, T, d_model)


class DecoderBlock(nn.Module):
    """Causal self-attention, optional cross-attention to an encoder's output, feed-forward.

    ``forward(x, memory=None, attn_mask=None, key_padding_mask=None,
    memory_key_padding_mask=None, cache=None, need_weights=False)``:

    * ``x``: ``(B, T, d_model)``; position ``t`` sees positions ``<= t`` only. The causal
      mask is built here unless ``attn_mask`` (torch's convention, True = blocked) is given.
    * ``memory``: ``(B, S, d_model)``, the encoder's output, for cross-attention
      (``cross_attention=True`` blocks only).
    * ``cache``: a :class:`KVCache` for the self-attention: ``x`` holds only the new
      positions, which attend to every cached one and causally among themselves.

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

    @staticmethod
    def causal_mask(T_new: int, past: int = 0, device=None) -> Tensor:
        """``(T_new, past + T_new)`` booleans, True where new position ``i`` may NOT look (the future)."""
        i = torch.arange(T_new, device=device)[:, None] + past  # absolute positions of the queries
        j = torch.arange(past + T_new, device=device)[None, :]
        return j > i

    def forward(self, x: Tensor, memory: Tensor | None = None, attn_mask: Tensor | None = None,
                key_padding_mask: Tensor | None = None, memory_key_padding_mask: Tensor | None = None,
                cache: KVCache | None = None, need_weights: bool = False) -> Tensor:
        if memory is not None and self.cross_attn is None:
            raise ValueError("this DecoderBlock has no cross-attention: build it with cross_attention=True")
        if memory is None and self.cross_attn is not None:
            raise ValueError("this DecoderBlock has cross-attention: pass the encoder's output as memory")
        past = len(cache) if cache is not None else 0
        causal = attn_mask is None
        if causal and not (x.shape[1] == 1 and key_padding_mask is None):
            attn_mask = self.causal_mask(x.shape[1], past, x.device)  # (T, past + T)
        # one new token may look at everything before it: no mask needed at all

        def self_attend(h):
            out, w = self.self_attn(h, h, h, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                    need_weights=need_weights, average_attn_weights=False, cache=cache,
                                    is_causal=causal and attn_mask is not None)
            self.attn_weights = w
            return self.drop(out)

        def cross_attend(h):
            out, w = self.cross_attn(h, memory, memory, key_padding_mask=memory_key_padding_mask,
                                     need_weights=need_weights, average_attn_weights=False)
            self.cross_weights = w
            return self.drop(out)

        x = self.res1(x, self_attend)  # (B, T, d_model)
        if self.cross_attn is not None:
            x = self.res2(x, cross_attend)  # (B, T, d_model)
        return self.res3(x, self.ff)  # (B, T, d_model)


# --------------------------------------------------------------------------- chapter 7
# The modules of a Llama-style decoder (SmolLM2, in attnedu.pretrained.smollm).
__all__ += ["GroupedQueryAttention", "RMSNorm", "SwiGLU"]


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


class GroupedQueryAttention(nn.Module):
    r"""Causal self-attention in which groups of query heads share one key/value head.

    With ``H`` query heads and ``H_kv`` key/value heads (``H`` divisible by ``H_kv``), query
    head ``i`` attends with key/value head ``g(i) = \lfloor i / (H / H_kv) \rfloor``:

    .. math::
        h_i = \mathrm{softmax}\!\left(\frac{R(q_i) R(k_{g(i)})^\top}{\sqrt{d_h}} + M\right) v_{g(i)},
        \qquad \mathrm{GQA}(x) = \mathrm{concat}(h_1, \dots, h_H)\, W_o

    where :math:`R` is the rotary position embedding (if any) and :math:`M` the causal mask.
    ``H_kv = H`` is ordinary multi-head attention; ``H_kv = 1`` is multi-query attention.
    The gain is in generation: the :class:`KVCache` holds ``H_kv`` heads, not ``H``
    (SmolLM2 caches 3 heads instead of 9, a third of the memory and of the memory traffic).

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
    ``(out, weights)`` like :class:`MultiHeadAttention`: ``out`` ``(B, T, E)`` and, with
    ``need_weights=True``, the per-head weights ``(B, H, T, S)`` (else ``None``). With a
    :class:`KVCache`, ``x`` holds only the new positions; they attend to every cached one.
    """

    def __init__(self, d_model: int, n_head: int, n_kv_head: int, head_dim: int | None = None,
                 bias: bool = False, rope=None, *, fast: bool = True):
        super().__init__()
        if min(d_model, n_head, n_kv_head) <= 0:
            raise ValueError(f"d_model, n_head and n_kv_head must be positive, got {d_model}, {n_head}, {n_kv_head}")
        if n_head % n_kv_head:
            raise ValueError(f"n_head={n_head} is not divisible by n_kv_head={n_kv_head}: "
                             "each key/value head must serve the same number of query heads")
        if head_dim is None:
            if d_model % n_head:
                raise ValueError(f"d_model={d_model} is not divisible by n_head={n_head}; pass head_dim")
            head_dim = d_model // n_head
        self.d_model, self.n_head, self.n_kv_head, self.head_dim = d_model, n_head, n_kv_head, head_dim
        self.n_rep = n_head // n_kv_head  # query heads per key/value head
        self.q_proj = nn.Linear(d_model, n_head * head_dim, bias=bias)  # W_q of all query heads
        self.k_proj = nn.Linear(d_model, n_kv_head * head_dim, bias=bias)  # only H_kv key heads...
        self.v_proj = nn.Linear(d_model, n_kv_head * head_dim, bias=bias)  # ...and value heads
        self.o_proj = nn.Linear(n_head * head_dim, d_model, bias=bias)  # W_o
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
        S = k.shape[2]

        if need_weights or not self.fast:
            # The explicit path: give every query head its group's key/value head, then the equation.
            k = k.repeat_interleave(self.n_rep, dim=1)  # (B, H, S, dh): heads 0,0,0,1,1,1,2,2,2
            v = v.repeat_interleave(self.n_rep, dim=1)  # (B, H, S, dh)
            scores = (q * (1.0 / math.sqrt(dh))) @ k.transpose(-2, -1)  # (B, H, T, S)
            if T > 1:  # query t (absolute position past + t) may not see keys after it
                future = torch.ones(T, S, dtype=torch.bool, device=x.device).triu(past + 1)  # (T, S)
                scores = scores.masked_fill(future, float("-inf"))
            weights = torch.softmax(scores, dim=-1)  # (B, H, T, S)
            out = weights @ v  # (B, H, T, dh)
        else:
            weights = None
            out = self._sdpa(q, k, v, past)  # (B, H, T, dh)

        out = out.transpose(1, 2).reshape(B, T, H * dh)  # concatenate the heads: (B, T, H*dh)
        return self.o_proj(out), weights  # (B, T, E)

    def _sdpa(self, q: Tensor, k: Tensor, v: Tensor, past: int) -> Tensor:
        """The fast path: one fused kernel, same result as the explicit path."""
        B, H, T, dh = q.shape
        Hkv, S = k.shape[1], k.shape[2]
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
        future = torch.ones(T, S, dtype=torch.bool, device=q.device).triu(past + 1)  # (T, S)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=~future)  # True = may attend

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, n_head={self.n_head}, n_kv_head={self.n_kv_head}, "
                f"head_dim={self.head_dim}, fast={self.fast}")


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
        if d <= 0 or not eps >= 0:
            raise ValueError(f"RMSNorm needs d > 0 and eps >= 0, got d={d}, eps={eps}")
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
        self.gate_proj = nn.Linear(d_model, d_ff, bias=bias)  # (d_model -> d_ff)
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)  # (d_model -> d_ff)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)  # (d_ff -> d_model)

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() or self.gate_proj.bias is not None:
            gate, up = self.gate_proj(x), self.up_proj(x)  # (B, T, d_ff) each
        else:  # one product for both when not training
            gate, up = F.linear(x, _fused_weight(self, (self.gate_proj, self.up_proj))).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)  # (B, T, d_model)
