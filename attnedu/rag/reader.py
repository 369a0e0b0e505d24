r"""A tiny reader: a Transformer that learns to copy an answer from its context (chapter 12).

The task is a world of invented facts, "the capital of Veltria is Morsk", about entities and
values that no model has seen, so the only way to answer is to read the context:

* :func:`invented_names`: pronounceable made-up names, the same for the same seed;
* :class:`FactWorld`: entities, attributes and values; a fact is a triple of indices
  ``(entity, attribute, value)``, written out by :meth:`FactWorld.sentence`;
  :meth:`FactWorld.batch` draws a batch of contexts and questions, **new facts every call**:
  which value belongs to which entity is drawn afresh each time, so a model cannot memorise
  facts and must learn to look them up;
* :class:`FactReader`: each fact becomes one vector (the sum of its entity, attribute and
  value embeddings), the question one more (entity and attribute, with an "unknown" value),
  and a Transformer encoder block (:class:`attnedu.nn.EncoderBlock`) lets the question attend
  to the facts; the question's output vector predicts the value. There are no positions: a
  context is a set of facts, and self-attention is permutation-equivariant (chapter 3);
* :func:`train_reader`: chapter 6's training loop, :func:`attnedu.train.train`, on fresh
  batches, with the cross-entropy of the value (:func:`reader_loss`) and the accuracy on fixed
  questions as its evaluation; it honours ``ATTNEDU_MAX_TRAIN_SECONDS`` like every call of it;
* :func:`pad_facts` and :func:`reader_accuracy`: contexts of different sizes as one padded
  batch (with a mask, True for the real facts), and the fraction answered right.

.. math::
    x_i = E_{ent}[e_i] + E_{att}[a_i] + E_{val}[v_i], \quad
    q = E_{ent}[e] + E_{att}[a] + E_{val}[\varnothing], \quad
    \hat v = \arg\max\, W\, \mathrm{LN}(\mathrm{Encoder}([x_1, \dots, x_F, q]))_{F+1}

Attention does the lookup: the question's query matches the key of the fact with the same
entity and attribute, and its value carries the value's embedding to the output, a learned
version of chapter 1's soft dictionary lookup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnedu._validate import positive_int
from attnedu.nn import EncoderBlock
from attnedu.train import History, train

__all__ = ["ATTRIBUTES", "invented_names", "FactWorld", "FactReader", "reader_loss", "train_reader",
           "pad_facts", "reader_accuracy"]

#: The attributes of the invented world's entities (countries of a made-up map).
ATTRIBUTES = ("capital", "river", "currency", "founder")

_ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "k", "kr", "l", "m", "n", "p", "qu", "r", "s", "sk", "st",
           "t", "th", "tr", "v", "vr", "z", "zh"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "y"]
_CODAS = ["", "", "", "n", "r", "l", "sk", "th", "x", "m", "nd", "rk"]


def invented_names(n: int, seed: int = 0, syllables: tuple[int, int] = (2, 2)) -> list[str]:
    """``n`` distinct made-up names such as ``"Vrelom"``, capitalised, drawn from syllables with
    a generator seeded by ``seed`` (the same seed gives the same names)."""
    positive_int(n, "n")
    g = torch.Generator().manual_seed(seed)

    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=g))]

    names: list[str] = []
    while len(names) < n:
        k = int(torch.randint(syllables[0], syllables[1] + 1, (1,), generator=g))
        name = "".join(pick(_ONSETS) + pick(_VOWELS) for _ in range(k)) + pick(_CODAS)
        if name.capitalize() not in names and 4 <= len(name) <= 8:
            names.append(name.capitalize())
    return names


@dataclass
class FactWorld:
    """A world of invented facts ``(entity, attribute, value)``, stored as index triples.

    Attributes:
        entities, values: the names (values are names too: a capital, a river, a founder ...).
        attributes: what a fact says about an entity, e.g. ``"capital"``.
    """

    entities: list
    attributes: list
    values: list

    @classmethod
    def invent(cls, n_entities: int = 40, n_values: int = 40, attributes: Sequence[str] = ATTRIBUTES,
               seed: int = 0) -> "FactWorld":
        """A world with ``n_entities`` and ``n_values`` invented names (all distinct)."""
        positive_int(n_entities, "n_entities")
        positive_int(n_values, "n_values")
        names = invented_names(n_entities + n_values, seed)
        return cls(names[:n_entities], list(attributes), names[n_entities:])

    def __post_init__(self):
        for name in ("entities", "attributes", "values"):
            items = getattr(self, name)
            if not items or len(set(items)) != len(items):
                raise ValueError(f"{name} must be a non-empty list of distinct names, got {items!r}")

    def _check_fact(self, fact) -> tuple[int, int, int]:
        if len(fact) != 3:
            raise ValueError(f"a fact is (entity, attribute, value) indices, got {fact!r}")
        e, a, v = (int(x) for x in fact)
        if not (0 <= e < len(self.entities) and 0 <= a < len(self.attributes) and 0 <= v < len(self.values)):
            raise ValueError(f"fact {fact!r} has an index out of range (entities {len(self.entities)}, "
                             f"attributes {len(self.attributes)}, values {len(self.values)})")
        return e, a, v

    def sentence(self, fact) -> str:
        """``(e, a, v)`` -> ``"The capital of Veltria is Morsk."``"""
        e, a, v = self._check_fact(fact)
        return f"The {self.attributes[a]} of {self.entities[e]} is {self.values[v]}."

    def question(self, entity: int, attribute: int) -> str:
        """``(e, a)`` -> ``"What is the capital of Veltria?"``"""
        e, a, _ = self._check_fact((entity, attribute, 0))
        return f"What is the {self.attributes[a]} of {self.entities[e]}?"

    def knowledge_base(self, n: int, seed: int = 0) -> list[tuple[int, int, int]]:
        """``n`` facts with distinct ``(entity, attribute)`` pairs and random values: a fixed
        collection to retrieve from. Needs ``n <= entities * attributes``."""
        positive_int(n, "n")
        pairs = len(self.entities) * len(self.attributes)
        if n > pairs:
            raise ValueError(f"n = {n} facts need distinct (entity, attribute) pairs; there are only {pairs}")
        g = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(pairs, generator=g)[:n]  # (n,)
        values = torch.randint(len(self.values), (n,), generator=g)  # (n,)
        A = len(self.attributes)
        return [(int(p) // A, int(p) % A, int(v)) for p, v in zip(chosen, values)]

    def batch(self, batch_size: int, n_facts: int = 6, generator: torch.Generator | None = None
              ) -> tuple[Tensor, Tensor, Tensor]:
        """A batch of contexts and questions, with facts drawn afresh.

        Each context holds ``n_facts`` facts with distinct ``(entity, attribute)`` pairs about
        ``ceil(n_facts / 2)`` entities (so that an entity usually has several facts, and the
        attribute matters); each value is drawn uniformly, independently of everything else. The
        question asks for the entity and attribute of one fact of its context, drawn uniformly.

        Returns:
            ``facts`` ``(B, F, 3)`` (entity, attribute, value indices), ``question`` ``(B, 2)``
            (entity, attribute), ``answer`` ``(B,)`` (the value index), all ``torch.long``.
        """
        positive_int(batch_size, "batch_size")
        positive_int(n_facts, "n_facts")
        E, A, V = len(self.entities), len(self.attributes), len(self.values)
        k = min(E, math.ceil(n_facts / 2))
        if k * A < n_facts:
            k = math.ceil(n_facts / A)
        if k > E:
            raise ValueError(f"n_facts = {n_facts} is more than the world's {E * A} (entity, attribute) pairs")
        ents = torch.stack([torch.randperm(E, generator=generator)[:k] for _ in range(batch_size)])  # (B, k)
        pairs = torch.stack([torch.randperm(k * A, generator=generator)[:n_facts]
                             for _ in range(batch_size)])  # (B, F) indices into k x A pairs
        entity = torch.gather(ents, 1, pairs // A)  # (B, F)
        attribute = pairs % A  # (B, F)
        value = torch.randint(V, (batch_size, n_facts), generator=generator)  # (B, F): drawn afresh
        facts = torch.stack([entity, attribute, value], dim=-1)  # (B, F, 3)
        pick = torch.randint(n_facts, (batch_size,), generator=generator)  # (B,) which fact is asked
        rows = torch.arange(batch_size)
        question = torch.stack([entity[rows, pick], attribute[rows, pick]], dim=-1)  # (B, 2)
        return facts, question, value[rows, pick]


class FactReader(nn.Module):
    """Reads a set of facts and a question; predicts the value the question asks for.

    ``forward(facts (B, F, 3), question (B, 2), mask (B, F) or None) -> logits (B, V)``, where
    ``mask`` is True for the real facts and False for padding (no fact there), the course's
    convention (:func:`pad_facts` builds it); ``F`` may be 0 (no context at all).
    """

    def __init__(self, n_entities: int, n_attributes: int, n_values: int, d_model: int = 64, n_head: int = 2,
                 n_layer: int = 1):
        super().__init__()
        for name, value in (("n_entities", n_entities), ("n_attributes", n_attributes), ("n_values", n_values),
                            ("d_model", d_model), ("n_head", n_head), ("n_layer", n_layer)):
            positive_int(value, name)
        if d_model % n_head:
            raise ValueError(f"d_model = {d_model} must be divisible by n_head = {n_head}")
        self.sizes = (n_entities, n_attributes, n_values)
        self.entity = nn.Embedding(n_entities, d_model)
        self.attribute = nn.Embedding(n_attributes, d_model)
        self.value = nn.Embedding(n_values + 1, d_model)  # the last row: "unknown", the question's value
        self.blocks = nn.ModuleList(EncoderBlock(d_model, n_head, 4 * d_model, norm_first=True)
                                    for _ in range(n_layer))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_values)

    @classmethod
    def for_world(cls, world: FactWorld, **kwargs) -> "FactReader":
        return cls(len(world.entities), len(world.attributes), len(world.values), **kwargs)

    def _check(self, facts: Tensor, question: Tensor, mask: Tensor | None) -> None:
        E, A, V = self.sizes
        if not isinstance(facts, Tensor) or facts.dim() != 3 or facts.shape[-1] != 3 or facts.dtype != torch.long:
            raise ValueError(f"facts must be a (B, F, 3) torch.long tensor of (entity, attribute, value) indices, "
                             f"got {getattr(facts, 'shape', type(facts).__name__)}")
        if not isinstance(question, Tensor) or question.shape != (facts.shape[0], 2) or question.dtype != torch.long:
            raise ValueError(f"question must be a ({facts.shape[0]}, 2) torch.long tensor of (entity, attribute), "
                             f"got {getattr(question, 'shape', type(question).__name__)}")
        if mask is not None and (not isinstance(mask, Tensor) or mask.shape != facts.shape[:2]
                                 or mask.dtype != torch.bool):
            raise ValueError(f"mask must be a {tuple(facts.shape[:2])} bool tensor (True: a real fact), "
                             f"got {getattr(mask, 'shape', type(mask).__name__)}")
        for t, limits, name in ((facts, (E, A, V), "facts"), (question, (E, A), "question")):
            for j, limit in enumerate(limits):
                if t.numel() and (int(t[..., j].min()) < 0 or int(t[..., j].max()) >= limit):
                    raise ValueError(f"{name}[..., {j}] holds an index outside [0, {limit})")

    def forward(self, facts: Tensor, question: Tensor, mask: Tensor | None = None,
                need_weights: bool = False) -> Tensor:
        self._check(facts, question, mask)
        B, n_facts, _ = facts.shape
        x = self.entity(facts[..., 0]) + self.attribute(facts[..., 1]) + self.value(facts[..., 2])  # (B, F, C)
        unknown = torch.full((B,), self.sizes[2], dtype=torch.long)
        q = self.entity(question[:, 0]) + self.attribute(question[:, 1]) + self.value(unknown)  # (B, C)
        x = torch.cat([x, q[:, None]], dim=1)  # (B, F + 1, C): the question is the last element
        real = None
        if mask is not None:  # the question is always real
            real = torch.cat([mask, torch.ones(B, 1, dtype=torch.bool, device=mask.device)], dim=1)  # (B, F + 1)
        for block in self.blocks:
            x = block(x, padding_mask=real, need_weights=need_weights)  # (B, F + 1, C)
        return self.head(self.norm(x[:, -1]))  # (B, V): read the answer at the question

    @torch.no_grad()
    def attention(self, facts: Tensor, question: Tensor, mask: Tensor | None = None) -> Tensor:
        """The last block's attention from the question to each fact and itself: ``(B, H, F + 1)``."""
        was = self.training
        self.eval()
        try:
            self.forward(facts, question, mask, need_weights=True)
        finally:
            self.train(was)
        return self.blocks[-1].attn_weights[:, :, -1, :]  # (B, H, T, T) -> the question's row

    @torch.no_grad()
    def predict(self, facts: Tensor, question: Tensor, mask: Tensor | None = None) -> Tensor:
        """The predicted value indices, ``(B,)``."""
        was = self.training
        self.eval()
        try:
            return self.forward(facts, question, mask).argmax(dim=-1)
        finally:
            self.train(was)


def pad_facts(contexts: Sequence[Sequence], n_facts: int | None = None) -> tuple[Tensor, Tensor]:
    """Contexts of different sizes (lists of ``(e, a, v)`` triples) as one batch.

    Returns:
        ``facts`` ``(B, F, 3)`` with ``F = n_facts`` or the longest context, padded with zeros,
        and ``mask`` ``(B, F)``, True where there is a real fact and False on padding (the
        course's convention: True = may be attended to). A context longer than ``n_facts``
        raises ``ValueError``.
    """
    if isinstance(contexts, Tensor) or not isinstance(contexts, Sequence):
        raise ValueError("contexts must be a list with one list of (entity, attribute, value) triples per question")
    longest = max((len(c) for c in contexts), default=0)
    width = longest if n_facts is None else n_facts
    if longest > width:
        raise ValueError(f"a context has {longest} facts, more than n_facts = {n_facts}")
    facts = torch.zeros(len(contexts), width, 3, dtype=torch.long)
    mask = torch.zeros(len(contexts), width, dtype=torch.bool)
    for i, context in enumerate(contexts):
        for j, fact in enumerate(context):
            if len(fact) != 3:
                raise ValueError(f"contexts[{i}][{j}] must be an (entity, attribute, value) triple, got {fact!r}")
            facts[i, j] = torch.tensor([int(x) for x in fact])
            mask[i, j] = True
    return facts, mask


def reader_accuracy(model: FactReader, facts: Tensor, question: Tensor, answer: Tensor,
                    mask: Tensor | None = None) -> float:
    """The fraction of questions whose predicted value is ``answer`` ``(B,)``."""
    if not isinstance(answer, Tensor) or answer.shape != (question.shape[0],):
        raise ValueError(f"answer must be a ({question.shape[0]},) tensor of value indices")
    return float((model.predict(facts, question, mask) == answer).float().mean())


def reader_loss(model: FactReader, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """The cross-entropy of the predicted value, for a batch ``(facts, question, answer)`` of
    :meth:`FactWorld.batch`: the ``loss_fn`` of :func:`attnedu.train.train`."""
    facts, question, answer = batch
    return F.cross_entropy(model(facts, question), answer)


def train_reader(model: FactReader, world: FactWorld, *, iters: int = 400, batch_size: int = 64,
                 n_facts: int = 6, lr: float = 3e-3, warmup: int | None = None, eval_every: int = 50,
                 seed: int = 0, max_seconds: float | None = None, progress: bool = True) -> History:
    """Train ``model`` to answer :meth:`FactWorld.batch` questions with :func:`attnedu.train.train`.

    Every step draws a fresh batch (new facts), :func:`reader_loss` is the loss, AdamW (no
    weight decay) follows a warm-up of ``warmup`` steps (default ``min(20, iters)``) and a
    cosine decay to ``lr / 10``. Every ``eval_every`` steps the accuracy on 512 fixed questions
    (drawn from ``seed + 1``) is measured: ``history.accuracy``, at ``history.eval_iters``.

    Seeded: the batches come from ``seed``, so the same seed and initial weights give the same
    losses. ``max_seconds`` (and ``$ATTNEDU_MAX_TRAIN_SECONDS``, which caps it) stops training
    early (``history.stopped_early``); at least one step always runs.
    """
    if not isinstance(model, FactReader):
        raise ValueError(f"model must be a FactReader, got {type(model).__name__}")
    if model.sizes != (len(world.entities), len(world.attributes), len(world.values)):
        raise ValueError(f"the model is sized for {model.sizes} (entities, attributes, values) but the world has "
                         f"{(len(world.entities), len(world.attributes), len(world.values))}")
    batch_size, n_facts = positive_int(batch_size, "batch_size"), positive_int(n_facts, "n_facts")
    held_out = world.batch(512, n_facts, torch.Generator().manual_seed(seed + 1))  # fixed, for evaluation

    def batch_fn(generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        return world.batch(batch_size, n_facts, generator)  # new facts every step

    def eval_fn() -> dict[str, float]:
        return {"accuracy": reader_accuracy(model, *held_out)}

    return train(model, batch_fn, loss_fn=reader_loss, iters=iters, lr=lr,
                 warmup=min(20, positive_int(iters, "iters")) if warmup is None else warmup,
                 eval_fn=eval_fn, eval_every=eval_every, seed=seed, progress=progress, max_seconds=max_seconds)
