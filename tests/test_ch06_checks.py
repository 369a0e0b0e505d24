"""Chapter 6's checks: the library passes them, visible and hidden; the notebook's own solutions pass; typical
mistakes get the sentence meant for them; a stub says it is not written yet; predictions are graded only when hidden;
generation with the learner's KV-cache step must give the tokens of generation without a cache; and garbage never
crashes a check. (That the library's versions are the real thing, CausalSelfAttention the blocks' attention and
kv_cache_step its cached form, is tested in test_models.py.)"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import assert_one_sentence, garbage  # what learners typically get wrong
from attnedu.checks import ch06_gpt as ch06
from attnedu.checks import CheckFailed, ExerciseSet
from attnedu.functional import causal_mask
from attnedu.models import GPT, CausalSelfAttention, GPTConfig

check_attention, check_step = partial(ch06.check, "CausalSelfAttention"), partial(ch06.check, "kv_cache_step")
check_top_p = partial(ch06.check, "top_p_filter")


# ------------------------------------------------------------------ learner modules, as the notebook's cell has them
class Given(nn.Module):
    """The class as the notebook gives it: __init__ written, forward the learner's."""

    def __init__(self, d_model, n_head, bias=True):
        super().__init__()
        self.n_head = n_head
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)


def learner(forward):
    """A CausalSelfAttention whose forward is ``forward``."""
    return type("CausalSelfAttention", (Given,), {"forward": forward})


def attend(self, x, *, mask="tril", fill=-math.inf, scale="d_head", dim=-1, split="transpose", merge="transpose",
           project=True, swap=False, heads=True):
    """The notebook's solution, with the switches a learner gets wrong."""
    B, T, C = x.shape
    H = self.n_head if heads else 1
    d = C // H
    def split_heads(z):
        return z.view(B, T, H, d).transpose(1, 2) if split == "transpose" else z.view(B, H, T, d)
    q, k, v = split_heads(self.q_proj(x)), split_heads(self.k_proj(x)), split_heads(self.v_proj(x))
    scores = k @ q.transpose(-2, -1) if swap else q @ k.transpose(-2, -1)
    scores = scores / {"d_head": math.sqrt(d), "d_model": math.sqrt(C), "none": 1.0}[scale]
    ones = torch.ones(T, T, dtype=torch.bool)
    allowed = {"tril": ones.tril(), "triu": ones.triu(), "strict": ones.tril(-1), None: ones}[mask]
    weights = torch.softmax(scores.masked_fill(~allowed, fill), dim=dim)
    out = weights @ v
    out = out.transpose(1, 2).reshape(B, T, C) if merge == "transpose" else out.reshape(B, T, C)
    return self.out_proj(out) if project else out


def mistake(**settings):
    return learner(lambda self, x: attend(self, x, **settings))


def solution_forward(self, x):  # the notebook's solution cell, line for line
    B, T, C = x.shape
    H, d_head = self.n_head, C // self.n_head
    q = self.q_proj(x).view(B, T, H, d_head).transpose(1, 2)  # (B, H, T, d_head)
    k = self.k_proj(x).view(B, T, H, d_head).transpose(1, 2)
    v = self.v_proj(x).view(B, T, H, d_head).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)  # (B, H, T, T)
    allowed = torch.tril(torch.ones(T, T, dtype=torch.bool))  # True where a query may attend
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (B, H, T, T)
    out = (weights @ v).transpose(1, 2).reshape(B, T, C)  # (B, T, C)
    return self.out_proj(out)


def head_by_head(self, x):  # a loop over the heads and over the queries: slower, and right
    B, T, C = x.shape
    d = C // self.n_head
    q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
    heads = []
    for h in range(self.n_head):
        qh, kh, vh = (z[..., h * d:(h + 1) * d] for z in (q, k, v))
        rows = [torch.softmax(qh[:, t:t + 1] @ kh[:, :t + 1].transpose(-2, -1) / d ** 0.5, dim=-1) @ vh[:, :t + 1]
                for t in range(T)]
        heads.append(torch.cat(rows, dim=1))
    return self.out_proj(torch.cat(heads, dim=-1))


def fast_path(self, x):  # PyTorch's fused kernel: right too
    B, T, C = x.shape
    q, k, v = (p(x).view(B, T, self.n_head, -1).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
    return self.out_proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C))


def with_numpy_mask(self, x):  # the library's causal_mask, from NumPy: fine
    B, T, C = x.shape
    q, k, v = (p(x).view(B, T, self.n_head, -1).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
    scores = (q @ k.transpose(-2, -1) / math.sqrt(C // self.n_head)).masked_fill(
        ~torch.from_numpy(causal_mask(T)), float("-inf"))
    return self.out_proj((torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, T, C))


def through_numpy(self, x):  # right numbers, no gradient
    return torch.from_numpy(solution_forward(self, x).detach().numpy())


def stub_forward(self, x):
    raise NotImplementedError()


class StubInit(Given):  # the student version: both bodies are stubs
    def __init__(self, d_model, n_head, bias=True):
        super().__init__(d_model, n_head, bias)
        raise NotImplementedError()


class Renamed(nn.Module):  # the learner renamed the layers
    def __init__(self, d_model, n_head, bias=True):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.c_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x):
        return self.c_proj(x)


# ------------------------------------------------------------------ learner steps, as the notebook's cell has them
def heads_of(attn, x_new):  # the lines the notebook gives: the new position's q, k, v, (B, H, 1, d_head) each
    B, _, C = x_new.shape
    H = attn.n_head
    return tuple(proj(x_new).view(B, 1, H, C // H).transpose(1, 2) for proj in (attn.q_proj, attn.k_proj, attn.v_proj))


def step_solution(attn, x_new, cache):  # the notebook's solution cell
    B, _, C = x_new.shape
    q, k, v = heads_of(attn, x_new)
    if cache is not None:
        k = torch.cat([cache[0], k], dim=2)  # (B, H, t + 1, d_head): the new key at the end
        v = torch.cat([cache[1], v], dim=2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1])  # (B, H, 1, t + 1)
    weights = torch.softmax(scores, dim=-1)  # no mask: the newest position may see every key
    out = (weights @ v).transpose(1, 2).reshape(B, 1, C)  # (B, 1, C)
    return attn.out_proj(out), (k, v)


def step_fused(attn, x_new, cache):  # PyTorch's kernel, and a cache as a list: right
    B, _, C = x_new.shape
    q, k, v = heads_of(attn, x_new)
    if cache:
        k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
    return attn.out_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, 1, C)), [k, v]


def step_with(*, order="after", keep_old=False, own_only=False, scale="d_head", dim=-1, project=True, tril=False):
    def kv_cache_step(attn, x_new, cache):
        B, _, C = x_new.shape
        q, k, v = heads_of(attn, x_new)
        new = (k, v)
        if cache is not None:
            new = tuple(torch.cat([c, n] if order == "after" else [n, c], dim=2) for c, n in zip(cache, (k, v)))
        keys, values = (k, v) if own_only else new
        d = keys.shape[-1]
        scores = q @ keys.transpose(-2, -1) / {"d_head": math.sqrt(d), "d_model": math.sqrt(C), "none": 1.0}[scale]
        if tril:  # the causal mask of a (1, t + 1) score matrix
            scores = scores.masked_fill(~torch.ones(1, keys.shape[2], dtype=torch.bool).tril(), float("-inf"))
        out = (torch.softmax(scores, dim=dim) @ values).transpose(1, 2).reshape(B, 1, C)
        return (attn.out_proj(out) if project else out), (cache if keep_old else new)
    return kv_cache_step


def step_appends_on_the_wrong_axis(attn, x_new, cache):
    B, _, C = x_new.shape
    q, k, v = heads_of(attn, x_new)
    if cache is not None:
        k, v = torch.cat([cache[0], k], dim=-1), torch.cat([cache[1], v], dim=-1)  # the features, not the positions
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(k.shape[-1]), dim=-1)
    return attn.out_proj((weights @ v).transpose(1, 2).reshape(B, 1, C)), (k, v)


def step_returns_flat(attn, x_new, cache):
    out, (k, v) = step_solution(attn, x_new, cache)
    return out, k, v


def step_returns_output_only(attn, x_new, cache):
    return step_solution(attn, x_new, cache)[0]


def nucleus(logits, p, keep_rule):
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    keep_sorted = keep_rule(sorted_probs, p)
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_inclusive(logits, p):
    return nucleus(logits, p, lambda sp, p: sp.cumsum(-1) <= p)


def top_p_sorted(logits, p):
    sorted_logits, _ = logits.sort(dim=-1, descending=True)
    sp = torch.softmax(sorted_logits, dim=-1)
    return sorted_logits.masked_fill(sp.cumsum(-1) - sp >= p, float("-inf"))


def top_p_zero(logits, p):
    probs = torch.softmax(logits, dim=-1)
    sp, order = probs.sort(dim=-1, descending=True)
    keep = torch.zeros_like(sp, dtype=torch.bool).scatter(-1, order, sp.cumsum(-1) - sp < p)
    return logits.masked_fill(~keep, 0.0)


def top_p_ascending(logits, p):
    probs = torch.softmax(logits, dim=-1)
    sp, order = probs.sort(dim=-1)
    keep = torch.zeros_like(sp, dtype=torch.bool).scatter(-1, order, sp.cumsum(-1) - sp < p)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_probabilities(logits, p):
    return torch.softmax(nucleus(logits, p, lambda sp, p: sp.cumsum(-1) - sp < p), dim=-1)


def top_p_logit_cumsum(logits, p):
    sl, order = logits.sort(dim=-1, descending=True)
    keep = torch.zeros_like(sl, dtype=torch.bool).scatter(-1, order, sl.cumsum(-1) - sl < p)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_one_too_many(logits, p):
    # keeps the token after the nucleus as well: compares the mass before the *previous* token with p
    return nucleus(logits, p, lambda sp, p: torch.cat([torch.zeros_like(sp[..., :1]), (sp.cumsum(-1) - sp)[..., :-1]],
                                                      -1) < p)


def top_p_along_axis_0(logits, p):
    # right for one row (V,), where axis 0 is the vocabulary; wrong for a batch (B, V)
    probs = torch.softmax(logits, dim=0)
    sp, order = probs.sort(dim=0, descending=True)
    keep = torch.zeros_like(sp, dtype=torch.bool).scatter(0, order, sp.cumsum(0) - sp < p)
    return logits.masked_fill(~keep, float("-inf"))


def top_p_numpy(logits, p):
    z = np.asarray(logits, dtype=float)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    probs = e / e.sum(axis=-1, keepdims=True)
    order = np.argsort(-probs, axis=-1, kind="stable")
    sp = np.take_along_axis(probs, order, axis=-1)
    keep_sorted = np.cumsum(sp, axis=-1) - sp < p
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=-1)
    return np.where(keep, z, -np.inf)



# ------------------------------------------------------------------ the library and the notebook's solutions pass
def test_the_library_passes_every_chapter_6_check_visible_and_hidden(capsys):
    for name, ex in ch06.EXERCISES.items():
        ch06.check(name, ex.reference)
        ch06.check(name, ex.reference, hidden=True)
    out = capsys.readouterr().out
    for name, n in [("CausalSelfAttention", 5), ("top_p_filter", 5), ("kv_cache_step", 5)]:
        assert f"`{name}` passes all {n} checks" in out
    assert out.count("is recorded") == 3  # the three predictions: their form only


def test_the_notebooks_own_solutions_pass(capsys):
    def top_p_filter(logits, p):
        probs = torch.softmax(logits, dim=-1)
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop_sorted = before >= p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return logits.masked_fill(drop, float("-inf"))

    for check, fn in [(check_attention, learner(solution_forward)), (check_attention, learner(head_by_head)),
                      (check_attention, learner(fast_path)), (check_attention, learner(with_numpy_mask)),
                      (check_step, step_solution), (check_step, step_fused),
                      (check_top_p, top_p_filter), (check_top_p, top_p_numpy)]:  # NumPy on the tensors is fine too
        check(fn)
        check(fn, hidden=True)
    assert capsys.readouterr().out.count("passes all") == 8


def test_the_records_are_the_issues_grade_ids_and_kinds():
    kinds = {ex.grade_id: ex.kind for ex in ch06.EXERCISES.values()}
    assert kinds == {"causal-self-attention": "code", "kv-cache-step": "code", "top-p": "code",
                     "predict-initial-loss": "predict", "predict-parameter-count": "predict",
                     "predict-cache-work": "predict"}


# ------------------------------------------------------------------ CausalSelfAttention
@pytest.mark.parametrize(
    "cls, message",
    [
        (mistake(mask=None), r"x = \[\[1, 0\], \[0, 1\]\].*Likely cause: there is no causal mask"),
        (mistake(mask="triu"), r"Likely cause: the mask is the wrong way round"),
        (mistake(mask="strict"), r"NaN.*Likely cause: a position may attend to itself"),
        (mistake(fill=0.0), r"Likely cause: the blocked scores are set to 0"),
        (mistake(scale="none"), r"Likely cause: the scores are not scaled"),
        (mistake(scale="d_model"), r"Likely cause: divide the scores by sqrt\(d_head\).*not sqrt\(d_model\)"),
        (mistake(dim=-2), r"Likely cause: the softmax must normalise each query's scores over the keys"),
        (mistake(swap=True), r"Likely cause: scores\[\.\.\., i, j\] is query i dotted with key j"),
        (mistake(split="view"), r"n_head = 2.*Likely cause: split the heads with \.view\(B, T, n_head, d_head\)"),
        (mistake(merge="reshape"), r"Likely cause: put the heads side by side again"),
        (mistake(project=False), r"Likely cause: the output projection is missing"),
        (mistake(heads=False), r"n_head = 2.*Likely cause: it computes one head of all d_model features"),
        (learner(through_numpy), r"right numbers, but no gradient reaches q_proj, k_proj, v_proj, out_proj"),
        (learner(stub_forward), r"`CausalSelfAttention` is not written yet"),
        (StubInit, r"`CausalSelfAttention` is not written yet"),
        (Renamed, r"raised ValueError.*keep the layers as __init__ names them"),
        (None, r"should be a class derived from torch\.nn\.Module, but it is None"),
        (solution_forward, r"should be a class derived from torch\.nn\.Module, but it is a function"),
    ],
)
def test_causal_self_attention_mistakes_get_their_sentence(cls, message):
    with pytest.raises(CheckFailed, match=message):
        check_attention(cls)


def test_the_attention_check_gives_the_learners_module_the_cases_weights():
    ex = ch06.EXERCISES["CausalSelfAttention"]
    x, n_head, weights = ex.all_cases()[1].args
    library = CausalSelfAttention(x.shape[-1], n_head, bias=False).double()
    library.load_state_dict(weights)
    with torch.no_grad():
        torch.testing.assert_close(ex.run(learner(solution_forward), x, n_head, weights), library(x))
        own = learner(solution_forward)(x.shape[-1], n_head, bias=False).double()  # its own random weights
        assert not torch.allclose(own(x), library(x))


# ------------------------------------------------------------------ kv_cache_step
@pytest.mark.parametrize(
    "fn, message",
    [
        (step_with(order="before"), r"a cache holding k = v = \[1, 0\].*`k`.*Likely cause: the new key and value go "
                                    r"at the end of the cache"),
        (step_with(keep_old=True), r"`k` of shape \(1, 1, 1, 2\); expected shape \(1, 1, 2, 2\).*Likely cause: it "
                                   r"returns the cache it was given"),
        (step_with(own_only=True), r"Likely cause: the new query attends to its own key only"),
        (step_with(scale="none"), r"Likely cause: the scores are not scaled"),
        (step_with(scale="d_model"), r"n_head = 2.*Likely cause: divide the scores by sqrt\(d_head\)"),
        (step_with(dim=-2), r"Likely cause: the softmax runs over the keys"),
        (step_with(project=False), r"Likely cause: the output projection is missing"),
        (step_with(tril=True), r"Likely cause: the newest token needs no mask"),
        (step_appends_on_the_wrong_axis, r"raised RuntimeError.*a cache holding k = v = \[1, 0\]"),
        (step_returns_flat, r"returned a tuple of 3 values; expected the output and the new cache: `return out, "
                            r"\(k, v\)`"),
        (step_returns_output_only, r"returned an array of shape \(1, 1, 2\); expected the output and the new cache"),
    ],
)
def test_kv_cache_step_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_step(fn)


def generation_cases(hidden: bool):
    return [c for c in ch06.EXERCISES["kv_cache_step"].all_cases(hidden) if c.compare == "value"]


def test_generation_with_the_learners_step_must_be_token_identical_to_generation_without_a_cache():
    # the record's visible and hidden cases hold the test: greedy (and sampled) generation with the step and its
    # cache must give the tokens that recomputing the whole prefix gives
    assert len(generation_cases(False)) == 1 and len(generation_cases(True)) == 3
    for case in generation_cases(False) + generation_cases(True):
        model_seed, prompt, n, options = case.args
        assert len(torch.tensor(case.expected).view(-1)) == n * (len(prompt) if isinstance(prompt[0], list) else 1)
        assert case.call(step_solution, *case.args) == case.expected
    # alone, the generation case catches a step that attends to the new token only
    ex = ch06.EXERCISES["kv_cache_step"]
    only = ExerciseSet(replace(ex, cases=lambda: generation_cases(False)))
    only.check("kv_cache_step", step_solution)
    with pytest.raises(CheckFailed, match=r"greedy generation of 16 tokens by a small GPT.*returned \[.*\]; expected"):
        only.check("kv_cache_step", step_with(own_only=True))


def test_greedy_generation_with_the_notebooks_step_equals_recomputing_the_prefix():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=20, context=32, n_layer=2, n_head=4, d_model=32, bias=False)
    model = GPT(config, attention=learner(solution_forward), kv_step=step_solution).eval()
    with torch.no_grad():
        for weight in model.parameters():
            weight.mul_(8.0)  # larger weights: the tokens depend on the whole context
    prompt = [3, 1, 4]
    cached, recomputed = model.generate(prompt, 25, use_cache=True), model.generate(prompt, 25, use_cache=False)
    assert len(set(recomputed.tolist())) > 3  # not one token repeated
    assert torch.equal(cached, recomputed)


# ------------------------------------------------------------------ predictions
@pytest.mark.parametrize(
    "name, right, wrong, message",
    [
        ("predict_initial_loss", [4.56, math.log(96), 4.4, 4.7], [(0.0, "a loss of 0 means certain and right"),
                                                                 (96.0, "96 is the perplexity"), (2.3, "within 5%")],
         None),
        ("predict_parameter_count", [808_064, 820_352, 800_000], [(283_776, "the feed-forward networks are missing"),
                                                                 (1_397_888, "the heads share the d_model features"),
                                                                 (120_000_000, "within 5%")], None),
        ("predict_cache_work", ["b"], [("a", "without a cache each step feeds the whole window"),
                                       ("c", "with a cache each step feeds only the newest position")], None),
    ],
)
def test_a_prediction_is_recorded_visibly_and_graded_hidden(name, right, wrong, message, capsys):
    for answer in right + [w for w, _ in wrong]:
        ch06.check(name, lambda answer=answer: answer)  # the visible check: the form only
        assert "is recorded" in capsys.readouterr().out
    for answer in right:
        ch06.check(name, lambda answer=answer: answer, hidden=True)
    for answer, sentence in wrong:
        with pytest.raises(CheckFailed, match=sentence):
            ch06.check(name, lambda answer=answer: answer, hidden=True)


@pytest.mark.parametrize("name, bad, message", [("predict_initial_loss", "4.56", "a number"),
                                                ("predict_parameter_count", float("nan"), "finite"),
                                                ("predict_cache_work", "B", "exactly one of"),
                                                ("predict_cache_work", 2, "one of 'a', 'b', 'c'")])
def test_a_prediction_of_the_wrong_form_is_told_so(name, bad, message):
    with pytest.raises(CheckFailed, match=message):
        ch06.check(name, lambda: bad)


def test_the_reveals_say_the_answer_and_why(capsys):
    def stub():
        raise NotImplementedError()
    for name, answer, said in [("predict_initial_loss", lambda: 4.5, "4.56 (right)"),
                               ("predict_parameter_count", lambda: 1_000_000, "808064 (not what happens)"),
                               ("predict_cache_work", stub, "not answered yet")]:
        ch06.reveal(name, answer)
        out = capsys.readouterr().out
        assert said in out and ch06.EXERCISES[name].explain in out


def test_the_predictions_references_run_the_experiment_they_predict():
    assert ch06.EXERCISES["predict_cache_work"].reference() == "b"  # counted with a hook on the blocks
    config = GPTConfig(vocab_size=96, context=64, n_layer=4, n_head=4, d_model=128, bias=False)
    assert ch06.EXERCISES["predict_parameter_count"].reference() == sum(p.numel() for p in GPT(config).parameters())
    torch.manual_seed(0)
    ids = torch.randint(0, 96, (8, 65))
    with torch.no_grad():
        loss = GPT(config)(ids[:, :-1], ids[:, 1:])[1].item()  # a fresh model on random text
    assert math.isclose(loss, ch06.EXERCISES["predict_initial_loss"].reference(), rel_tol=0.05)


# ------------------------------------------------------------------ top-p
@pytest.mark.parametrize(
    "fn, message",
    [
        (top_p_inclusive, r"p = 0\.7.*Likely cause: it drops the token whose probability carries the total"),
        (top_p_sorted, r"Likely cause: it returns the logits sorted by size"),
        (top_p_zero, r"Likely cause: the dropped logits are set to 0"),
        (top_p_ascending, r"Likely cause: it keeps every token.*descending=True"),
        (top_p_probabilities, r"Likely cause: it returns probabilities"),
        (top_p_logit_cumsum, r"Likely cause: it keeps every token.*softmax first, not the logits"),
        (top_p_one_too_many, r"Likely cause: it keeps one token too many"),
        (top_p_along_axis_0, r"shape \(3, 10\).*Hint: filter each row on its own"),
    ],
)
def test_top_p_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        check_top_p(fn)



# ------------------------------------------------------------------ garbage never crashes
@pytest.mark.parametrize("check", [check_step, check_top_p])
@pytest.mark.parametrize("fn, message", garbage("not an array of numbers|expected the output and the new cache"))
def test_garbage_gets_a_sentence_not_a_crash(check, fn, message):
    assert_one_sentence(check, fn, message)


class ReturnsText(Given):
    def forward(self, x):
        return "42"


class WrongSignature(Given):
    def forward(self, x, mask):
        return x


@pytest.mark.parametrize("cls, message", [(ReturnsText, "not an array of numbers"),
                                          (WrongSignature, "raised TypeError"), (int, "raised"),
                                          ("CausalSelfAttention", "should be a class"), (3, "should be a class")])
def test_the_attention_check_never_crashes_on_garbage(cls, message):
    assert_one_sentence(check_attention, cls, message)
