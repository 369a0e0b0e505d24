"""Chapter 6's exercises, *A GPT from scratch*, as records (see :mod:`attnedu.checks`). None of the checks trains a
model: they give the same verdict however long, or short, the chapter's training ran."""

import math
from dataclasses import replace

import torch
import torch.nn.functional as F

from ..functional import causal_mask
from ..models import GPT, CausalSelfAttention, GPTConfig, kv_cache_step, parameter_count, top_p_filter
from . import COMPARISONS, Case, CheckFailed, Exercise, ExerciseSet, describe, register

_F64 = torch.float64

def _attention(seed, d_model, n_head, bias=False, dtype=_F64):  # the library's module, seeded, in dtype
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return CausalSelfAttention(d_model, n_head, bias=bias).to(dtype)
def _weights(module):  # its weights, as the case's argument (the learner's module gets a copy of them)
    return {name: t.detach().clone() for name, t in module.state_dict().items()}
def _identity(d_model):  # one head, every projection the identity: the numbers can be checked by hand
    module = _attention(0, d_model, 1)
    with torch.no_grad():
        for proj in (module.q_proj, module.k_proj, module.v_proj, module.out_proj):
            proj.weight.copy_(torch.eye(d_model, dtype=_F64))
    return module
def _load(module, state):  # learner-side: the case's weights into the learner's module
    try:
        module.load_state_dict(state)
    except RuntimeError:
        mine = ", ".join(sorted(module.state_dict())) or "none"
        raise ValueError(f"the module's parameters ({mine}) are not the library's ({', '.join(sorted(state))}): keep "
                         "the layers as __init__ names them, q_proj, k_proj, v_proj and out_proj") from None
    return module
def _build(cls, state, n_head, dtype):  # learner-side: cls(d_model, n_head, bias) with the case's weights
    d_model = state["q_proj.weight"].shape[1]
    return _load(cls(d_model, n_head, bias="q_proj.bias" in state).to(dtype), state)

# ------------------------------------------------------------------ causal self-attention
def _run_attention(cls, x, n_head, state):  # learner-side: the module, with the case's weights, on x
    return _build(cls, state, n_head, x.dtype)(x)
def _no_gradient(cls, x, n_head, state):  # learner-side: the layers to which output.sum() sends no gradient
    module = _build(cls, state, n_head, x.dtype)
    output = module(x)
    if getattr(output, "requires_grad", False):  # an output cut off from the graph cannot backpropagate
        output.sum().backward()
    return [name for name in ("q_proj", "k_proj", "v_proj", "out_proj") if getattr(module, name).weight.grad is None]
def _gradients_reach(got, case, lead, ex):
    if got:
        raise CheckFailed(f"`{ex.name}` gives the right numbers, but no gradient reaches {', '.join(got)}: compute "
                          "with torch operations inside forward (no NumPy, no .detach(), no .item()), or the GPT "
                          "cannot learn.")
register("gpt_gradients_reach", _gradients_reach, lambda a, b, ex=None: a == b)
def _csa_with(x, n_head, state, *, scale="d_head", mask="causal", fill=-math.inf, axis=-1, split=True, merge=True,
              project=True, swap=False, heads=True):  # the usual mistakes as switches
    B, T, C = x.shape
    H = n_head if heads else 1
    d = C // H
    def proj(name, z):
        return F.linear(z, state[f"{name}.weight"], state.get(f"{name}.bias"))
    def split_heads(z):  # (B, T, C) -> (B, H, T, d)
        return z.reshape(B, T, H, d).transpose(1, 2) if split else z.reshape(B, H, T, d)
    q, k, v = (split_heads(proj(name, x)) for name in ("q_proj", "k_proj", "v_proj"))
    scale = {"d_head": math.sqrt(d), "d_model": math.sqrt(C), "none": 1}[scale]
    scores = (k @ q.transpose(-2, -1) if swap else q @ k.transpose(-2, -1)) / scale  # (B, H, T, T)
    allowed = {"causal": torch.from_numpy(causal_mask(T)), "upper": torch.from_numpy(causal_mask(T)).T,
               "strict": torch.from_numpy(causal_mask(T)).tril(-1), None: torch.ones(T, T, dtype=torch.bool)}[mask]
    weights = torch.softmax(scores.masked_fill(~allowed, fill), dim=axis)  # (B, H, T, T)
    out = weights @ v  # (B, H, T, d)
    out = out.transpose(1, 2).reshape(B, T, C) if merge else out.reshape(B, T, C)
    return proj("out_proj", out) if project else out
def _csa_case(seed, B, T, C, H, bias=False, scale=1.0, dtype=_F64, **kw):
    g = torch.Generator().manual_seed(seed)
    x = scale * torch.randn(B, T, C, generator=g, dtype=_F64)
    if dtype == torch.float32:
        kw = {"rtol": 1e-4, "atol": 1e-6, **kw}
    return Case((x.to(dtype), H, {k: v.to(dtype) for k, v in _weights(_attention(seed, C, H, bias)).items()}),
                about=f"x of shape {(B, T, C)}, n_head = {H}{', with biases' if bias else ''}"
                      f"{', float32' if dtype == torch.float32 else ''}", **kw)
def _csa_cases():
    hand = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], dtype=_F64)  # (1, 2, 2)
    return [
        Case((hand, 1, _weights(_identity(2))), about="x = [[1, 0], [0, 1]] (B = 1, T = 2, d_model = 2), one head, "
             "every projection the identity", hint="by hand, q = k = v = x. The first position sees only itself, so "
             "its output is its own value, [1, 0]; the second sees both, with weights softmax([0, 1] / sqrt(2)) = "
             "[0.330, 0.670], so its output is [0.330, 0.670]."),
        _csa_case(62, 2, 5, 8, 2, hint="two heads of d_head = 4 features: split with .view(B, T, H, d_head)"
                  ".transpose(1, 2), and divide the scores by sqrt(d_head)."),
        _csa_case(63, 1, 7, 12, 3, bias=True, hint="with biases: call the layers, self.q_proj(x), rather than "
                  "multiplying by their weights."),
        _csa_case(64, 2, 6, 8, 4, scale=30.0, hint="large scores need a stable softmax: torch.softmax, after setting "
                  "the blocked scores to float('-inf')."),
        _csa_case(65, 2, 4, 8, 2, dtype=torch.float32, call=_no_gradient, expected=[], compare="gpt_gradients_reach")]
def _csa_hidden():
    return [_csa_case(*a, **k) for a, k in [
        ((601, 1, 1, 4, 2), {}), ((602, 3, 9, 12, 4), {}), ((603, 2, 16, 32, 8), {"bias": True}),
        ((604, 1, 64, 16, 4), {}), ((605, 2, 10, 8, 2), {"scale": 20.0}), ((607, 1, 5, 6, 1), {}),
        ((606, 2, 6, 12, 3), {"dtype": torch.float32}),
        ((608, 2, 5, 8, 4), {"bias": True, "dtype": torch.float32, "call": _no_gradient, "expected": [],
                             "compare": "gpt_gradients_reach"})]]
_NOT_SCALED = "divide the scores by sqrt(d_head) = sqrt(d_model / n_head), the size of one head's keys"
_CSA = Exercise("CausalSelfAttention", ["x", "n_head", "weights"], CausalSelfAttention, _csa_cases, _csa_hidden,
                run=_run_attention, grade_id="causal-self-attention", wrong=_csa_with, mistakes=[
    ({"mask": None}, "there is no causal mask: position t sees the tokens after it. Before the softmax, set the "
     "scores of keys j > i to float('-inf')."),
    ({"mask": "upper"}, "the mask is the wrong way round: query i may attend to keys j <= i (the lower triangle, "
     "torch.tril), not to the ones after it."),
    ({"mask": "strict"}, "a position may attend to itself: the mask allows j <= i, the diagonal included (j < i "
     "leaves the first position nothing to attend to, hence NaN)."),
    ({"fill": 0.0}, "the blocked scores are set to 0, and softmax still gives them weight: set them to "
     "float('-inf'), whose weight is exactly 0."),
    ({"scale": "none"}, f"the scores are not scaled: {_NOT_SCALED}."),
    ({"scale": "d_model"}, f"{_NOT_SCALED}, not sqrt(d_model)."),
    ({"axis": -2}, "the softmax must normalise each query's scores over the keys: the last axis, dim=-1."),
    ({"swap": True}, "scores[..., i, j] is query i dotted with key j: q @ k.transpose(-2, -1), not k @ q.transpose("
     "-2, -1)."),
    ({"split": False}, "split the heads with .view(B, T, n_head, d_head).transpose(1, 2): a view straight to "
     "(B, n_head, T, d_head) mixes the features of different tokens in one head."),
    ({"merge": False}, "put the heads side by side again with .transpose(1, 2).reshape(B, T, C): reshaping "
     "(B, n_head, T, d_head) straight to (B, T, C) mixes tokens and heads."),
    ({"project": False}, "the output projection is missing: return self.out_proj(...) of the heads side by side."),
    ({"heads": False}, "it computes one head of all d_model features: split them into n_head heads of d_head = "
     "d_model / n_head features, each with its own attention weights.")])

# ------------------------------------------------------------------ one decoding step with a KV cache
def _kv_parts(result):  # (out, (k, v)) -> (out, k, v), or None if it is not of that form
    if isinstance(result, (tuple, list)) and len(result) == 2 and isinstance(result[1], (tuple, list)) \
            and len(result[1]) == 2:
        return result[0], result[1][0], result[1][1]
    return None
def _compare_kv(got, case, lead, ex):
    parts = _kv_parts(got)
    if parts is None:
        what = describe(got) if not isinstance(got, (tuple, list)) else (
            f"a {type(got).__name__} of {len(got)} values" if len(got) != 2 else
            f"a pair whose second part is {describe(got[1])}, not (k, v)")
        raise CheckFailed(f"{lead} returned {what}; expected the output and the new cache: `return out, (k, v)`.",
                          about_values=False)
    COMPARISONS["array"].compare(parts, replace(case, expected=_kv_parts(case.expected)), lead, ex)
def _same_kv(got, wrong, ex=None):
    mine, theirs = _kv_parts(got), _kv_parts(wrong)
    return mine is not None and theirs is not None and COMPARISONS["array"].same(mine, theirs, ex)
register("kv_step", _compare_kv, _same_kv)
def _compare_tensor(got, case, lead, ex):  # a case whose result is one tensor (the outputs of all the steps)
    COMPARISONS["array"].compare(got, case, lead, replace(ex, outputs=None))
register("kv_steps", _compare_tensor, lambda a, b, ex=None: COMPARISONS["array"].same(a, b, ex))
def _kv_with(attn, x_new, cache, *, order="after", keep_old=False, own_only=False, scale="d_head", axis=-1,
             project=True, mask_first=False, heads=True):  # the usual mistakes as switches
    B, _, C = x_new.shape
    H = attn.n_head
    q, k, v = (p(x_new).view(B, 1, H, C // H).transpose(1, 2) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    new = (k, v) if cache is None else tuple(torch.cat([c, n] if order == "after" else [n, c], dim=2)
                                             for c, n in zip(cache, (k, v)))
    keys, values = (k, v) if own_only else new
    if not heads:
        q, keys, values = (t.transpose(1, 2).reshape(B, -1, C) for t in (q, keys, values))  # (B, t, C)
    scores = q @ keys.transpose(-2, -1) / {"d_head": math.sqrt(C // H), "d_model": math.sqrt(C), "none": 1}[scale]
    if mask_first:  # a lower-triangular mask of shape (1, t + 1): only the first key stays
        scores = scores.masked_fill(~torch.ones_like(scores[0, 0], dtype=torch.bool).tril(), -math.inf)
    out = torch.softmax(scores, dim=axis) @ values
    out = (out.transpose(1, 2) if heads else out).reshape(B, 1, C)
    return (attn.out_proj(out) if project else out), (cache if keep_old else new)
def _kv_case(seed, B, t, C, H, bias=False, **kw):
    g = torch.Generator().manual_seed(seed)
    attn, x = _attention(seed, C, H, bias), torch.randn(B, 1, C, generator=g, dtype=_F64)
    cache = None if t == 0 else tuple(torch.randn(B, H, t, C // H, generator=g, dtype=_F64) for _ in "kv")
    return Case((attn, x, cache), about=f"x_new of shape {(B, 1, C)}, n_head = {H}, " + (
        "no cache yet (None)" if t == 0 else f"a cache of {t} position(s), (k, v) of shape {(B, H, t, C // H)}"), **kw)
def _stepwise(fn, attn, x):  # learner-side: x fed one position at a time through fn, from an empty cache
    cache, outs = None, []
    for t in range(x.shape[1]):
        out, cache = fn(attn, x[:, t:t + 1], cache)
        outs.append(out)
    return torch.cat(outs, dim=1)  # (B, T, C)
def _stepwise_case(seed, B, T, C, H, bias=False):
    attn, x = _attention(seed, C, H, bias), torch.randn(B, T, C, generator=torch.Generator().manual_seed(seed),
                                                        dtype=_F64)
    with torch.no_grad():
        full = attn(x)
    return Case((attn, x), call=_stepwise, expected=full, compare="kv_steps", about=f"{T} positions of shape "
                f"{(B, 1, C)} fed one at a time from an empty cache, n_head = {H}", hint="step t's output must be row "
                "t of the causal self-attention of the whole sequence at once, attn(x): append each new key and value "
                "at the end of the cache, and return the new cache for the next step.")
def _small_gpt(seed, bias=False):  # a tiny GPT in float64, built around the library's CausalSelfAttention, its
    with torch.random.fork_rng():  # weights 10 times GPT-2's initial ones, so that the tokens depend on the context
        torch.manual_seed(seed)
        config = GPTConfig(vocab_size=13, context=24, n_layer=2, n_head=2, d_model=16, bias=bias)
        model = GPT(config, attention=CausalSelfAttention).double().eval()
    with torch.no_grad():
        for weight in model.parameters():
            weight.mul_(10.0)
    return model
def _generates(fn, model_seed, prompt, n, options):  # learner-side: the tokens generated with fn as the step
    model = _small_gpt(model_seed, bias=bool(model_seed % 2))
    model.kv_step = fn
    return model.generate(prompt, n, use_cache=True, **options).tolist()
def _generation_case(model_seed, prompt, n, **options):
    model = _small_gpt(model_seed, bias=bool(model_seed % 2))
    return Case((model_seed, prompt, n, options), call=_generates, compare="value",
                expected=model.generate(prompt, n, use_cache=False, **options).tolist(),
                about=f"{'greedy ' if not options else 'sampled '}generation of {n} tokens by a small GPT (2 blocks, 2 "
                      f"heads) with your step and its cache, after the prompt {prompt}",
                hint="generation with the cache must give exactly the tokens of generation that recomputes the whole "
                     "prefix at every step.")
def _kv_cases():
    hand = torch.tensor([[[[1.0, 0.0]]]], dtype=_F64)  # (1, 1, 1, 2): one cached position
    return [
        Case((_identity(2), torch.tensor([[[0.0, 1.0]]], dtype=_F64), (hand, hand.clone())), about="x_new = [[[0, 1]]]"
             ", one head, every projection the identity, a cache holding k = v = [1, 0]", hint="by hand, the new query "
             "[0, 1] scores the cached key [1, 0] and its own key [0, 1] as [0, 1] / sqrt(2), weights [0.330, 0.670], "
             "so the output is [0.330, 0.670]; the new cache holds k = v = [[1, 0], [0, 1]], the new position last."),
        _kv_case(66, 2, 0, 8, 2, hint="with no cache yet the new position's only key is its own: its weight is 1, its "
                 "output out_proj(v), and the new cache holds one position, (B, n_head, 1, d_head)."),
        _kv_case(67, 2, 5, 8, 2, bias=True, hint="append along the positions axis, dim=2 of (B, n_head, t, d_head), "
                 "then attend over all t + 1 keys, with the scores divided by sqrt(d_head)."),
        _stepwise_case(68, 2, 12, 8, 2),
        _generation_case(61, [1, 2, 3], 16)]
def _kv_hidden():
    return [_kv_case(*a, **k) for a, k in [((611, 1, 0, 4, 1), {}), ((612, 1, 1, 4, 2), {}), ((613, 3, 9, 12, 4), {}),
                                           ((614, 2, 30, 16, 4), {"bias": True}), ((615, 1, 3, 6, 3), {})]] + [
        _stepwise_case(616, 1, 20, 16, 4), _stepwise_case(617, 3, 7, 12, 3, bias=True),
        _generation_case(618, [0], 20), _generation_case(619, [[4, 5, 6, 7], [7, 6, 5, 4]], 18),
        _generation_case(623, [3, 1, 4, 1, 5], 16, temperature=1.0, top_k=5, seed=7)]
_KV = Exercise("kv_cache_step", ["attn", "x_new", "cache"], kv_cache_step, _kv_cases, _kv_hidden, compare="kv_step",
               outputs=("out", "k", "v"), wrong=_kv_with, mistakes=[
    ({"order": "before"}, "the new key and value go at the end of the cache, torch.cat([cached, new], dim=2): the "
     "output is the same (attention does not care about the order of its keys), but position t + 1 then sits "
     "before the positions it follows."),
    ({"keep_old": True}, "it returns the cache it was given: return the new one, with the new position appended, "
     "which the next step needs."),
    ({"own_only": True}, "the new query attends to its own key only: append its key and value to the cache first, "
     "then score the query against all t + 1 keys."),
    ({"scale": "none"}, "the scores are not scaled: divide them by sqrt(d_head), as the whole-sequence attention "
     "does."),
    ({"scale": "d_model"}, "divide the scores by sqrt(d_head) = sqrt(d_model / n_head), not by sqrt(d_model)."),
    ({"axis": -2}, "the softmax runs over the keys, the last axis (dim=-1): over dim=-2 there is one query, and "
     "every weight becomes 1."),
    ({"project": False}, "the output projection is missing: return attn.out_proj(...) of the heads side by side."),
    ({"mask_first": True}, "the newest token needs no mask: it is the last position and may attend to every key. A "
     "lower-triangular mask of shape (1, t + 1) lets it see only the first position."),
    ({"heads": False}, "it attends with one head of all d_model features: keep the n_head heads of the cache, "
     "(B, n_head, t + 1, d_head), each with its own weights.")])
def _top_p_with(z, p, *, rule="before", back=True, fill=-math.inf, probs=False):  # the usual mistakes as switches
    sp, order = torch.softmax(z, -1).sort(-1, descending=True)
    before = sp.cumsum(-1) - sp  # (..., V): the probability of the more likely tokens
    drop = {"before": before >= p, "with": before + sp > p, "one_more": F.pad(before, (1, 0))[..., :-1] >= p}[rule]
    out = (z.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), fill) if back
           else z.sort(-1, descending=True)[0].masked_fill(drop, fill))  # each logit back at its token's place
    return torch.softmax(out, -1) if probs else out
def _top_p_cases():
    g, f64 = torch.Generator().manual_seed(63), torch.float64
    hand = torch.log(torch.tensor([0.10, 0.50, 0.15, 0.25], dtype=f64))
    batch, deep = 1.5 * torch.randn(3, 10, generator=g, dtype=f64), torch.randn(2, 3, 8, generator=g, dtype=f64)
    peaked = torch.tensor([[4.0, 1.0, 0.5, 0.0, -1.0]], dtype=f64)
    return [Case(a, about=about, hint=hint) for a, about, hint in [
        ((hand, 0.7), "probabilities [0.10, 0.50, 0.15, 0.25], p = 0.7", "by hand: sorted, the probabilities are 0.50, "
         "0.25, 0.15, 0.10; 0.50 + 0.25 = 0.75 reaches 0.7, so tokens 1 and 3 stay and tokens 0 and 2 become -inf."),
        ((batch, 0.9), "random logits of shape (3, 10), p = 0.9",
         "filter each row on its own: softmax, sort and cumsum along the last axis (dim=-1)."),
        ((peaked, 0.5), "one row whose top token has probability 0.9, p = 0.5",
         "the most likely token always stays, even when it alone holds more than p: here it is the only one."),
        ((batch, 1.0), "random logits of shape (3, 10), p = 1.0", "p = 1 keeps every token."),
        ((deep, 0.6), "random logits of shape (2, 3, 8), p = 0.6",
         "work along the last axis only (dim=-1), whatever the number of axes before it.")]]
def _top_p_hidden():
    g, cases = torch.Generator().manual_seed(604), []
    for shape, scale in [((2,), 1.0), ((5,), 3.0), ((4, 12), 1.0), ((3, 96), 2.5), ((2, 2, 9), 1.5)]:
        z = scale * torch.randn(shape, generator=g, dtype=torch.float64)
        cases += [Case((z, p)) for p in (0.05, 0.5, 0.8, 0.95, 1.0)]
    return cases + [Case((torch.tensor([[10.0, 0.0, -1.0, -2.0], [0.0, 0.1, 0.2, 0.3]], dtype=torch.float64), 0.9))]
_TOP_P = Exercise("top_p_filter", ["logits", "p"], top_p_filter, _top_p_cases, _top_p_hidden, grade_id="top-p",
                  wrong=_top_p_with, mistakes=[
    ({"rule": "with"}, "it drops the token whose probability carries the total to p or past it (cumsum > p): "
     "keep a token when the tokens *before* it hold less than p, (cumsum - probs) < p, so the nucleus reaches p "
     "and the most likely token always stays."),
    ({"back": False}, "it returns the logits sorted by size: put each one back at its token's place (scatter with "
     "the indices the sort returned), only the dropped ones set to -inf."),
    ({"fill": 0.0}, "the dropped logits are set to 0, and softmax still gives them weight: set them to "
     "float('-inf'), whose probability is exactly 0."),
    (lambda logits, p: logits, "it keeps every token, though the most likely ones already reach p: sort the "
     "probabilities (softmax first, not the logits) in decreasing order, descending=True, then add them up."),
    ({"probs": True}, "it returns probabilities: return the logits, with the dropped ones set to -inf (sampling "
     "applies softmax afterwards)."),
    ({"rule": "one_more"}, "it keeps one token too many: drop every token whose more likely tokens already hold p "
     "or more, (cumsum - probs) >= p.")])

# ------------------------------------------------------------------ predictions
_CHAPTER = GPTConfig(vocab_size=96, context=64, n_layer=4, n_head=4, d_model=128, bias=False)
def _initial_loss():  # a uniform guess over the V characters (a fresh model scores within a few % of it)
    return round(math.log(_CHAPTER.vocab_size), 2)
_LOSS = Exercise("predict_initial_loss", [], _initial_loss, lambda: [Case(rtol=0.05, mistakes=[
    (0.0, "a loss of 0 means certain and right; a model that knows nothing is neither."),
    (1 / 96, "1/96 is the probability of each token under a uniform guess; the loss is minus its logarithm."),
    (96.0, "96 is the perplexity of a uniform guess, e to the loss; the loss itself is ln 96."),
    (math.log2(96), "log2(96) is in bits; the loss uses the natural logarithm, ln 96.")])],
    compare="number", kind="predict",
    explain="A fresh model's weights are small, so its logits are all close to 0 and its softmax close to uniform: "
            "each of the V = 96 characters gets about 1/96, and the loss is about -ln(1/96) = ln 96 = 4.56. A first "
            "loss far from ln V means something is wrong before training starts.")
def _count():
    return parameter_count(_CHAPTER)
_COUNT = Exercise("predict_parameter_count", [], _count, lambda: [Case(rtol=0.05, mistakes=[
    (283_776, "the feed-forward networks are missing: C -> 4C -> C is 8 C^2 weights per block, twice the "
     "attention's 4 C^2."),
    (1_397_888, "the heads share the d_model features: n_head heads of d_head = d_model / n_head features need the "
     "same 4 C^2 attention weights as one head."),
    (414_848, "the feed-forward network is 4 C wide: C -> 4C -> C, 8 C^2 weights.")])],
    compare="number", kind="predict",
    explain="Each block holds 12 C^2 weights (4 C^2 in attention, 8 C^2 in the feed-forward network) and 2 C layer-"
            "norm gains: 4 x 196,864 = 787,456 of the 808,064. The embeddings add VC + TC = 20,480, the output layer "
            "nothing (it is the token embedding), the final layer norm 128; the number of heads changes nothing.")
def _cache_work():  # positions through the blocks generating n tokens after one: n(n+1)/2 without a cache, n with
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=5, context=64, n_layer=1, n_head=1, d_model=4))
    def positions(n, use_cache):
        seen = []
        hook = model.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
        try:
            model.generate([0], n, use_cache=use_cache)
        finally:
            hook.remove()
        return sum(seen)
    growth = [positions(32, c) / positions(16, c) for c in (False, True)]  # doubling n: about 4x, or 2x
    return {(4, 2): "b", (2, 2): "a", (4, 4): "c"}.get(tuple(round(g) for g in growth), "none of them")
_WORK = Exercise("predict_cache_work", [], _cache_work, lambda: [Case(mistakes=[
    ("a", "without a cache each step feeds the whole window through the blocks again, t positions at step t: "
     "1 + 2 + ... + n = n(n+1)/2 in all."),
    ("c", "with a cache each step feeds only the newest position through the blocks: the earlier keys and values "
     "are read from the cache, not computed again.")])],
    compare="choice", options={"choices": ("a", "b", "c")},
    kind="predict",
    explain="Without a cache, step t feeds all t positions of the window through every block: n(n+1)/2 positions "
            "for n tokens, so doubling n about quadruples the work. With a cache each step feeds one, n in all. (The "
            "new query still reads all t cached keys, but that is a small part of the work.) The measured speed-up "
            "is far smaller than n/2, because in a model this small each step's time is mostly a fixed cost.")

EXERCISES = ExerciseSet(_CSA, _LOSS, _COUNT, _TOP_P, _KV, _WORK)
check = EXERCISES.check
reveal = EXERCISES.reveal
