r"""A GPT: a character-level causal language model built from the course's own blocks (chapter 6).

Read it top to bottom, like nanoGPT's model file:

* :class:`GPTConfig`: the numbers that define a model;
* :class:`GPT`: token embedding + learned position embedding, a stack of
  :class:`attnedu.nn.DecoderBlock` (causal self-attention, no cross-attention, pre-norm), a
  final LayerNorm and an output layer that *shares* the token embedding's matrix;
* :func:`parameter_count`: the number of parameters, derived from the config by formula;
* sampling: :func:`top_k_filter`, :func:`top_p_filter` and :func:`sample_next`, which
  :meth:`GPT.generate` uses one token at a time, with a :class:`attnedu.nn.KVCache` per layer.

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

from attnedu.nn import DecoderBlock, KVCache

__all__ = ["GPTConfig", "GPT", "parameter_count", "top_k_filter", "top_p_filter", "sample_next",
           "SHIPPED_CHECKPOINT"]

#: A small trained GPT that the project ships (3.2 MB, float32), for chapter 6: the chapter's model
#: (4 blocks, 4 heads, 128 features, context 64, no biases, 808,064 parameters) trained for nanoGPT's
#: 2,000 iterations on :func:`attnedu.corpus.python_corpus` of Python 3.11 (validation loss 1.58).
#: Load it with ``GPT.load(SHIPPED_CHECKPOINT)``; its vocabulary is in the returned notes. Made, and
#: reproduced, by ``.venv/bin/python benchmarks/gpt_train.py --threads 1 --save attnedu/data/gpt-python-2000.pt``.
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "data" / "gpt-python-2000.pt"


@dataclass
class GPTConfig:
    """The shape of a :class:`GPT`.

    Attributes:
        block_size: the context length ``T_max``: the most tokens the model looks at.
        vocab_size: ``V``, the number of distinct tokens.
        n_layer: number of decoder blocks.
        n_head: attention heads per block; ``n_embd`` must be divisible by it.
        n_embd: ``C``, the width of every token's vector. The feed-forward blocks are ``4 C`` wide.
        dropout: dropout probability (embeddings, attention weights, residual branches).
        bias: biases in the linear layers and LayerNorms (nanoGPT's default is ``False``).
    """

    block_size: int
    vocab_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: "
                             "each head needs n_embd / n_head features")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")


def parameter_count(config: GPTConfig, non_embedding: bool = False) -> int:
    r"""The number of parameters of ``GPT(config)``, by formula.

    With ``C = n_embd``, ``V = vocab_size``, ``T = block_size``, ``L = n_layer`` and
    ``b = 1`` if ``config.bias`` else ``0``:

    * token embedding ``V C`` (the output layer reuses it: 0 more), position embedding ``T C``;
    * per block: two LayerNorms ``2 (C + b C)``; attention, four ``C x C`` projections
      ``4 C^2 + 4 b C``; feed-forward ``C -> 4C -> C``: ``8 C^2 + b (4C + C)``;
      in all ``12 C^2 + (2 + 11 b) C``;
    * final LayerNorm ``C + b C``.

    ``non_embedding=True`` leaves out the position embedding (nanoGPT's convention: the
    token embedding stays, as it is also the output layer).
    """
    if not isinstance(config, GPTConfig):
        raise ValueError(f"parameter_count needs a GPTConfig, got {type(config).__name__}")
    C, V, T, L, b = config.n_embd, config.vocab_size, config.block_size, config.n_layer, int(config.bias)
    per_block = 12 * C * C + (2 + 11 * b) * C
    total = V * C + T * C + L * per_block + (1 + b) * C
    return total - T * C if non_embedding else total


# ----------------------------------------------------------------------------- sampling
def _check_logits(logits: Tensor) -> None:
    if not isinstance(logits, Tensor) or not torch.is_floating_point(logits) or logits.dim() < 1:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a floating-point tensor (..., V), got {shape}")


def _check_sampling(temperature, top_k, top_p) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the ``k`` largest logits of each row, set the others to ``-inf``.

    ``(..., V) -> (..., V)``. Exactly ``k`` survive even when values tie; ``k >= V`` keeps all.
    """
    _check_logits(logits)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"top_k must be a positive integer, got {k!r}")
    return _top_k(logits, k)


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
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {p!r}")
    return _top_p(logits, p)


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


# ----------------------------------------------------------------------------- the model
class GPT(nn.Module):
    """A decoder-only Transformer language model. See the module docstring for the picture."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        self.config = config
        C = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, C)  # token embedding
        self.wpe = nn.Embedding(config.block_size, C)  # learned position embedding
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            DecoderBlock(C, config.n_head, 4 * C, dropout=config.dropout, norm_first=True, bias=config.bias)
            for _ in range(config.n_layer)
        )
        self.ln_f = nn.LayerNorm(C, bias=config.bias)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        # Weight tying: reading a token in and writing it out use one matrix, (V, C).
        self.lm_head.weight = self.wte.weight
        self._init_weights()

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
    def _check_idx(self, idx: Tensor, name: str = "idx", max_len: int | None = None) -> None:
        if not isinstance(idx, Tensor):
            raise ValueError(f"{name} must be a (B, T) tensor of token ids (torch.long), got {type(idx).__name__}")
        if idx.dim() != 2 or idx.dtype != torch.long:
            hint = " (a single sequence? use idx[None])" if idx.dim() == 1 else ""
            raise ValueError(f"{name} must be a (B, T) tensor of token ids (torch.long), got shape "
                             f"{tuple(idx.shape)} and dtype {idx.dtype}{hint}")
        if idx.shape[1] == 0:
            raise ValueError(f"{name} has shape {tuple(idx.shape)}: it needs at least one token")
        if max_len is not None and idx.shape[1] > max_len:
            raise ValueError(f"{name} has shape {tuple(idx.shape)}: {idx.shape[1]} tokens, more than "
                             f"block_size={max_len}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            raise ValueError(f"{name} holds ids outside [0, vocab_size={self.config.vocab_size}): "
                             f"min {int(idx.min())}, max {int(idx.max())}")

    def _hidden(self, idx: Tensor, caches: list[KVCache] | None = None) -> Tensor:
        """``(B, T)`` ids -> ``(B, T, C)`` final hidden states. With ``caches`` (one per block),
        ``idx`` holds only the new tokens, which sit at positions ``len(cache) ..``."""
        B, T = idx.shape
        past = len(caches[0]) if caches is not None else 0
        pos = torch.arange(past, past + T, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C) + (T, C)
        for i, block in enumerate(self.blocks):
            # the block builds the causal mask itself: (T, past + T), True above the diagonal
            x = block(x, cache=caches[i] if caches is not None else None)  # (B, T, C)
        return self.ln_f(x)  # (B, T, C)

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Next-token logits for every position, and the loss if ``targets`` are given.

        Args:
            idx: ``(B, T)`` token ids, ``T <= block_size``.
            targets: ``(B, T)`` the next token at every position (``-1`` = ignore), or ``None``.

        Returns:
            ``(logits, loss)``: logits ``(B, T, V)``; loss the mean cross-entropy, a scalar, or
            ``None`` without targets.
        """
        self._check_idx(idx, max_len=self.config.block_size)
        logits = self.lm_head(self._hidden(idx))  # (B, T, V)
        loss = None
        if targets is not None:
            if not isinstance(targets, Tensor) or targets.shape != idx.shape:
                shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
                raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {shape}")
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return logits, loss

    # ------------------------------------------------------------------ generation
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, use_cache: bool = True,
                 generator: torch.Generator | None = None) -> Tensor:
        """Continue each row of ``idx`` by ``max_new_tokens`` sampled tokens.

        At each step the model reads the sequence so far (its last ``block_size`` tokens),
        and :func:`sample_next` draws the next token from its last position's logits with
        ``temperature``, ``top_k`` and ``top_p``.

        With ``use_cache`` (the fast path), a :class:`~attnedu.nn.KVCache` per block keeps the
        keys and values of the positions already read: the prompt is read once (the
        *prefill*), then each step feeds in only the newest token. Without it (the readable
        path) every step reads the whole window again. Both give the same tokens.

        Past the context window: once the sequence is longer than ``block_size``, the window
        slides, and every token moves to a new position. With learned *absolute* position
        embeddings that changes every cached key and value, so no cache can be reused: from
        then on ``generate`` recomputes the cropped window at each step, exactly as without a
        cache (the cache speeds up the first ``block_size`` tokens and never changes the result).

        The model is put in eval mode (no dropout) while generating, then restored. It runs
        under ``torch.inference_mode()`` (no autograd bookkeeping at all, a little faster than
        ``no_grad``); the result is an ordinary tensor, which may be fed back into training.

        Args:
            idx: ``(B, T)`` prompt token ids (``T >= 1``; a longer prompt than ``block_size``
                is cropped to its last ``block_size`` tokens).
            max_new_tokens: how many tokens to add, ``>= 0``.
            temperature: ``> 0`` divides the logits; ``0`` is greedy decoding.
            top_k: sample among the ``top_k`` most likely tokens only (``None``: all).
            top_p: sample from the smallest set of tokens of total probability ``>= top_p``.
            use_cache: use a KV cache.
            generator: a seeded ``torch.Generator`` for reproducible samples.

        Returns:
            ``(B, T + max_new_tokens)``: the prompt followed by the new tokens.
        """
        self._check_idx(idx)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
        _check_sampling(temperature, top_k, top_p)  # up front, rather than at the first step
        if max_new_tokens == 0:
            return idx
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                out = self._generate(idx, max_new_tokens, temperature, top_k, top_p, use_cache, generator)
        finally:
            self.train(was_training)
        return out.clone()  # an inference-mode tensor could not be saved for a backward pass

    def _generate(self, idx, max_new_tokens, temperature, top_k, top_p, use_cache, generator) -> Tensor:
        T_max = self.config.block_size
        caches = None
        if use_cache:
            caches = [KVCache() for _ in self.blocks]
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
        names = {f.name for f in fields(GPTConfig)}
        model = cls(GPTConfig(**{k: v for k, v in checkpoint["config"].items() if k in names}))
        model.load_state_dict({k: v.float() for k, v in checkpoint["state_dict"].items()})
        model.eval()
        extra = {k: v for k, v in checkpoint.items() if k not in ("config", "state_dict")}
        return model, extra
