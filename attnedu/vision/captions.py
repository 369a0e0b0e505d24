r"""An image captioner (chapter 8): a ViT reads the picture, a decoder writes the sentence, cross-attention joins them.

The model is chapter 5's encoder-decoder Transformer with a new encoder. The **encoder** is a
:class:`~attnedu.vision.vit.ViT` without class token or head: a scene of ``24 x 24`` pixels, cut into
``4 x 4`` patches, becomes ``N = 36`` vectors ``m_1 .. m_N`` (row-major, as :func:`~attnedu.vision.patches.patchify`
reads them). The **decoder** is a stack of :class:`attnedu.nn.DecoderBlock` ``(cross_attention=True)`` over
the caption's words: causal self-attention over the words so far, then cross-attention from each word to
the 36 patches, then a feed-forward block; a final layer norm and a linear head give the next word.

.. math::
    m = \mathrm{ViT}(\text{image}) \in \mathbb{R}^{N \times d},\qquad
    h_0 = E_\mathrm{tok}[y_{<t}] + E_\mathrm{pos},\qquad
    h_\ell = \mathrm{DecoderBlock}_\ell(h_{\ell-1}, m),\qquad
    p(y_t \mid y_{<t}, \text{image}) = \mathrm{softmax}\big(\mathrm{LN}(h_L) W\big)

Training is teacher forcing: the true caption ``<bos> a red circle ... `` goes in, shifted by one it is
the target, and the cross-entropy ignores ``<pad>`` (:func:`caption_loss`). Captioning is greedy decoding,
one word at a time until ``<eos>`` (:meth:`Captioner.generate`).

Cross-attention makes the model explain itself a little: the weights with which the word being written
looks at the patches, ``softmax(q k^T / sqrt(d_h))`` over the 36 patches, say *where* it looked. Writing
"circle", a model that has learnt the task looks at the circle. :func:`attention_to_object` measures it:
the fraction of one row of weights that falls on an object's 8x8 cell (4 of the 36 patches, so 1/9 by
chance). The scenes are :mod:`attnedu.vision.scenes`'s; the shipped model (checkpoint ``"captioner"``,
:mod:`attnedu.vision.checkpoints`) was trained on the training combinations only and is judged on the
held-out ones (:func:`caption_accuracy`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnedu._validate import positive_int
from attnedu.nn import DecoderBlock
from attnedu.train import train
from .scenes import GRID, SIZE, VOCAB, Object, Scenes, scenes
from .vit import ViT, ViTConfig

__all__ = ["CaptionerConfig", "Captioner", "caption_loss", "caption_accuracy", "attention_to_object",
           "object_patches", "shape_attention", "captioner_metrics", "recipe", "load_model"]


@dataclass
class CaptionerConfig:
    """The shape of a :class:`Captioner`.

    Attributes:
        image_size, patch, channels: the images (``SIZE x SIZE`` RGB scenes, cut into ``patch x patch`` patches).
        d_model: the width of the encoder and of the decoder (cross-attention reads the encoder's vectors
            as they are, so the two widths are one).
        n_head: heads of every attention layer.
        n_enc_layer, n_dec_layer: encoder blocks (the ViT's) and decoder blocks.
        d_ff: the feed-forward width (default ``4 * d_model``).
        max_len: the longest caption in tokens, ``<bos>`` and ``<eos>`` included.
        vocab_size: the words, :data:`~attnedu.vision.scenes.VOCAB`'s by default.
        dropout: dropout everywhere (0: the scenes are endless, nothing to regularise).
    """

    image_size: int = SIZE
    patch: int = 4
    channels: int = 3
    d_model: int = 64
    n_head: int = 4
    n_enc_layer: int = 2
    n_dec_layer: int = 2
    d_ff: int | None = None
    max_len: int = 16
    vocab_size: int = len(VOCAB)
    dropout: float = 0.0

    def __post_init__(self):
        for name in ("max_len", "vocab_size", "n_dec_layer"):
            positive_int(getattr(self, name), f"CaptionerConfig.{name}")
        if self.max_len < 2:
            raise ValueError(f"CaptionerConfig.max_len must be at least 2 (<bos> and <eos>), got {self.max_len}")
        self.d_ff = 4 * self.d_model if self.d_ff is None else positive_int(self.d_ff, "CaptionerConfig.d_ff")
        self.vit_config()  # checks the encoder's sizes

    def vit_config(self) -> ViTConfig:
        """The encoder's configuration: a ViT that returns one vector per patch (no class token, no head)."""
        return ViTConfig(image_size=self.image_size, patch=self.patch, channels=self.channels, d_model=self.d_model,
                         n_head=self.n_head, n_layer=self.n_enc_layer, d_ff=self.d_ff, n_classes=None,
                         class_token=False, dropout=self.dropout)


class Captioner(nn.Module):
    """A ViT encoder and a Transformer decoder with cross-attention.

    * ``forward(images (B, C, H, W), ids (B, L)) -> logits (B, L, V)``: the next word's logits at every
      position of ``ids`` (teacher forcing; ``ids`` starts with ``<bos>``).
    * ``encode(images) -> (B, N, d_model)``: the patches' vectors, the decoder's memory.
    * ``decode(memory, ids, need_weights=False) -> logits (B, L, V)``; with ``need_weights`` the last
      decoder layer's per-head cross-attention ``(B, n_head, L, N)`` is kept in :attr:`cross_weights`.
    * ``generate(images, need_weights=False)``: greedy captions, see :meth:`generate`.
    """

    def __init__(self, config: CaptionerConfig | None = None):
        super().__init__()
        self.config = c = config or CaptionerConfig()
        self.encoder = ViT(c.vit_config())
        self.tok = nn.Embedding(c.vocab_size, c.d_model)  # token embedding
        self.pos = nn.Embedding(c.max_len, c.d_model)  # learned position embedding
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(c.d_model, c.n_head, c.d_ff, c.dropout, cross_attention=True)
                                    for _ in range(c.n_dec_layer))
        self.norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.vocab_size)
        for emb in (self.tok, self.pos):
            nn.init.normal_(emb.weight, std=0.02)
        self.cross_weights: Tensor | None = None

    @property
    def n_patches(self) -> int:
        return self.encoder.config.n_patches

    # ------------------------------------------------------------------ checks
    def _check_images(self, images) -> Tensor:
        c = self.config
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != c.channels \
                or tuple(images.shape[2:]) != (c.image_size, c.image_size):
            got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            hint = " (one image? use images[None])" if isinstance(images, Tensor) and images.dim() == 3 else ""
            raise ValueError(f"images must be a (B, {c.channels}, {c.image_size}, {c.image_size}) tensor, "
                             f"got {got}{hint}")
        return images.float()

    def _check_ids(self, ids, batch: int) -> Tensor:
        c = self.config
        if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.is_floating_point() or ids.dtype == torch.bool:
            got = f"shape {tuple(ids.shape)}, dtype {ids.dtype}" if isinstance(ids, Tensor) else type(ids).__name__
            raise ValueError(f"ids must be a (B, L) tensor of integer word ids (VOCAB.batch(captions)), got {got}")
        if ids.shape[0] != batch or not 1 <= ids.shape[1] <= c.max_len:
            raise ValueError(f"ids must be (B={batch}, L) with 1 <= L <= max_len={c.max_len}, "
                             f"got {tuple(ids.shape)}")
        if int(ids.min()) < 0 or int(ids.max()) >= c.vocab_size:
            raise ValueError(f"ids must be in [0, vocab_size={c.vocab_size}), got min {int(ids.min())}, "
                             f"max {int(ids.max())}")
        return ids.long()

    # ------------------------------------------------------------------ the two halves
    def encode(self, images: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> the memory ``(B, N, d_model)``: one vector per patch, row-major."""
        return self.encoder(self._check_images(images))  # (B, N, d_model)

    def decode(self, memory: Tensor, ids: Tensor, need_weights: bool = False) -> Tensor:
        """``memory (B, N, d_model)``, ``ids (B, L)`` -> logits ``(B, L, V)``."""
        ids = self._check_ids(ids, memory.shape[0])
        L = ids.shape[1]
        x = self.drop(self.tok(ids) + self.pos(torch.arange(L, device=ids.device)))  # (B, L, d_model)
        for block in self.blocks:
            x = block(x, memory, need_weights=need_weights)  # (B, L, d_model): causal, then looks at the patches
        self.cross_weights = self.blocks[-1].cross_weights if need_weights else None  # (B, n_head, L, N)
        return self.head(self.norm(x))  # (B, L, V)

    def forward(self, images: Tensor, ids: Tensor) -> Tensor:
        return self.decode(self.encode(images), ids)  # (B, L, V)

    # ------------------------------------------------------------------ captioning
    @torch.no_grad()
    def generate(self, images: Tensor, need_weights: bool = False):
        """Greedy captions for a batch of images, all decoded together.

        Each step feeds the words so far (``<bos>`` first) and appends the likeliest next token (a word or
        ``<eos>``; never ``<pad>`` or ``<bos>``) to every caption not yet finished, until every caption has
        written ``<eos>`` or has ``max_len`` tokens.

        Returns:
            ``captions``, a list of ``B`` strings. With ``need_weights=True``, ``(captions, weights)``:
            ``weights`` ``(B, L_out, N)``, row ``t`` the cross-attention of the **last** decoder layer,
            averaged over its heads, at the step that wrote token ``t``: caption ``b``'s word ``t`` for
            ``t < len(captions[b].split())``, then its ``<eos>`` step (included) at ``t = len(words)``;
            ``L_out`` is the longest such count in the batch. Those rows sum to 1 over the ``N = 36``
            patches (row-major, patch ``n`` in grid row ``n // 6``, column ``n % 6``); the rows after a
            caption's ``<eos>`` are zeros. A caption cut at ``max_len`` without ``<eos>`` has no ``<eos>`` row.
            Each head's weights, ``(B, n_head, L_out, N)``, are left in :attr:`cross_weights`.
        """
        was_training = self.training
        self.eval()
        try:
            memory = self.encode(images)  # (B, N, d_model), once for every step
            B = memory.shape[0]
            if B == 0:
                raise ValueError(f"images has shape {tuple(images.shape)}: there is no image to caption")
            ids = torch.full((B, 1), VOCAB.BOS, dtype=torch.long)  # (B, 1)
            done = torch.zeros(B, dtype=torch.bool)
            written = []  # one (B,) mask per step: which captions wrote a token (a word or <eos>) there
            while ids.shape[1] < self.config.max_len and not done.all():
                # the whole prefix again: 15 steps of at most 15 words cost less than keeping a cache
                logits = self.decode(memory, ids)[:, -1]  # (B, V): the next word's
                logits[:, [VOCAB.PAD, VOCAB.BOS]] = float("-inf")  # never written: every step is a word or <eos>
                nxt = logits.argmax(dim=-1).masked_fill(done, VOCAB.PAD)  # (B,); finished captions are padded
                written.append(~done)
                ids = torch.cat([ids, nxt[:, None]], dim=1)  # (B, t + 1)
                done = done | (nxt == VOCAB.EOS)
            captions = [VOCAB.decode(row) for row in ids]
            if not need_weights:
                return captions
            # The decoder is causal, so one pass over the finished prefix gives each step's weights exactly:
            # position t reads tokens <= t, as it did when it wrote token t + 1.
            self.decode(memory, ids[:, :-1], need_weights=True)
            weights = self.cross_weights.mean(dim=1)  # (B, L_out, N): the heads' average
            return captions, weights * torch.stack(written, dim=1)[:, :, None]  # zero rows after <eos>
        finally:
            self.train(was_training)


def caption_loss(model: Captioner, batch) -> Tensor:
    r"""Teacher forcing: the mean cross-entropy of every next word, ``<pad>`` targets ignored.

    ``batch`` is ``(images (B, 3, 24, 24), ids (B, L))`` with ``ids`` from ``VOCAB.batch(captions)``.

    .. math:: \mathcal{L} = -\frac{1}{\#\{y_t \ne \mathrm{pad}\}} \sum_{b,\,t:\ y_{b,t} \ne \mathrm{pad}}
        \log p(y_{b,t} \mid y_{b,<t}, \text{image}_b)
    """
    images, ids = batch
    logits = model(images, ids[:, :-1])  # (B, L-1, V): reading <bos> .. up to the last word
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=VOCAB.PAD)


def _check_scenes(data) -> Scenes:
    if not isinstance(data, Scenes):
        raise ValueError(f"data must be an attnedu.vision.scenes.Scenes (from scenes(n, ...)), "
                         f"got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("data holds no scenes: there is nothing to caption")
    return data


def caption_accuracy(model: Captioner, data: Scenes, batch_size: int = 1000) -> float:
    """The exact-match fraction: the share of ``data``'s scenes whose generated caption is its caption, word for word."""
    data = _check_scenes(data)
    batch_size = positive_int(batch_size, "batch_size")
    right = 0
    for i in range(0, len(data), batch_size):
        captions = model.generate(data.images[i:i + batch_size])
        right += sum(p == t for p, t in zip(captions, data.captions[i:i + batch_size]))
    return right / len(data)


# ----------------------------------------------------------------------------- where the words look
def object_patches(obj: Object, patch: int = 4) -> list[int]:
    """The row-major indices of the ``patch x patch`` patches that overlap ``obj``'s ``8 x 8`` cell (4 of 36)."""
    cell, per_row = SIZE // GRID, SIZE // patch
    if not isinstance(obj, Object):
        raise ValueError(f"obj must be an attnedu.vision.scenes.Object, got {type(obj).__name__}")
    rows = range(obj.row * cell // patch, -(-(obj.row + 1) * cell // patch))  # patches that touch the cell
    cols = range(obj.col * cell // patch, -(-(obj.col + 1) * cell // patch))
    return [r * per_row + c for r in rows for c in cols]


def attention_to_object(weights_row, obj: Object) -> float:
    """The fraction of one row of cross-attention ``(36,)`` that falls on the patches of ``obj``'s cell.

    1/9 by chance (4 of the 36 patches); near 1 when the word looked at its object and nowhere else."""
    row = torch.as_tensor(weights_row, dtype=torch.float32).detach()
    if row.dim() != 1 or row.shape[0] != (SIZE // 4) ** 2:
        raise ValueError(f"weights_row must be one row of weights over the {(SIZE // 4) ** 2} patches, shape "
                         f"({(SIZE // 4) ** 2},), got {tuple(row.shape)}: take weights[b, t] of generate's weights")
    total = float(row.sum())
    if total <= 0:
        raise ValueError("weights_row sums to 0: it is a padding row (after the caption's <eos>), not a word's")
    return float(row[object_patches(obj)].sum()) / total


def shape_attention(model: Captioner, data: Scenes) -> float:
    """The mean :func:`attention_to_object` of the shape words over the scenes captioned right.

    In a caption, the ``k``-th shape word names the ``k``-th object in reading order (top to bottom, left to
    right); each such word's row of weights (the step that wrote it) is scored against its own object."""
    data = _check_scenes(data)
    captions, weights = model.generate(data.images, need_weights=True)
    shapes = {"circle", "square", "triangle"}
    scores = []
    for b, (cap, true) in enumerate(zip(captions, data.captions)):
        if cap != true:
            continue
        obs = sorted(data.objects[b], key=lambda o: (o.row, o.col))  # reading order, as the caption names them
        at = [t for t, w in enumerate(cap.split()) if w in shapes]
        scores += [attention_to_object(weights[b, t], ob) for t, ob in zip(at, obs)]
    if not scores:
        raise ValueError("no scene was captioned right: the shape words' attention is undefined")
    return sum(scores) / len(scores)


# ----------------------------------------------------------------------------- the shipped checkpoint
RECIPE = dict(seed=0, iters=1500, batch_size=96, lr=2e-3, warmup=40, weight_decay=0.05, grad_clip=1.0,
              n_objects=(1, 2, 3))


def recipe(stop_after: int | None = None, progress: bool = True) -> tuple[Captioner, dict]:
    """Train the shipped captioner (checkpoint ``"captioner"``); returns ``(model, record)``.

    Every batch is fresh scenes of the training combinations, ``scenes(batch_size, split="train", seed=s)``
    with a seed ``s`` drawn from the training loop's seeded generator, so the data never repeat. The
    record's metrics are measured after a float16 round-trip of the weights, as :func:`~attnedu.vision.
    checkpoints.save` stores them: exact match on 1000 held-out scenes (all, two objects, three objects),
    on 500 fresh training-combination scenes, and the shape words' :func:`shape_attention` on held-out scenes.
    """
    r = RECIPE
    torch.manual_seed(r["seed"])
    config = CaptionerConfig()
    model = Captioner(config)

    def batch_fn(generator: torch.Generator):
        # fresh scenes for every batch, drawn with a seed from train's generator: endless and reproducible
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        batch = scenes(r["batch_size"], split="train", n_objects=r["n_objects"], seed=seed)
        ids = VOCAB.batch(batch.captions)  # (B, L), padded to the batch's longest caption
        return batch.images, ids

    history = train(model, batch_fn, iters=r["iters"], lr=r["lr"], warmup=r["warmup"],
                    weight_decay=r["weight_decay"], grad_clip=r["grad_clip"], loss_fn=caption_loss,
                    seed=r["seed"], progress=progress, stop_after=stop_after)
    record = {"config": asdict(config), "recipe": {**r, "n_objects": list(r["n_objects"])},
              "steps": len(history.loss), "first_losses": history.loss[:20], "final_loss": history.loss[-1]}
    if stop_after is not None:
        return model, record
    # measure what will be shipped: the float16 weights
    model.load_state_dict({k: (v.half().float() if v.is_floating_point() else v)
                           for k, v in model.state_dict().items()})
    model.eval()
    record["metrics"] = captioner_metrics(model)
    return model, record


def captioner_metrics(model: Captioner, n_held_out: int = 1000, n_train: int = 500) -> dict:
    """The record's metrics: held-out exact match (all, 2 and 3 objects), training-combination exact match,
    and the shape words' attention on their own object (held-out scenes)."""
    held = scenes(n_held_out, split="held_out", seed=1)
    captions = model.generate(held.images)
    right = [p == t for p, t in zip(captions, held.captions)]
    by_count = {k: [ok for ok, obs in zip(right, held.objects) if len(obs) == k] for k in (2, 3)}
    fresh = scenes(n_train, split="train", seed=2)
    return {"held_out_exact_match": sum(right) / len(right),
            **{f"held_out_exact_match_{k}_objects": sum(v) / max(len(v), 1) for k, v in by_count.items()},
            "train_exact_match": caption_accuracy(model, fresh),
            "shape_attention_held_out": shape_attention(model, held),
            "attention_chance": 4 / model.n_patches}


def load_model(data: dict) -> Captioner:
    """Rebuild the captioner from :func:`attnedu.vision.checkpoints.load`'s ``data`` (``config``, ``state_dict``)."""
    config = dict(data["config"])
    model = Captioner(CaptionerConfig(**config))
    model.load_state_dict(data["state_dict"])
    return model.eval()
