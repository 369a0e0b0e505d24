"""Attention as PyTorch modules.

Chapter 4 builds :class:`MultiHeadAttention` from scratch. It has exactly the interface
and the semantics of ``torch.nn.MultiheadAttention(batch_first=True)`` (the tests check
outputs, attention weights and gradients against it, for every kind of mask), so that
torch's module can be swapped for ours anywhere, and
:meth:`MultiHeadAttention.from_torch` copies a torch module's weights.

Like nanoGPT's model file, the module has two paths: the explicit one, which computes the
attention weights as ``softmax(q @ k^T / sqrt(d) + mask)`` and is what the chapter
teaches, and a fast one through ``torch.nn.functional.scaled_dot_product_attention``,
used when the weights are not asked for. Both give the same output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MultiHeadAttention"]


def _float_mask(mask: Tensor | None, name: str, dtype: torch.dtype) -> Tensor | None:
    """A boolean mask (True = not allowed) becomes an additive float mask (-inf / 0)."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, float("-inf"))
    if not torch.is_floating_point(mask):
        raise ValueError(f"{name} must be boolean (True = not allowed) or floating-point (added), got {mask.dtype}")
    return mask.to(dtype)


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
            weight = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])  # (3E, E)
            bias = None
            if self.q_proj.bias is not None:
                bias = torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])
            return F.linear(query, weight, bias).chunk(3, dim=-1)  # 3 x (B, T, E)
        return self.q_proj(query), self.k_proj(key), self.v_proj(value)

    def _split_heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, T, dh)

    def _check(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask, attn_mask) -> None:
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
        L, S = query.shape[-2], key.shape[-2]
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
                average_attn_weights: bool = True, is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` ``(B, L, E)`` over ``key`` ``(B, S, kdim)`` / ``value`` ``(B, S, vdim)``.

        Masks follow ``torch.nn.MultiheadAttention``: a boolean True means "not allowed",
        a float mask is added to the scores. ``key_padding_mask`` is ``(B, S)``;
        ``attn_mask`` is ``(L, S)`` or ``(B * num_heads, L, S)``. ``is_causal`` is only a
        hint that ``attn_mask`` is the causal mask (which must still be given).

        Returns:
            ``(output, weights)``: output ``(B, L, E)``; weights ``(B, L, S)`` averaged over
            heads, ``(B, H, L, S)`` with ``average_attn_weights=False``, or ``None`` when
            ``need_weights=False``. Unbatched ``(L, E)`` inputs give unbatched results.
        """
        self._check(query, key, value, key_padding_mask, attn_mask)
        batched = query.dim() == 3
        if not batched:  # (L, E) -> (1, L, E)
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        if is_causal and attn_mask is None:
            raise ValueError("is_causal=True is a hint about attn_mask, which must be given too (the causal mask)")
        B, L, S, H = query.shape[0], query.shape[1], key.shape[1], self.num_heads

        q, k, v = self._project(query, key, value)  # (B, L, E), (B, S, E), (B, S, E)
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)  # (B, H, T, dh)

        # One additive float mask of shape broadcastable to (B, H, L, S), or None.
        use_causal_kernel = is_causal and key_padding_mask is None and not need_weights
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
