"""Chapter 7's exercises, *Real models, your attention*, as records (see :mod:`attnedu.checks`). ``our_name``
returns a string or None, compared by the ``"name"`` comparison registered here; ``predict_kv_cache_mib`` is a
prediction, made before the chapter computes the KV cache of SmolLM2."""

import re

import torch

from ..llama import grouped_query_attention, kv_cache_mib
from ..pretrained.minilm import UNUSED_WEIGHTS, minilm_weight_map, our_name
from ..pretrained.pooling import mean_pool
from . import Case, CheckFailed, Exercise, ExerciseSet, register, rows_sum_to_one
from .engine import with_article

def _compare_name(got, case, lead, ex):
    exp, kind = case.expected, with_article(type(got).__name__)
    if got is not None and not isinstance(got, str):
        raise CheckFailed(f"{lead} returned {kind}; expected a string such as 'layers.0.self_attn.q_proj.weight', or "
                          "None for a tensor our model does not use.", about_values=False)
    if got != exp:
        raise CheckFailed(f"{lead} returned {got!r}; expected None: our model has no parameter for this tensor (see "
                          "UNUSED_WEIGHTS in the listing)." if exp is None else f"{lead} returned None, as if our "
                          f"model did not use this tensor; expected {exp!r} (and if you did not mean None: does every "
                          "branch end with `return`?)." if got is None else
                          f"{lead} returned {got!r}; expected {exp!r}.")
register("name", _compare_name, lambda a, b, ex=None: (a is None or isinstance(a, str)) and a == b)

_NAMES = {  # the names the visible check tries, easiest first, with their hints
    "encoder.layer.0.attention.self.query.weight": "by hand: the checkpoint's `encoder.layer.0` is our `layers.0`, "
    "its `attention.self.query` is our `self_attn.q_proj`, and the last part, `.weight`, stays: "
    "'layers.0.self_attn.q_proj.weight'.",
    "encoder.layer.0.attention.self.key.bias": "keep the last part as it is: `.weight` stays `.weight`, `.bias` stays "
    "`.bias`.",
    "encoder.layer.0.attention.self.value.weight": None,
    "encoder.layer.3.attention.self.query.bias": "take the layer number from the name.",
    "encoder.layer.3.intermediate.dense.weight": "`intermediate.dense` widens each token from 384 to 1536 features: "
    "the feed-forward's first layer, ff.fc1.",
    "encoder.layer.3.output.dense.weight": "`output.dense` (without `attention.` in front) narrows 1536 features back "
    "to 384: the feed-forward's second layer, ff.fc2.",
    "encoder.layer.3.attention.output.dense.weight": "`attention.output.dense` is the attention's output projection "
    "W_o, self_attn.out_proj; compare whole module names, not their endings.",
    "encoder.layer.5.attention.output.LayerNorm.weight": "`attention.output.LayerNorm` is the norm after the "
    "attention's residual connection: res1.norm.",
    "encoder.layer.5.output.LayerNorm.bias": "`output.LayerNorm` (without `attention.` in front) is the norm after the "
    "feed-forward's residual: res2.norm.",
    "embeddings.word_embeddings.weight": "the embeddings have their own names: word_embeddings is our embeddings.word.",
    "embeddings.position_embeddings.weight": None, "embeddings.token_type_embeddings.weight": None,
    "embeddings.LayerNorm.weight": "the embeddings' LayerNorm is our embeddings.norm, not a norm of a layer.",
    "encoder.layer.11.attention.self.key.weight": "a bigger BERT has layers 10, 11, ...: read the whole number, e.g. "
    "with name.split('.')[2].",
    "pooler.dense.weight": "our model has no pooler (sentence-transformers averages the tokens instead): return None "
    "for it.",
    "embeddings.position_ids": "embeddings.position_ids is not a weight but a saved buffer holding 0, 1, ..., 511; we "
    "compute torch.arange(T) instead, so return None.",
}
_NAME_MISTAKES = {"embeddings.position_ids": [("embeddings.position.weight", "embeddings.position_ids is not the "
                  "position embedding (that is embeddings.position_embeddings.weight) but a saved buffer of 0, 1, "
                  "..., 511 that our model computes with torch.arange(T): return None.")]}
def _name_cases(names):
    return [Case((n,), about=repr(n), hint=_NAMES.get(n), mistakes=_NAME_MISTAKES.get(n, ())) for n in names]
_PARTS = {t[16:-7]: o[9:-7] for t, o in minilm_weight_map(1).items()  # "attention.self.query": "self_attn.q_proj"
          if t.startswith("encoder.") and t.endswith(".weight")}
def _name_with(name, *, swap=(), moved={}, ends_with=False, layer=int, prefix="layers.", end="{}", norm="embeddings"):
    # the usual mistakes as switches (ends_with: modules matched by the end of their names, shortest first)
    if not (match := re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(\w+)", name)):
        return f"{norm}.norm.{name[21:]}" if name.startswith("embeddings.LayerNorm.") else our_name(name)
    i, module, p = match.groups()
    parts = {**_PARTS, **moved, **({swap[0]: _PARTS[swap[1]], swap[1]: _PARTS[swap[0]]} if swap else {})}
    module = next((m for m in sorted(parts, key=len) if module.endswith(m)), None) if ends_with else module
    return f"{prefix}{layer(i)}.{parts[module]}{end.format('.' + p)}" if module in parts else None
def _name_probes():  # every kind of name, to tell mistakes apart
    return [Case((f"encoder.layer.{i}.{m}.{p}",)) for i in (2, 10) for m in _PARTS for p in ("weight", "bias")]
_NAME = Exercise("our_name", ["checkpoint_name"], our_name, lambda: _name_cases(_NAMES),
                 lambda: _name_cases([*minilm_weight_map(12), *UNUSED_WEIGHTS]),  # every tensor of BERT-base
                 compare="name", options={"none_allowed": True}, wrong=_name_with, probes=_name_probes, mistakes=[
    ({"ends_with": True}, "it matches a module by the end of its name, so `output.dense` also catches "
     "`attention.output.dense` (and `output.LayerNorm` catches `attention.output.LayerNorm`): look the whole "
     "module name up in a dict, or test the longer name first."),
    ({"swap": ("attention.output.LayerNorm", "output.LayerNorm")}, "the two LayerNorms of a layer are swapped: "
     "`attention.output.LayerNorm` follows the attention (res1.norm), `output.LayerNorm` follows the feed-forward "
     "(res2.norm)."),
    ({"swap": ("intermediate.dense", "output.dense")}, "the feed-forward's two layers are swapped: "
     "`intermediate.dense` (384 -> 1536) is ff.fc1, `output.dense` (1536 -> 384) is ff.fc2; the shapes in the "
     "listing tell them apart."),
    ({"moved": {"attention.output.dense": "ff.fc2"}}, "`attention.output.dense` went to ff.fc2: it is the "
     "attention's output projection, self_attn.out_proj (its shape is (384, 384), fc2's is (384, 1536))."),
    ({"moved": {"attention.output.LayerNorm": "res2.norm"}}, "`attention.output.LayerNorm` went to res2.norm: it "
     "is the norm after the attention, res1.norm."),
    ({"swap": ("attention.self.query", "attention.self.key")}, "query and key are swapped: "
     "`attention.self.query` is q_proj and `attention.self.key` is k_proj."),
    ({"swap": ("attention.self.key", "attention.self.value")}, "key and value are swapped: `attention.self.key` "
     "is k_proj and `attention.self.value` is v_proj."),
    ({"end": ""}, "it leaves out the parameter's last part: keep `.weight` or `.bias` at the end."),
    ({"end": ".weight"}, "it always ends the name with `.weight`: keep the checkpoint's own last part, `.bias` for "
     "a bias."),
    ({"layer": lambda i: 0}, "it always uses layer 0: take the layer number from the checkpoint's name."),
    ({"layer": lambda i: i[0]}, "it reads only the first digit of the layer number: split the name on '.' and "
     "take the whole third part."),
    ({"layer": lambda i: int(i) + 1}, "the layer number is off by one: both count from 0, so encoder.layer.3 is "
     "layers.3."),
    ({"prefix": "encoder.layer."}, "it keeps the checkpoint's prefix `encoder.layer.{i}.`: our layers are called "
     "`layers.{i}.`."),
    ({"prefix": "layer."}, "our layers are called `layers.{i}.` (plural), not `layer.{i}.`."),
    (lambda name: name, "it returns the checkpoint's own name: translate it into our model's parameter name."),
    ({"norm": "res1"}, "the embeddings' LayerNorm is our `embeddings.norm`, not a layer's res1.norm.")])
def _pool_with(h, mask, *, use_mask=True, invert=False, divide="count", pool="mean", unit=False):  # the usual mistakes
    m = mask.to(h.dtype).unsqueeze(-1)  # (B, T, 1)
    m = (1 - m) if invert else m if use_mask else torch.ones_like(m)
    if pool != "mean":
        return h[:, 0] if pool == "first" else h.masked_fill(m == 0, float("-inf")).amax(dim=1)
    out = (h * m).sum(dim=1) / {"count": m.sum(1).clamp(min=1e-9), "T": h.shape[1], "batch": m.sum(), "none": 1}[divide]
    return torch.nn.functional.normalize(out, dim=-1) if unit else out
def _randn(g, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=g, dtype=dtype)
def _pool_cases():
    g, tiny = torch.Generator().manual_seed(71), torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]]).double()
    h2, h3, h4, h5 = _randn(g, 2, 4, 3), _randn(g, 3, 5, 4) * 3 + 1, _randn(g, 2, 3, 6), _randn(g, 2, 3, 2)
    m3 = torch.tensor([[True, True, True, False, False], [True] * 5, [True, False, False, False, False]])
    return [Case(args, about=about, hint=hint) for args, about, hint in [
        ((tiny, torch.tensor([[1, 1, 0]])), "hidden = [[[1, 2], [3, 4], [100, 100]]], mask = [[1, 1, 0]]", "by hand: "
         "the third token is padding and must not count, so the result is [(1 + 3) / 2, (2 + 4) / 2] = [[2, 3]], "
         "shape (B, E) = (1, 2)."),
        ((h2, torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])), "hidden of shape (2, 4, 3), sentences of 4 and 2 tokens",
         "divide each sentence's sum by its own number of real tokens: mask.sum(dim=1, keepdim=True)."),
        ((h3, m3), "hidden of shape (3, 5, 4), a boolean mask", "the mask may hold booleans: convert it with "
         "mask.to(hidden.dtype) (or .float()) before multiplying, and use it as (B, T, 1) so that it broadcasts over "
         "the features."),
        ((h4, torch.ones(2, 3, dtype=torch.long)), "hidden of shape (2, 3, 6), no padding",
         "without padding the result is the plain mean over the tokens, hidden.mean(dim=1)."),
        ((h5, torch.tensor([[1, 1, 0], [0, 0, 0]])), "hidden of shape (2, 3, 2), the second sentence all padding",
         "a sentence without a single real token would divide 0 by 0: clamp the count, count.clamp(min=1e-9), as "
         "sentence-transformers does, so that it gets zeros.")]]
def _pool_hidden():
    g, cases = torch.Generator().manual_seed(702), []
    for B, T, E in [(1, 1, 1), (2, 7, 5), (4, 9, 16), (3, 2, 384)]:
        h, m = _randn(g, B, T, E) * 4 - 1, torch.arange(T) < torch.randint(1, T + 1, (B, 1), generator=g)
        cases += [Case((h, m.long())), Case((h, m))]  # padding at the end (below: anywhere)
    return cases + [Case((_randn(g, 3, 5, 4), torch.tensor([[0, 1, 1, 0, 1], [0, 0, 0, 0, 0], [1, 0, 0, 0, 0]]))),
                    Case((torch.randn(2, 6, 8, generator=g), torch.tensor([[1] * 6, [1, 1, 0, 0, 0, 0]])), atol=1e-6)]
_POOL = Exercise("mean_pool", ["hidden", "mask"], mean_pool, _pool_cases, _pool_hidden, wrong=_pool_with, mistakes=[
    ({"use_mask": False}, "it averages the padding positions too: multiply by the mask before summing over the "
     "tokens, and divide by the number of real tokens."),
    ({"divide": "none"}, "it sums the real tokens' vectors without dividing by how many there are: divide by "
     "mask.sum(dim=1, keepdim=True)."),
    ({"divide": "T"}, "it divides by T, the padded length: divide by the number of real tokens of each sentence, "
     "mask.sum(dim=1, keepdim=True)."),
    ({"divide": "batch"}, "it divides by the number of real tokens in the whole batch: count each sentence's own "
     "tokens, mask.sum(dim=1, keepdim=True)."),
    ({"invert": True}, "it averages the padding instead of the tokens: the mask is 1 on real tokens and 0 on "
     "padding."),
    ({"pool": "first"}, "it returns the first token's vector ([CLS] pooling): this model averages the real tokens."),
    ({"unit": True}, "it also scales the result to unit length: mean_pool returns the mean; l2_normalize is the "
     "separate next step."),
    ({"pool": "max"}, "it takes the largest value of each feature (max pooling): average the real tokens instead.")])
_KV_CASE = "SmolLM2 with 8,192 tokens in float32"  # within 5%: MB for MiB is fine, a missing factor is not
_KV = Exercise("predict_kv_cache_mib", [], kv_cache_mib, lambda: [Case(about=_KV_CASE, rtol=0.05, mistakes=[
    (1080, "1,080 MiB is the cache of multi-head attention, with 9 key/value heads: SmolLM2 caches only its 3 "
     "key/value heads; the 9 query heads are never cached."),
    (180, "that counts the keys only: the cache holds a key and a value for every key/value head, hence the 2."),
    (720, "720 MiB is what grouped-query attention saves (1,080 - 360): the question asks what the cache still "
     "takes."),
    (12, "that is one layer's cache: every one of the 30 layers keeps its own keys and values."),
    (90, "that counts numbers, not bytes: a float32 number takes 4 bytes."),
    (0.0439453125, "that is the cache of a single token: a full context holds 8,192 of them.")])],
    compare="number", kind="predict", explain=(
    "2 (a key and a value) × 30 layers × 3 key/value heads × 64 features × 8,192 tokens × 4 bytes = 360 MiB. With "
    "9 key/value heads, one per query head, it would be 1,080 MiB: grouped-query attention keeps a third of the "
    "cache, and every generated token reads a third as much memory."))
def _gqa_with(q, k, v, *, heads="interleave", mask="causal", power=0.5, dim=-1):  # the usual mistakes as switches
    (H, T, d), H_kv = q.shape, k.shape[0]
    index = {"interleave": torch.arange(H) // (H // H_kv), "tile": torch.arange(H) % H_kv, "first": torch.zeros(H)}
    k, v = k[index[heads].long()], v[index[heads].long()]  # (H, T, d)
    scores, ones = q @ k.transpose(-2, -1) / d ** power, torch.ones(T, T, dtype=q.dtype)  # (H, T, T)
    hide = {"causal": ones.triu(1), "flipped": ones.tril(-1)}.get(mask)
    w = torch.softmax(scores if hide is None else scores.masked_fill(hide.bool(), float("-inf")), dim=dim)
    w = w * ones.tril() if mask == "after" else w
    return w @ v, w
def _qkv(g, H, H_kv, T, d, scale=1.0, dtype=torch.float64):
    return tuple(_randn(g, n, T, d, dtype=dtype) * s for n, s in ((H, scale), (H_kv, scale), (H_kv, 1)))
def _gqa_cases():
    g, q1 = torch.Generator().manual_seed(72), torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[2.0, 1.0], [1.0, -1.0]]])
    tiny = tuple(x.double() for x in (q1, torch.zeros(1, 2, 2), q1[:1]))  # q (2, 2, 2), k = 0, v: the first head of q
    return [Case(args, about=about, hint=hint) for args, about, hint in [
        (tiny, "2 query heads, 1 key/value head, T = 2, keys all 0", "by hand: every score is 0, so with the causal "
         "mask the weights of each head are [[1, 0], [0.5, 0.5]] and the output is [[1, 0], [0.5, 0.5]]; return "
         "(out, weights)."),
        (_qkv(g, 4, 2, 3, 4), "4 query heads sharing 2 key/value heads, T = 3, d = 4", "query heads 0 and 1 use "
         "key/value head 0, heads 2 and 3 use head 1; divide the scores by sqrt(d) and mask the future."),
        (_qkv(g, 9, 3, 5, 8), "SmolLM2's grouping: 9 query heads, 3 key/value heads, T = 5",
         "read H, H_kv, T and d from the shapes; each key/value head serves H // H_kv query heads."),
        (_qkv(g, 3, 3, 4, 2), "3 query heads and 3 key/value heads (ordinary multi-head)",
         "with H_kv = H every query head has its own key/value head."),
        (_qkv(g, 4, 1, 6, 3), "4 query heads sharing 1 key/value head (multi-query), T = 6", None)]]
def _gqa_hidden():
    g = torch.Generator().manual_seed(703)
    cases = [Case(_qkv(g, *s, scale=2.0)) for s in [(1, 1, 1, 1), (2, 1, 4, 3), (6, 2, 7, 5), (8, 4, 3, 2),
                                                    (9, 3, 12, 64), (12, 1, 5, 4), (4, 4, 9, 8)]]
    return cases + [Case(tuple(torch.randn(n, 6, 4, generator=g) for n in (6, 3, 3)), rtol=1e-4, atol=1e-6)]  # float32
_GQA = Exercise("grouped_query_attention", ["q", "k", "v"], grouped_query_attention, _gqa_cases, _gqa_hidden,
                outputs=("out", "weights"), properties=[rows_sum_to_one()], wrong=_gqa_with, mistakes=[
    ({"heads": "tile"}, "it tiles the key/value heads (0, 1, 0, 1, ...), as k.repeat does: query head i uses "
     "key/value head i // (H // H_kv) (0, 0, 1, 1, ...), which is what k.repeat_interleave(H // H_kv, dim=0) gives."),
    ({"heads": "first"}, "every query head uses key/value head 0: query head i uses head i // (H // H_kv)."),
    ({"mask": None}, "there is no causal mask: position t may attend only to the keys s <= t; set the scores above "
     "the diagonal to -inf before the softmax."),
    ({"mask": "flipped"}, "the causal mask is flipped: it hides the past instead of the future; mask the scores "
     "above the diagonal (torch.triu(..., diagonal=1)), not below it."),
    ({"power": 0}, "the scores are not scaled: divide q @ k^T by sqrt(d), d being the size of one head."),
    ({"power": 1}, "the scores are divided by d: divide them by sqrt(d)."),
    ({"mask": "after"}, "it masks after the softmax: the weights left no longer sum to 1; set the future scores to "
     "-inf before the softmax instead."),
    ({"dim": -2}, "the softmax runs over the queries (dim=-2): each query's weights over the keys must sum to 1, "
     "dim=-1.")])
EXERCISES = ExerciseSet(_NAME, _POOL, _KV, _GQA)
check, reveal = EXERCISES.check, EXERCISES.reveal
