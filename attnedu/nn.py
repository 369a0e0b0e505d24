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
    """

    def __init__(self):
        self._k: Tensor | None = None  # (B, H, capacity, dh)
        self._v: Tensor | None = None
        self._n = 0

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
        self._k[:, :, n : n + t] = k
        self._v[:, :, n : n + t] = v
        self._n = n + t
        return self.k, self.v


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
    def _project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The three input projections; one fused matrix product for self-attention."""
        if query is key and key is value and self.kdim == self.vdim == self.embed_dim:
            weight, bias = self._fused_weights()  # (3E, E), (3E,)
            return F.linear(query, weight, bias).chunk(3, dim=-1)  # 3 x (B, T, E)
        return self.q_proj(query), self.k_proj(key), self.v_proj(value)

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

        q, k, v = self._project(query, key, value)  # (B, L, E), (B, S, E), (B, S, E)
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)  # (B, H, T, dh)
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
