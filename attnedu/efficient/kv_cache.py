r"""The KV cache's bill, and how grouped-query attention cuts it (chapter 9).

While a decoder generates, every layer keeps the key and the value of every position it has
read (chapter 6's :class:`attnedu.nn.KVCache`): one vector of ``head_dim`` numbers per
key/value head, twice (a key and a value). The cache therefore costs

.. math::
    \text{bytes} = 2 \cdot n_{layer} \cdot n_{kv\_head} \cdot d_{head}
                   \cdot \text{bytes per number} \cdot T \cdot B

for ``T`` tokens of ``B`` sequences: it grows linearly with the context, and for long contexts
it, not the weights, fills the memory. The only factor a model's design can cut without
shrinking the model is ``n_kv_head``: grouped-query attention (GQA, chapter 7) lets ``H / H_kv``
query heads share one key/value head, and multi-query attention (MQA) is ``H_kv = 1``.

* :func:`kv_cache_bytes`: the formula;
* :func:`measured_cache_bytes`: SmolLM2-135M (9 query heads, 3 key/value heads) run on a
  prompt with its caches, the bytes of the cached tensors summed and compared with the formula,
  and with the same model if it had full multi-head attention (9 key/value heads, computed);
* :func:`group_kv_heads`: turn a trained multi-head GPT into a grouped one *without training*,
  by averaging the key and value projections of the heads of each group (the mean-pooling
  initialisation of Ainslie et al., 2023, "GQA: Training Generalized Multi-Query Transformer
  Models from Multi-Head Checkpoints"); :func:`grouped_losses` measures what that costs in
  validation loss on chapter 6's held-out text, and :func:`grouped_cache_bytes` what it saves.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from attnedu._validate import positive_int

__all__ = ["kv_cache_bytes", "measured_cache_bytes", "group_kv_heads", "grouped_losses", "grouped_cache_bytes",
           "validation_ids"]

# A prompt for SmolLM2, repeated until it holds the tokens asked for (chapter 3's "Ada" sentence).
_PROMPT = ("Ada wrote the first published program, a method for computing Bernoulli numbers on a machine that "
           "was never built, and everyone agrees that she saw further than its inventor. ")


def kv_cache_bytes(n_layer: int, n_kv_head: int, head_dim: int, tokens: int = 1, batch: int = 1,
                   bytes_per_number: int = 2) -> int:
    r"""The bytes of a KV cache: ``2 * n_layer * n_kv_head * head_dim * bytes_per_number * tokens * batch``.

    A key and a value (the 2) of ``head_dim`` numbers, for every key/value head of every layer,
    for every cached token of every sequence of the batch. ``bytes_per_number`` is 2 for float16
    or bfloat16 (the default: how models are served), 4 for float32, 1 for 8-bit caches.

    >>> kv_cache_bytes(n_layer=30, n_kv_head=3, head_dim=64, tokens=8192)  # SmolLM2, full context, float16
    188743680
    """
    numbers = 2 * positive_int(n_layer, "n_layer") * positive_int(n_kv_head, "n_kv_head") \
        * positive_int(head_dim, "head_dim")
    return numbers * positive_int(bytes_per_number, "bytes_per_number") * positive_int(tokens, "tokens") \
        * positive_int(batch, "batch")


# ----------------------------------------------------------------------------- measured on SmolLM2
def _prompt_tokens(lm, tokens: int, batch: int) -> Tensor:
    """``(batch, tokens)`` token ids of :data:`_PROMPT`, repeated as often as needed."""
    ids = lm.encode(_PROMPT)
    ids = (ids * (tokens // len(ids) + 1))[:tokens]
    return torch.tensor([ids] * batch, dtype=torch.long)  # (B, T)


def measured_cache_bytes(lm=None, tokens: int = 128, batch: int = 1) -> dict:
    """Run SmolLM2-135M on a prompt of ``tokens`` tokens with a KV cache per layer, and count its bytes.

    The model (``lm``, a :class:`attnedu.pretrained.smollm.SmolLM`; ``None`` loads it, which
    takes a few seconds) reads the prompt once, as in the prefill of :meth:`attnedu.llama.Llama.generate`,
    filling one :class:`attnedu.nn.KVCache` per layer with keys and values ``(B, n_kv_head, T, head_dim)``.

    Returns a dict:

    * ``measured``: the bytes of the cached keys and values of all layers, ``numel * element_size``
      of ``cache.k`` and ``cache.v`` (what the cache holds);
    * ``allocated``: the bytes of the storage behind them (:class:`~attnedu.nn.KVCache` doubles its
      capacity when it fills, so this is up to twice ``measured``: room for the tokens to come);
    * ``formula``: :func:`kv_cache_bytes` with the model's sizes and dtype (equal to ``measured``);
    * ``mha``: the formula with ``n_kv_head = n_head`` (9): the cache of the same model with full
      multi-head attention, computed, not loaded;
    * ``tokens``, ``batch``, ``n_layer``, ``n_head``, ``n_kv_head``, ``head_dim``, ``dtype`` (a str),
      ``bytes_per_number``.
    """
    from attnedu.nn import KVCache

    tokens, batch = positive_int(tokens, "tokens"), positive_int(batch, "batch")
    if lm is None:
        from attnedu.pretrained.smollm import SmolLM

        lm = SmolLM.load()
    model, c = lm.model, lm.config
    if tokens > c.context:
        raise ValueError(f"tokens={tokens} is more than the model's context of {c.context}")
    ids = _prompt_tokens(lm, tokens, batch)  # (B, T)
    caches = [KVCache() for _ in model.blocks]
    with torch.inference_mode():
        model(ids, caches, last_only=True)  # the prefill: fills every layer's cache
    measured = sum(t.numel() * t.element_size() for cache in caches for t in (cache.k, cache.v))
    allocated = sum(t.untyped_storage().nbytes() for cache in caches for t in (cache.k, cache.v))
    dtype = caches[0].k.dtype
    size = caches[0].k.element_size()
    return {
        "measured": measured,
        "allocated": allocated,
        "formula": kv_cache_bytes(c.n_layer, c.n_kv_head, c.head_dim, tokens, batch, size),
        "mha": kv_cache_bytes(c.n_layer, c.n_head, c.head_dim, tokens, batch, size),
        "tokens": tokens, "batch": batch, "n_layer": c.n_layer, "n_head": c.n_head, "n_kv_head": c.n_kv_head,
        "head_dim": c.head_dim, "dtype": str(dtype).removeprefix("torch."), "bytes_per_number": size,
    }


# ----------------------------------------------------------------------------- GQA from a trained GPT
def _attention_layers(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every block of a GPT, checked: ``q_proj``, ``k_proj``, ``v_proj``."""
    config = getattr(model, "config", None)
    blocks = getattr(model, "blocks", None)
    if not isinstance(model, nn.Module) or config is None or not hasattr(config, "n_head") or blocks is None:
        raise ValueError(f"model must be a GPT (attnedu.models.GPT: a config and blocks), got {type(model).__name__}")
    layers = []
    for i, block in enumerate(blocks):
        attn = getattr(block, "self_attn", None)
        k_proj = getattr(attn, "k_proj", None)
        if not isinstance(k_proj, nn.Linear) or not isinstance(getattr(attn, "v_proj", None), nn.Linear):
            raise ValueError(f"block {i} has no self_attn with k_proj and v_proj layers (nn.Linear)")
        if k_proj.out_features != config.d_model:
            raise ValueError(f"block {i}: k_proj gives {k_proj.out_features} features, "
                             f"expected d_model={config.d_model}")
        layers.append(attn)
    return layers


def _mean_over_groups(x: Tensor, n_head: int, n_kv_head: int) -> Tensor:
    """Average the head slices of ``x`` within each group of ``n_head / n_kv_head`` adjacent heads.

    ``x``: ``(H * d_head, ...)``, head ``h`` owning rows ``h*d_head .. (h+1)*d_head - 1`` (a weight
    ``(C, C)`` or a bias ``(C,)``). Returns the same shape, every head of a group holding the group's mean.
    """
    rows = x.shape[0]
    group, d_head = n_head // n_kv_head, rows // n_head
    heads = x.reshape(n_kv_head, group, d_head, *x.shape[1:])  # (H_kv, H / H_kv, d_head, ...)
    mean = heads.mean(dim=1, keepdim=True)  # (H_kv, 1, d_head, ...): the group's shared head
    return mean.expand_as(heads).reshape(x.shape)  # every head of the group gets it


def group_kv_heads(model: nn.Module, n_kv_head: int) -> nn.Module:
    r"""A copy of a multi-head GPT in which each group of heads shares one key and one value head.

    Query head ``i`` belongs to group ``g(i) = i // (H / H_kv)`` (adjacent heads, as in
    :class:`attnedu.llama.GroupedQueryAttention`). In every block, the rows of ``W_k`` and
    ``W_v`` (and of their biases) that belong to the heads of a group are replaced by their mean:

    .. math::
        W_k^{(g)} = \frac{H_{kv}}{H} \sum_{i \in g} W_k^{(i)}, \qquad
        W_v^{(g)} = \frac{H_{kv}}{H} \sum_{i \in g} W_v^{(i)}

    so all heads of a group compute the same keys and values: the model is a GQA model with
    ``n_kv_head`` key/value heads (its cache needs only one head per group), written with
    repeated heads. This is the mean-pooling initialisation of Ainslie et al. (2023), without the
    short uptraining that follows it in the paper. ``n_kv_head = n_head`` changes nothing;
    ``n_kv_head = 1`` is multi-query attention.

    Args:
        model: a :class:`attnedu.models.GPT` (either kind of block); it is not modified.
        n_kv_head: the key/value heads to keep, a divisor of ``config.n_head``.

    Returns:
        A new model (a deep copy, in the original's train/eval mode) with the averaged weights.
    """
    _attention_layers(model)  # checks that it is a GPT
    n_head = model.config.n_head
    n_kv_head = positive_int(n_kv_head, "n_kv_head")
    if n_head % n_kv_head:
        raise ValueError(f"n_head={n_head} is not divisible by n_kv_head={n_kv_head}: each key/value head must "
                         f"serve the same number of query heads; use a divisor of {n_head}")
    grouped = copy.deepcopy(model)
    with torch.no_grad():
        for attn in _attention_layers(grouped):
            for proj in (attn.k_proj, attn.v_proj):
                proj.weight.copy_(_mean_over_groups(proj.weight, n_head, n_kv_head))  # (C, C)
                if proj.bias is not None:
                    proj.bias.copy_(_mean_over_groups(proj.bias, n_head, n_kv_head))  # (C,)
    return grouped


def validation_ids(vocab: str) -> Tensor:
    """Chapter 6's held-out text as token ids ``(N_val,)``: the last 10 % of
    :func:`attnedu.corpus.python_corpus`, encoded with the character vocabulary ``vocab``
    (the shipped checkpoint's ``notes["vocab"]``).

    On a Python version whose standard library holds characters outside ``vocab``, those
    characters are left out (the shipped model was trained on Python 3.11.7's text).
    """
    from attnedu.corpus import CharTokenizer, python_corpus, train_val_split

    if not isinstance(vocab, str) or not vocab:
        raise ValueError(f"vocab must be the non-empty string of the model's characters, got {vocab!r:.40}")
    text = python_corpus()
    known = set(vocab)
    if not set(text) <= known:
        text = "".join(ch for ch in text if ch in known)
    data = torch.tensor(CharTokenizer.from_chars(vocab).encode(text))  # (N,)
    return train_val_split(data, val_fraction=0.1)[1]


def grouped_losses(n_kv_heads=None, *, model: nn.Module | None = None, val_ids: Tensor | None = None,
                   batch_size: int = 12, eval_iters: int = 20, seed: int = 1) -> dict[int, float]:
    """The validation loss of the course GPT grouped to each number of key/value heads.

    For every ``n_kv_head`` in ``n_kv_heads`` (default: every divisor of ``n_head``, from
    ``n_head``, plain multi-head attention, down to 1, multi-query attention), the model is
    :func:`group_kv_heads` of ``model`` and its loss is :func:`attnedu.train.estimate_loss` on
    ``eval_iters`` batches of ``batch_size`` windows of ``context`` tokens of ``val_ids``, the
    same batches for every setting (fixed by ``seed``, as chapter 6's evaluations are).

    Args:
        n_kv_heads: the numbers of key/value heads to try, divisors of ``n_head``.
        model: a :class:`attnedu.models.GPT`; ``None``: ``GPT.load(SHIPPED_CHECKPOINT)``, chapter 6's.
        val_ids: the held-out token ids; ``None``: :func:`validation_ids` with the checkpoint's vocabulary
            (required when ``model`` is given).
        batch_size, eval_iters, seed: the evaluation batches (defaults: 240 windows of 64 tokens).

    Returns:
        ``{n_kv_head: validation loss}``, in the order of ``n_kv_heads``.
    """
    from attnedu.train import estimate_loss

    if model is None:
        from attnedu.models import GPT, SHIPPED_CHECKPOINT

        model, notes = GPT.load(SHIPPED_CHECKPOINT)
        if val_ids is None:
            val_ids = validation_ids(notes["vocab"])
    elif val_ids is None:
        raise ValueError("with your own model, pass val_ids too: the held-out token ids in its vocabulary")
    _attention_layers(model)
    n_head = model.config.n_head
    if n_kv_heads is None:
        n_kv_heads = [h for h in range(n_head, 0, -1) if n_head % h == 0]
    if isinstance(n_kv_heads, (int, str)) or not len(n_kv_heads):
        raise ValueError(f"n_kv_heads must be a non-empty sequence of divisors of n_head={n_head}, got {n_kv_heads!r}")
    losses = {}
    with torch.no_grad():
        for h in n_kv_heads:
            grouped = group_kv_heads(model, h)  # validates h
            losses[int(h)] = estimate_loss(grouped, val_ids, batch_size=batch_size, context=model.config.context,
                                           eval_iters=eval_iters, seed=seed)
    return losses


def grouped_cache_bytes(config, n_kv_heads, tokens: int | None = None, batch: int = 1,
                        bytes_per_number: int = 4) -> dict[int, int]:
    """``{n_kv_head: bytes}``: the KV cache of a GPT of ``config`` (a :class:`attnedu.models.GPTConfig`)
    for ``tokens`` tokens (default: a full context) with each number of key/value heads.

    The course GPT's head size is ``d_model / n_head``; its cache holds float32 numbers (4 bytes).
    """
    for name in ("n_layer", "n_head", "d_model", "context"):
        if not hasattr(config, name):
            raise ValueError(f"config must be a GPTConfig (with {name}), got {type(config).__name__}")
    tokens = config.context if tokens is None else tokens
    head_dim = config.d_model // config.n_head
    if isinstance(n_kv_heads, (int, str)):
        raise ValueError(f"n_kv_heads must be a sequence of numbers of key/value heads, got {n_kv_heads!r}")
    for h in n_kv_heads:
        if positive_int(h, "n_kv_head") and config.n_head % h:
            raise ValueError(f"n_head={config.n_head} is not divisible by n_kv_head={h}: "
                             f"use a divisor of {config.n_head}")
    return {int(h): kv_cache_bytes(config.n_layer, h, head_dim, tokens, batch, bytes_per_number) for h in n_kv_heads}
