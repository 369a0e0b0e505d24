"""all-MiniLM-L6-v2, a pretrained sentence encoder, running on the course's own attention (chapter 7).

all-MiniLM-L6-v2 is a small BERT (6 layers, 384 dimensions, 12 heads of 32) trained by
sentence-transformers so that sentences with similar meanings get nearby vectors. Nothing in it
is new to this course:

* the embeddings add a word vector, a position vector and a segment ("token type") vector,
  then apply a LayerNorm;
* each layer is chapter 5's **post-norm** :class:`attnedu.nn.EncoderBlock`,
  ``x = LN(x + MHA(x)); x = LN(x + FFN(x))``, with chapter 4's
  :class:`attnedu.nn.MultiHeadAttention` and a GELU feed-forward;
* a sentence vector is the mean of the token vectors, scaled to unit length
  (:mod:`attnedu.pretrained.pooling`).

What is new is only bookkeeping: reading the checkpoint's weights into our modules (the table
in :func:`minilm_weight_map`, one name at a time :func:`our_name`) and turning text into token
ids with the model's own tokenizer.

    >>> model = MiniLM.load()                      # finds the weights (see _locate.py)
    >>> model.encode(["a cat", "a kitten"]).shape  # (2, 384), unit rows: dot = cosine
    >>> tokens, weights = model.attentions("The cat sat.")   # weights: (6, 12, T, T)
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .._validate import positive_int
from ..nn import EncoderBlock
from ._locate import MINILM, locate
from .pooling import l2_normalize, mean_pool

__all__ = ["BertConfig", "BertEmbeddings", "BertEncoder", "MiniLM", "minilm_weight_map", "our_name", "UNUSED_WEIGHTS",
           "load_weights"]


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class BertConfig:
    """The sizes of a BERT encoder, in the course's names (defaults: MiniLM-L6).

    Hugging Face's ``config.json`` calls them otherwise; :meth:`from_json` translates:
    ``hidden_size`` is ``d_model``, ``num_hidden_layers`` ``n_layer``, ``num_attention_heads``
    ``n_head``, ``intermediate_size`` ``d_ff`` and ``max_position_embeddings`` ``context``.
    """

    vocab_size: int = 30522
    d_model: int = 384  # E
    n_layer: int = 6  # L
    n_head: int = 12  # H, each of E / H = 32 dimensions
    d_ff: int = 1536  # the feed-forward's inner width, 4 E
    context: int = 512  # learned position vectors exist for this many positions
    type_vocab_size: int = 2  # segments A and B (sentence pairs); single sentences use A = 0
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layer", "n_head", "d_ff", "context", "type_vocab_size"):
            positive_int(getattr(self, name), f"BertConfig.{name}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_head={self.n_head}")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "BertConfig":
        """Read a Hugging Face ``config.json``; refuse the BERT variants we do not implement."""
        c = json.loads(Path(path).read_text(encoding="utf-8"))
        if c.get("model_type") != "bert":
            raise ValueError(f"{path}: model_type is {c.get('model_type')!r}, not 'bert'")
        if c.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{path}: hidden_act {c['hidden_act']!r}; only the exact (erf) 'gelu' is implemented")
        if c.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{path}: only absolute (learned) position embeddings are implemented")
        return cls(  # Hugging Face's names -> ours
            vocab_size=c["vocab_size"], d_model=c["hidden_size"], n_layer=c["num_hidden_layers"],
            n_head=c["num_attention_heads"], d_ff=c["intermediate_size"],
            context=c["max_position_embeddings"], type_vocab_size=c.get("type_vocab_size", 2),
            layer_norm_eps=c.get("layer_norm_eps", 1e-12), pad_token_id=c.get("pad_token_id", 0),
        )


# --------------------------------------------------------------------------- the model
class BertEmbeddings(nn.Module):
    """Token ids ``(B, T)`` -> ``LN(word + token type + position)`` vectors ``(B, T, E)``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.d_model)
        self.token_type = nn.Embedding(config.type_vocab_size, config.d_model)
        self.position = nn.Embedding(config.context, config.d_model)  # learned, one per position
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def forward(self, ids: Tensor, token_type_ids: Tensor) -> Tensor:
        T = ids.shape[1]
        positions = torch.arange(T, device=ids.device)  # (T,), the same for every sentence
        # Added in the checkpoint's order (word, type, position): floating-point sums depend on it.
        x = self.word(ids) + self.token_type(token_type_ids) + self.position(positions)  # (B, T, E)
        return self.norm(x)


def bert_layer(config: BertConfig) -> EncoderBlock:
    """One BERT layer: chapter 5's post-norm encoder block with a GELU feed-forward.

    Only BERT's LayerNorm epsilon differs from the block's default (1e-12, not torch's 1e-5);
    it is a plain attribute of ``nn.LayerNorm``, so we set it rather than write a new block.
    """
    block = EncoderBlock(config.d_model, config.n_head, config.d_ff, dropout=0.0,
                         norm_first=False, activation="gelu")
    for norm in (block.res1.norm, block.res2.norm):
        norm.eps = config.layer_norm_eps
    return block


class BertEncoder(nn.Module):
    """BERT's encoder: embeddings, then ``n_layer`` post-norm blocks. ``(B, T)`` ids -> ``(B, T, E)``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(bert_layer(config) for _ in range(config.n_layer))

    def forward(self, ids: Tensor, padding_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
                need_weights: bool = False) -> Tensor:
        """``ids (B, T)``; ``padding_mask (B, T)``, True (or 1) on real tokens and False (0) on
        padding: the tokenizer's ``attention_mask`` as it is; ``token_type_ids (B, T)``, default all 0.

        Returns the last layer's token vectors ``(B, T, E)``. With ``need_weights=True`` every
        layer takes the explicit attention path and keeps its weights ``(B, H, T, T)`` in
        ``self.layers[i].attn_weights``; otherwise the fast ``scaled_dot_product_attention`` path.
        """
        if not isinstance(ids, Tensor) or ids.dim() != 2:
            raise ValueError(f"ids must be a (B, T) tensor, got {getattr(ids, 'shape', type(ids).__name__)}")
        if ids.shape[1] > self.config.context:
            raise ValueError(f"{ids.shape[1]} tokens, but this model has only {self.config.context} positions")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(ids)
        # A batch without padding needs no mask at all, which lets sdpa skip adding one.
        if padding_mask is not None and bool(padding_mask.all()):
            padding_mask = None
        x = self.embeddings(ids, token_type_ids)  # (B, T, E)
        for layer in self.layers:
            x = layer(x, padding_mask=padding_mask, need_weights=need_weights)  # (B, T, E)
        return x


# --------------------------------------------------------------------------- the checkpoint
# The per-layer part of the table: the checkpoint's module names -> ours (EncoderBlock's).
_LAYER_MAP = {
    "attention.self.query": "self_attn.q_proj",  # W_q (all heads side by side), (E, E)
    "attention.self.key": "self_attn.k_proj",  # W_k
    "attention.self.value": "self_attn.v_proj",  # W_v
    "attention.output.dense": "self_attn.out_proj",  # W_o
    "attention.output.LayerNorm": "res1.norm",  # LN after the attention's residual
    "intermediate.dense": "ff.fc1",  # E -> 4E
    "output.dense": "ff.fc2",  # 4E -> E
    "output.LayerNorm": "res2.norm",  # LN after the feed-forward's residual
}

#: Checkpoint tensors we read on purpose nowhere, and why.
UNUSED_WEIGHTS = {
    "pooler.dense.weight": "BERT's [CLS] pooler; sentence-transformers averages the tokens instead",
    "pooler.dense.bias": "BERT's [CLS] pooler; sentence-transformers averages the tokens instead",
    "embeddings.position_ids": "a saved buffer holding 0, 1, ..., 511; we compute torch.arange(T)",
}


def minilm_weight_map(n_layer: int = 6) -> dict[str, str]:
    """The checkpoint's tensor names -> our :class:`BertEncoder`'s parameter names.

    Both sides store a linear layer's weight as ``(out_features, in_features)``, so every
    tensor is copied as it is: no transposes, no splits.
    """
    table = {
        "embeddings.word_embeddings.weight": "embeddings.word.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type.weight",
        "embeddings.position_embeddings.weight": "embeddings.position.weight",
        "embeddings.LayerNorm.weight": "embeddings.norm.weight",
        "embeddings.LayerNorm.bias": "embeddings.norm.bias",
    }
    for i in range(positive_int(n_layer, "n_layer")):
        for theirs, ours in _LAYER_MAP.items():
            for p in ("weight", "bias"):
                table[f"encoder.layer.{i}.{theirs}.{p}"] = f"layers.{i}.{ours}.{p}"
    return table


def our_name(checkpoint_name: str) -> str | None:
    """Our :class:`BertEncoder` parameter that receives the checkpoint tensor ``checkpoint_name``
    (a row of :func:`minilm_weight_map`), or ``None`` for a tensor we do not use (:data:`UNUSED_WEIGHTS`).

    ``"encoder.layer.3.attention.self.query.weight"`` -> ``"layers.3.self_attn.q_proj.weight"``;
    ``"embeddings.LayerNorm.bias"`` -> ``"embeddings.norm.bias"``; ``"pooler.dense.weight"`` -> ``None``.
    Any layer number works (BERT-base has 12 layers, MiniLM-L6 six). Raises ``ValueError`` for a
    name that is neither in the table nor unused.
    """
    if not isinstance(checkpoint_name, str):
        raise ValueError(f"checkpoint_name must be a string, got {type(checkpoint_name).__name__}")
    if checkpoint_name in UNUSED_WEIGHTS:
        return None
    layer = re.match(r"encoder\.layer\.(\d+)\.", checkpoint_name)
    table = minilm_weight_map(int(layer.group(1)) + 1 if layer else 1)  # the table up to that layer
    if checkpoint_name not in table:
        raise ValueError(f"checkpoint_name {checkpoint_name!r} is not a tensor of a BERT checkpoint that our encoder knows")
    return table[checkpoint_name]


def load_weights(model: BertEncoder, file: str | os.PathLike) -> BertEncoder:
    """Copy the tensors of a ``model.safetensors`` file into ``model``, through :func:`minilm_weight_map`.

    Strict both ways: every checkpoint tensor is either mapped or listed in
    :data:`UNUSED_WEIGHTS`, every parameter of ours gets exactly one tensor, and shapes must
    agree. A silently skipped weight would give a model that runs but is wrong.
    """
    from safetensors.torch import load_file

    tensors = load_file(str(file))  # name -> tensor
    table = minilm_weight_map(len(model.layers))
    missing = sorted(set(table) - set(tensors))
    unknown = sorted(set(tensors) - set(table) - set(UNUSED_WEIGHTS))
    if missing or unknown:
        raise ValueError(f"{file} does not fit our BERT: missing {missing[:5]}, unknown {unknown[:5]}")
    ours = dict(model.named_parameters())
    not_loaded = sorted(set(ours) - set(table.values()))
    if not_loaded:
        raise ValueError(f"the weight map leaves these parameters unloaded: {not_loaded}")
    state = {}
    for theirs, name in table.items():
        if tensors[theirs].shape != ours[name].shape:
            raise ValueError(f"{theirs} has shape {tuple(tensors[theirs].shape)}, "
                             f"but our {name} has {tuple(ours[name].shape)}")
        state[name] = tensors[theirs]
    model.load_state_dict(state, strict=True)
    return model


# --------------------------------------------------------------------------- text in, vectors out
class MiniLM:
    """all-MiniLM-L6-v2: text -> unit vectors of 384 numbers, with our attention inside.

    Build it with :meth:`load`. Attributes: ``model`` (a :class:`BertEncoder`, in eval mode),
    ``tokenizer`` (a ``tokenizers.Tokenizer`` set to truncate at ``max_seq_length`` tokens and
    to pad a batch to its longest sentence), ``max_seq_length`` (256), ``dim`` (384).
    """

    def __init__(self, model: BertEncoder, tokenizer, max_seq_length: int = 256):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.dim = model.config.d_model

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, download: bool = False) -> "MiniLM":
        """Read the model from ``path`` (a folder with ``model.safetensors``, ``config.json``,
        ``tokenizer.json``), or wherever :func:`attnedu.pretrained.locate` finds it."""
        from tokenizers import Tokenizer

        folder = locate(MINILM, path, download=download)
        config = BertConfig.from_json(folder / "config.json")
        model = load_weights(BertEncoder(config), folder / "model.safetensors")

        # sentence-transformers' own settings override the tokenizer's file, which was saved
        # truncating at 128 tokens and padding everything to a fixed 128.
        st_config = folder / "sentence_bert_config.json"
        max_len = config.context
        if st_config.is_file():
            max_len = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length") or max_len
        pooling = folder / "1_Pooling" / "config.json"
        if pooling.is_file() and not json.loads(pooling.read_text(encoding="utf-8")).get("pooling_mode_mean_tokens"):
            raise ValueError(f"{pooling}: this model does not use mean pooling, the only one implemented here")

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_len)  # counts [CLS] and [SEP] too
        tokenizer.enable_padding(pad_id=config.pad_token_id, pad_token=tokenizer.id_to_token(config.pad_token_id))
        return cls(model, tokenizer, max_len)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_texts(texts) -> list[str]:
        if isinstance(texts, str):
            return [texts]
        if not isinstance(texts, Sequence):
            raise ValueError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
        if len(texts) == 0:
            raise ValueError("texts is empty: give at least one string to encode")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"texts[{i}] is a {type(t).__name__}, not a string: {t!r:.60}")
        return list(texts)

    def _tensors(self, encodings) -> tuple[Tensor, Tensor, Tensor]:
        """Token ids, attention mask and token types of a list of encodings, each ``(n, T)``."""
        ids = torch.tensor([e.ids for e in encodings])
        mask = torch.tensor([e.attention_mask for e in encodings])
        types = torch.tensor([e.type_ids for e in encodings])
        return ids, mask, types

    # ------------------------------------------------------------------ public
    def encode(self, texts: str | Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Sentence embeddings: a list of ``n`` strings -> float32 array ``(n, 384)``, unit rows.

        A single string gives a single vector ``(384,)``, as in sentence-transformers. Texts
        longer than ``max_seq_length`` tokens are truncated. The sentences are batched in order
        of length, so that each batch is padded as little as possible; the result keeps the
        order of ``texts``, and a sentence's vector does not depend on its batch-mates.
        """
        single = isinstance(texts, str)
        texts = self._check_texts(texts)
        batch_size = positive_int(batch_size, "batch_size")

        # Tokenise everything at once (in parallel, in Rust). Padding goes to the end, so the
        # first T columns of a sentence hold all of it whenever it has at most T tokens.
        ids, mask, types = self._tensors(self.tokenizer.encode_batch(texts))  # (n, T_max) each
        lengths = mask.sum(dim=1)  # (n,)
        order = torch.argsort(lengths, descending=True, stable=True)  # longest first
        with torch.inference_mode():
            out = torch.empty(len(texts), self.dim)  # (n, E), filled batch by batch
            for start in range(0, len(texts), batch_size):
                rows = order[start:start + batch_size]  # (b,)
                T = int(lengths[rows].max())  # the longest in this batch: cut the rest of the padding
                m = mask[rows, :T]  # (b, T)
                hidden = self.model(ids[rows, :T], m, types[rows, :T])  # (b, T, E)
                out[rows] = l2_normalize(mean_pool(hidden, m))  # (b, E)
        vectors = out.numpy()
        return vectors[0] if single else vectors

    def tokens(self, text: str) -> list[str]:
        """The tokens the model sees for ``text``, ``[CLS]`` and ``[SEP]`` included."""
        return self.tokenizer.encode(self._check_texts(text)[0]).tokens

    def attentions(self, text: str) -> tuple[list[str], np.ndarray]:
        """The attention weights of every layer and head for one sentence.

        Returns ``(tokens, weights)``: the ``T`` tokens (``[CLS]`` and ``[SEP]`` included) and
        a float32 array ``(L, H, T, T)``; ``weights[l, h, i, j]`` is how much token ``i``
        attends to token ``j`` in head ``h`` of layer ``l``, and every row sums to 1. The
        text is truncated at ``max_seq_length`` tokens, as in :meth:`encode`.
        """
        if not isinstance(text, str):
            raise ValueError(f"attentions() takes one string, got {type(text).__name__}")
        enc = self.tokenizer.encode(text)
        ids, mask, types = self._tensors([enc])  # (1, T) each
        with torch.inference_mode():
            self.model(ids, mask, types, need_weights=True)
            weights = torch.stack([layer.attn_weights[0] for layer in self.model.layers])  # (L, H, T, T)
        for layer in self.model.layers:
            layer.attn_weights = None  # do not keep T x T matrices alive after we are done
        return enc.tokens, weights.numpy()

    def __repr__(self) -> str:
        c = self.model.config
        return (f"MiniLM(n_layer={c.n_layer}, d_model={c.d_model}, n_head={c.n_head}, "
                f"max_seq_length={self.max_seq_length})")
