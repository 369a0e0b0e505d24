"""Chapter 7's checks: the library's versions pass them, typical mistakes get the sentence meant
for them, and garbage never crashes a check; the prediction's visible check records any number and its
hidden check grades it against the KV cache the chapter then computes. (That the references are the real thing, the name
table that loads all-MiniLM-L6-v2, sentence-transformers' pooling, one step of
attnedu.llama.GroupedQueryAttention, is tested in test_pretrained_minilm.py and test_pretrained_smollm.py.)"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import assert_one_sentence, garbage, returns_none, returns_text, stub  # learners' typical garbage
from attnedu.checks import CheckFailed
from attnedu.checks import ch07_pretrained as ch07
from attnedu.checks.engine import check as run_check
from attnedu.llama import LlamaConfig, kv_cache_mib
from attnedu.llama import grouped_query_attention as gqa_ref
from attnedu.pretrained.minilm import our_name as name_ref
from attnedu.pretrained.pooling import mean_pool as pool_ref

check_our_name, check_mean_pool, check_kv, check_gqa = (partial(ch07.check, n) for n in (
    "our_name", "mean_pool", "predict_kv_cache_mib", "grouped_query_attention"))

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ the notebook's solutions
EMBEDDINGS = {"word_embeddings": "word", "position_embeddings": "position",
              "token_type_embeddings": "token_type", "LayerNorm": "norm"}
LAYER = {"attention.self.query": "self_attn.q_proj", "attention.self.key": "self_attn.k_proj",
         "attention.self.value": "self_attn.v_proj", "attention.output.dense": "self_attn.out_proj",
         "attention.output.LayerNorm": "res1.norm", "intermediate.dense": "ff.fc1",
         "output.dense": "ff.fc2", "output.LayerNorm": "res2.norm"}


def our_name(checkpoint_name):
    parts = checkpoint_name.split(".")
    param = parts[-1]
    if parts[0] == "embeddings" and parts[1] in EMBEDDINGS:
        return f"embeddings.{EMBEDDINGS[parts[1]]}.{param}"
    if parts[:2] == ["encoder", "layer"]:
        module = ".".join(parts[3:-1])
        return f"layers.{int(parts[2])}.{LAYER[module]}.{param}"
    return None


def mean_pool(hidden, mask):
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def grouped_query_attention(q, k, v):
    H, T, d = q.shape
    n_rep = H // k.shape[0]
    k = k.repeat_interleave(n_rep, dim=0)
    v = v.repeat_interleave(n_rep, dim=0)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    return weights @ v, weights


def grouped_query_attention_numpy(q, k, v):
    q, k, v = (np.asarray(x) for x in (q, k, v))
    H, T, d = q.shape
    k = np.repeat(k, H // k.shape[0], axis=0)
    v = np.repeat(v, H // v.shape[0], axis=0)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(d)
    scores = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)
    w = np.exp(scores - scores.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    return w @ v, w


def test_the_library_passes_every_chapter_7_check_visible_and_hidden(capsys):
    for name, ex in ch07.EXERCISES.items():
        ch07.check(name, ex.reference)
        ch07.check(name, ex.reference, hidden=True)
    out = capsys.readouterr().out
    assert out.count("passes all") == 3 and "passes all 16 checks" in out
    assert "Your prediction, 360.0, is recorded" in out


def test_the_references_are_the_librarys_versions():
    assert [ex.reference for ex in ch07.EXERCISES.values()] == [name_ref, pool_ref, kv_cache_mib, gqa_ref]
    assert [ex.kind for ex in ch07.EXERCISES.values()] == ["code", "code", "predict", "code"]


@pytest.mark.parametrize("name, wrong, sentence", [(n, w, t) for n, ex in ch07.EXERCISES.items() for w, t in ex.mistakes])
@pytest.mark.parametrize("hidden", [False, True])
def test_every_typical_mistake_is_named_with_its_own_sentence(name, wrong, sentence, hidden):
    ex = ch07.EXERCISES[name]
    with pytest.raises(CheckFailed) as info:
        ch07.check(name, partial(ex.wrong, **wrong) if isinstance(wrong, dict) else wrong, hidden=hidden)
    assert str(info.value).endswith(f"Likely cause: {sentence}")


def predict_kv_cache_mib():
    return 2 * 30 * 3 * 64 * 8192 * 4 / 2**20


def test_the_notebooks_own_solutions_pass(capsys):
    check_our_name(our_name)
    check_mean_pool(mean_pool)
    check_kv(predict_kv_cache_mib)
    check_kv(predict_kv_cache_mib, hidden=True)
    check_gqa(grouped_query_attention)
    check_gqa(grouped_query_attention_numpy)  # NumPy is fine too
    out = capsys.readouterr().out
    assert out.count("passes all") == 4 and "Your prediction, 360.0, is recorded" in out


# ------------------------------------------------------------------ our_name: typical mistakes
def name_ends_with(checkpoint_name):  # shortest pattern first: output.dense catches attention.output.dense
    parts = checkpoint_name.split(".")
    if parts[0] != "encoder":
        return our_name(checkpoint_name)
    module = ".".join(parts[3:-1])
    for theirs in ("output.dense", "output.LayerNorm", "intermediate.dense", "attention.self.query",
                   "attention.self.key", "attention.self.value", "attention.output.dense",
                   "attention.output.LayerNorm"):
        if module.endswith(theirs):
            return f"layers.{parts[2]}.{LAYER[theirs]}.{parts[-1]}"


def with_layer_table(**changes):
    table = dict(LAYER, **{k.replace("__", "."): v for k, v in changes.items()})

    def fn(checkpoint_name):
        parts = checkpoint_name.split(".")
        if parts[0] != "encoder":
            return our_name(checkpoint_name)
        return f"layers.{parts[2]}.{table['.'.join(parts[3:-1])]}.{parts[-1]}"

    return fn


def name_no_param(checkpoint_name):
    name = our_name(checkpoint_name)
    return name.rsplit(".", 1)[0] if checkpoint_name.startswith("encoder") else name


def name_always_weight(checkpoint_name):
    name = our_name(checkpoint_name)
    return name.rsplit(".", 1)[0] + ".weight" if name else name


def name_layer_zero(checkpoint_name):
    name = our_name(checkpoint_name)
    if checkpoint_name.startswith("encoder"):
        return name.replace(f"layers.{checkpoint_name.split('.')[2]}.", "layers.0.")
    return name


def name_first_digit(checkpoint_name):
    if not checkpoint_name.startswith("encoder"):
        return our_name(checkpoint_name)
    parts = checkpoint_name.split(".")
    i = checkpoint_name[14]  # "encoder.layer." is 14 characters: one digit only
    return f"layers.{i}.{LAYER['.'.join(parts[3:-1])]}.{parts[-1]}"


def name_keeps_prefix(checkpoint_name):
    name = our_name(checkpoint_name)
    if checkpoint_name.startswith("encoder"):
        return name.replace("layers.", "encoder.layer.", 1)
    return name


def name_unchanged(checkpoint_name):
    return checkpoint_name


def name_position_ids(checkpoint_name):
    if checkpoint_name == "embeddings.position_ids":
        return "embeddings.position.weight"
    return our_name(checkpoint_name)


def name_raises_for_pooler(checkpoint_name):
    table = {f"embeddings.{k}.{p}": f"embeddings.{v}.{p}" for k, v in EMBEDDINGS.items()
             for p in ("weight", "bias")}
    if checkpoint_name.startswith("encoder"):
        return our_name(checkpoint_name)
    return table[checkpoint_name]  # KeyError for the pooler


def name_returns_nothing_for_embeddings(checkpoint_name):
    if checkpoint_name.startswith("encoder"):
        return our_name(checkpoint_name)
    # forgot the embeddings: falls off the end


@pytest.mark.parametrize(
    "fn, message",
    [
        (name_ends_with, r"attention\.output\.dense.*Likely cause: it matches a module by the end of its name"),
        (with_layer_table(attention__output__LayerNorm="res2.norm", output__LayerNorm="res1.norm"),
         r"Likely cause: the two LayerNorms of a layer are swapped"),
        (with_layer_table(intermediate__dense="ff.fc2", output__dense="ff.fc1"),
         r"Likely cause: the feed-forward's two layers are swapped"),
        (with_layer_table(attention__self__query="self_attn.k_proj", attention__self__key="self_attn.q_proj"),
         r"Likely cause: query and key are swapped"),
        (with_layer_table(attention__self__value="self_attn.k_proj", attention__self__key="self_attn.v_proj"),
         r"Likely cause: key and value are swapped"),
        (name_no_param, r"Likely cause: it leaves out the parameter's last part"),
        (name_always_weight, r"key\.bias.*Likely cause: it always ends the name with `\.weight`"),
        (name_layer_zero, r"layer\.3.*Likely cause: it always uses layer 0"),
        (name_first_digit, r"layer\.11.*Likely cause: it reads only the first digit of the layer number"),
        (name_keeps_prefix, r"Likely cause: it keeps the checkpoint's prefix"),
        (name_unchanged, r"Likely cause: it returns the checkpoint's own name"),
        (name_position_ids, r"expected None.*Likely cause: embeddings\.position_ids is not the position embedding"),
        (name_raises_for_pooler, r"raised KeyError.*Hint: our model has no pooler"),
        (name_returns_nothing_for_embeddings, r"'embeddings\.word_embeddings\.weight'.*returned None, as if"),
    ],
)
def test_our_name_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_our_name(fn)


# ------------------------------------------------------------------ mean_pool: typical mistakes
def pool_plain_mean(hidden, mask):
    return hidden.mean(dim=1)


def pool_sum(hidden, mask):
    return (hidden * mask.unsqueeze(-1)).sum(dim=1)


def pool_by_T(hidden, mask):
    return (hidden * mask.unsqueeze(-1)).sum(dim=1) / hidden.shape[1]


def pool_by_batch_count(hidden, mask):
    return (hidden * mask.unsqueeze(-1)).sum(dim=1) / mask.sum()


def pool_inverted(hidden, mask):
    m = (1 - mask.long()).unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def pool_cls(hidden, mask):
    return hidden[:, 0]


def pool_normalised(hidden, mask):
    return F.normalize(mean_pool(hidden, mask), dim=-1)


def pool_max(hidden, mask):
    return hidden.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).max(dim=1).values


def pool_no_clamp(hidden, mask):
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1)


def pool_wrong_axis(hidden, mask):
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=2) / m.sum(dim=2)


@pytest.mark.parametrize(
    "fn, message",
    [
        (pool_plain_mean, r"\[\[1, 2\], \[3, 4\], \[100, 100\]\].*Likely cause: it averages the padding positions too"),
        (pool_sum, r"Likely cause: it sums the real tokens' vectors without dividing"),
        (pool_by_T, r"Likely cause: it divides by T, the padded length"),
        (pool_by_batch_count, r"Likely cause: it divides by the number of real tokens in the whole batch"),
        (pool_inverted, r"Likely cause: it averages the padding instead of the tokens"),
        (pool_cls, r"Likely cause: it returns the first token's vector \(\[CLS\] pooling\)"),
        (pool_normalised, r"Likely cause: it also scales the result to unit length"),
        (pool_max, r"Likely cause: it takes the largest value of each feature \(max pooling\)"),
        (pool_no_clamp, r"all padding.*NaN.*Hint: .*clamp"),
        (pool_wrong_axis, r"shape \(1, 3\); expected shape \(1, 2\)"),
    ],
)
def test_mean_pool_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_mean_pool(fn)


def test_a_mean_pool_that_breaks_on_boolean_masks_is_told_to_convert():
    def bool_breaks(hidden, mask):  # fine for 0/1 integers; torch refuses to subtract from booleans
        return (hidden * mask.unsqueeze(-1)).sum(dim=1) / (mask - 0).sum(dim=1, keepdim=True)

    with pytest.raises(CheckFailed, match=r"boolean mask.*Hint: the mask may hold booleans"):
        check_mean_pool(bool_breaks)


# ------------------------------------------------------------------ GQA: typical mistakes
def gqa(q, k, v, *, tile=False, head0=False, mask="causal", scale=None, dim=-1):
    H, T, d = q.shape
    n_rep = H // k.shape[0]
    if head0:
        k, v = k[:1].expand(H, -1, -1), v[:1].expand(H, -1, -1)
    elif tile:
        k, v = k.repeat(n_rep, 1, 1), v.repeat(n_rep, 1, 1)
    else:
        k, v = k.repeat_interleave(n_rep, 0), v.repeat_interleave(n_rep, 0)
    scores = q @ k.transpose(-2, -1) / (math.sqrt(d) if scale is None else scale)
    if mask == "causal":
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    elif mask == "flipped":
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).tril(-1), float("-inf"))
    elif mask == "strict":
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(0), float("-inf"))
    w = torch.softmax(scores, dim=dim)
    return w @ v, w


def gqa_mask_after_softmax(q, k, v):
    H, T, d = q.shape
    n_rep = H // k.shape[0]
    k, v = k.repeat_interleave(n_rep, 0), v.repeat_interleave(n_rep, 0)
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), dim=-1) * torch.tril(torch.ones(T, T))
    return w @ v, w


def gqa_out_only(q, k, v):
    return grouped_query_attention(q, k, v)[0]


def gqa_swapped_outputs(q, k, v):
    out, w = grouped_query_attention(q, k, v)
    return w, out


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda q, k, v: gqa(q, k, v, tile=True),
         r"4 query heads sharing 2.*Likely cause: it tiles the key/value heads"),
        (lambda q, k, v: gqa(q, k, v, head0=True), r"Likely cause: every query head uses key/value head 0"),
        (lambda q, k, v: gqa(q, k, v, mask=None), r"Likely cause: there is no causal mask"),
        (lambda q, k, v: gqa(q, k, v, mask="flipped"), r"Likely cause: the causal mask is flipped"),
        (lambda q, k, v: gqa(q, k, v, scale=1.0), r"Likely cause: the scores are not scaled"),
        (lambda q, k, v: gqa(q, k, v, scale=q.shape[-1]), r"Likely cause: the scores are divided by d"),
        (lambda q, k, v: gqa(q, k, v, dim=-2), r"does not sum to 1|Likely cause: the softmax runs over the queries"),
        (lambda q, k, v: gqa(q, k, v, mask="strict"), r"NaN"),
        (gqa_mask_after_softmax, r"Likely cause: it masks after the softmax"),
        (gqa_out_only, r"returned 1 value\(s\); expected a tuple of 2: `return out, weights`"),
        (gqa_swapped_outputs, r"`out` of shape \(4, 3, 3\); expected shape \(4, 3, 4\)"),
    ],
)
def test_grouped_query_attention_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_gqa(fn)


# ------------------------------------------------------------------ predict the KV cache
def test_the_kv_cache_of_smollm2_is_360_mib_and_1080_without_grouping():
    c = LlamaConfig()  # SmolLM2-135M's shape
    assert kv_cache_mib() == kv_cache_mib(c, c.context) == 360.0
    assert kv_cache_mib(n_kv_head=c.n_head) == 1080.0
    toy = LlamaConfig(n_layer=2, n_head=2, n_kv_head=1, head_dim=4)
    assert kv_cache_mib(toy, 10) == 2 * 2 * 1 * 4 * 10 * 4 / 2**20
    assert kv_cache_mib(c, bytes_per_number=2) == 180.0
    with pytest.raises(ValueError, match="tokens"):
        kv_cache_mib(c, 0)


@pytest.mark.parametrize("answer", [360, 360.0, 1080, 0.5, np.float64(12.0)])
def test_the_visible_check_of_the_prediction_records_any_number(answer, capsys):
    check_kv(lambda: answer)
    assert f"Your prediction, {answer!r}, is recorded" in capsys.readouterr().out


@pytest.mark.parametrize("answer", [360, 360.0, 2 * 30 * 3 * 64 * 8192 * 4 / 1e6, 350, 370])
def test_a_prediction_within_5_percent_passes_the_hidden_check(answer):
    check_kv(lambda: answer, hidden=True)  # 377.5: MB for MiB, close enough


@pytest.mark.parametrize("answer, sentence", [
    (1080, "1,080 MiB is the cache of multi-head attention"), (180, "that counts the keys only"),
    (720, "720 MiB is what grouped-query attention saves"), (12, "that is one layer's cache"),
    (90, "that counts numbers, not bytes"), (2 * 30 * 3 * 64 * 4 / 2**20, "that is the cache of a single token"),
])
def test_a_wrong_prediction_fails_the_hidden_check_naming_its_mistake(answer, sentence):
    with pytest.raises(CheckFailed, match=rf"returned {answer!r}, which is not within 5% of what happens\. "
                                          rf"Likely cause: {sentence}"):
        check_kv(lambda: answer, hidden=True)


def test_an_unlisted_wrong_prediction_fails_without_a_cause():
    with pytest.raises(CheckFailed, match=r"returned 500, which is not within 5% of what happens\.$"):
        check_kv(lambda: 500, hidden=True)


@pytest.mark.parametrize("fn, visible, hidden", [
    (stub, "is not written yet", "is not written yet"),
    (returns_none, "answer with a number, not None", r"returned None: did you forget to `return`"),
    (returns_text, "answer with a number, not", "returned '42'; expected a number"),
    (lambda: float("nan"), "answer with a finite number", "returned nan, which is not within 5%"),
    (lambda: True, "answer with a number", "returned True; expected a number"),
    (lambda: [360], "answer with a number", r"returned \[360\]; expected a number"),
    (None, "should be a function, but it is None", "should be a function, but it is None"),
    (360, "should be a function, but it is an int", "should be a function, but it is an int"),
])
def test_a_prediction_of_the_wrong_form_gets_a_sentence(fn, visible, hidden):
    assert_one_sentence(check_kv, fn, visible)
    assert_one_sentence(partial(check_kv, hidden=True), fn, hidden)


def test_reveal_gives_the_answer_and_why_and_never_raises(capsys):
    for answer, said in [(predict_kv_cache_mib, "(right)"), (lambda: 1080, "not what happens"),
                         (stub, "not answered yet"), (lambda: "lots", "not an answer of the right form")]:
        ch07.reveal("predict_kv_cache_mib", answer)
        out = capsys.readouterr().out
        assert said in out and "360.0" in out and "grouped-query attention keeps a third of the cache" in out


# ------------------------------------------------------------------ garbage never crashes
@pytest.mark.parametrize("fn, message", garbage(r"not an array of numbers|returned 1 value\(s\); expected a tuple of 2", (lambda *args: ("42", "42"), "not an array of numbers")))
@pytest.mark.parametrize("check", [check_mean_pool, check_gqa])
def test_garbage_gets_a_sentence_not_a_crash(check, fn, message):
    assert_one_sentence(check, fn, message)


@pytest.mark.parametrize(
    "fn, message",
    [
        (stub, "is not written yet"),
        (returns_none, r"returned None, as if our model did not use this tensor"),
        (returns_text, r"returned '42'; expected 'layers\.0\.self_attn\.q_proj\.weight'"),
        (lambda name: 42, r"returned an int; expected a string"),
        (lambda name: our_name, r"returned a function: did you forget to call it\?"),
        (lambda name: name.split("."), r"returned a list; expected a string"),
        (None, "should be a function, but it is None"),
        ("layers.0", "should be a function, but it is a str"),
    ],
)
def test_our_name_garbage_gets_a_sentence_not_a_crash(fn, message):
    with pytest.raises(CheckFailed, match=message) as info:
        check_our_name(fn)
    assert "\n" not in str(info.value)


def test_a_function_that_never_returns_is_stopped():
    def forever(name):
        while True:
            pass

    with pytest.raises(CheckFailed, match="ran for more than"):
        run_check(replace(ch07.EXERCISES["our_name"], time_limit=0.2), forever)
