"""Chapter 6's exercises, *A GPT from scratch*, as records (see :mod:`attnedu.checks`). None of the checks trains a
model: they give the same verdict however long, or short, the chapter's training ran."""

import math

import torch
import torch.nn.functional as F

from ..models import gpt_parameter_count, next_token_loss, top_p_filter
from ..train import make_batch
from . import Case, Exercise, ExerciseSet

def _batch_with(ids, offsets, context, *, start=0, shift=1, swap=False, roll=False):  # the usual mistakes as switches
    rows = torch.as_tensor(offsets)[:, None] + torch.arange(context) + start  # (B, T)
    x, y = ids[rows], (torch.roll(ids[rows], -1, dims=1) if roll else ids[rows + shift])
    return (y, x) if swap else (x, y)
def _batch_cases():
    ids1, off2, g = torch.arange(100, 112), torch.tensor([31, 0, 17, 31]), torch.Generator().manual_seed(61)
    ids2, ids3 = torch.randint(0, 50, (40,), generator=g), torch.randint(0, 9, (6,), generator=g)
    return [Case(a, about=about, hint=hint) for a, about, hint in [
        ((ids1, torch.tensor([0, 5]), 3), "ids = 100, 101, ..., 111, offsets = [0, 5], context = 3", "by hand: "
         "offset 5 gives x = [105, 106, 107] and y = [106, 107, 108], the same window moved one token to the right."),
        ((ids2, off2, 8), "40 random ids, offsets = [31, 0, 17, 31], context = 8", "each offset gives one row, in "
         "the order given; offset 31 is the last that leaves room for y, which ends with the last token, ids[39]."),
        ((ids3, torch.tensor([4, 2, 0]), 1), "6 random ids, offsets = [4, 2, 0], context = 1",
         "with context = 1 each row holds one token, x of shape (3, 1): keep the window axis.")]]
def _batch_hidden():
    g, cases = torch.Generator().manual_seed(601), []
    for n, B, T in [(2, 1, 1), (30, 5, 4), (100, 7, 16), (500, 12, 64), (65, 3, 64)]:
        ids, off = torch.randint(0, 96, (n,), generator=g), torch.randint(0, n - T, (B,), generator=g)
        cases.append(Case((ids, torch.cat([torch.tensor([n - T - 1]), off[1:]]), T)))  # first: the last valid offset
    return cases
_BATCH = Exercise("make_batch", ["ids", "offsets", "context"], make_batch, _batch_cases, _batch_hidden,
                  outputs=("x", "y"), wrong=_batch_with, mistakes=[
    ({"shift": 0}, "y equals x: the target at position t is the token that comes next, ids[o + t + 1], so y is the "
     "window moved one token to the right."),
    ({"swap": True}, "x and y are swapped: x is the window ids[o : o + T], y the window one token later."),
    ({"shift": -1}, "y is moved one token to the left, ids[o - 1 : o + T - 1]: the targets are the following "
     "tokens, ids[o + 1 : o + T + 1]."),
    ({"roll": True}, "y is x rolled by one, so its last target wraps around to the window's first token: take y "
     "from ids, ids[o + 1 : o + T + 1], so that the last target is the token after the window."),
    ({"start": 1}, "both windows start one token late: x starts at ids[o], y at ids[o + 1]."),
    ({"shift": 2}, "y is moved two tokens on: it starts at ids[o + 1], one token after x.")])
def _loss_with(z, t, *, score="log", sign=-1, total=False, bits=False, part=None, flat=True):  # mistakes as switches
    z, t = torch.as_tensor(z), torch.as_tensor(t).long()
    z, t = {"shift": (z[:, :-1], t[:, 1:]), "row": (z[:1], t[:1]), "last": (z[:, -1:], t[:, -1:])}.get(part, (z, t))
    if not flat:
        return F.cross_entropy(z, t)
    s = torch.log_softmax(z, -1) if score == "log" else z if score == "raw" else torch.softmax(z, -1)
    picked = torch.gather(1 - s if score == "1-p" else s, -1, t[..., None])[..., 0]  # (B, T)
    return sign * (picked.sum() if total else picked.mean()) / (math.log(2) if bits else 1)
def _loss_cases(hidden=False):
    g = torch.Generator().manual_seed(602 if hidden else 62)
    def draw(B, T, V, scale, dtype=torch.float64):
        return scale * torch.randn(B, T, V, generator=g, dtype=dtype), torch.randint(0, V, (B, T), generator=g)
    if hidden:  # the last in float32, as a model returns them
        return [Case(draw(*s), rtol=1e-6, atol=1e-9) for s in [(1, 1, 2, 1.0), (4, 3, 10, 3.0), (2, 9, 9, 1.0),
                (8, 16, 96, 2.0), (3, 5, 7, 300.0)]] + [Case(draw(2, 4, 5, 1.0, torch.float32), rtol=1e-4, atol=1e-6)]
    by_hand = torch.log(torch.tensor([[[1.0, 1.0, 1.0], [2.0, 1.0, 1.0]]], dtype=torch.float64))  # (1, 2, 3)
    return [Case(a, about=about, hint=hint, rtol=1e-6, atol=1e-9) for a, about, hint in [
        ((by_hand, torch.tensor([[2, 0]])), "B = 1, T = 2, V = 3, probabilities [1/3, 1/3, 1/3] then [1/2, 1/4, 1/4]",
         "by hand: the targets get probabilities 1/3 and 1/2, so the loss is (ln 3 + ln 2) / 2 = 0.896."),
        (draw(2, 5, 7, 2.0), "random logits of shape (2, 5, 7)",
         "one number for the whole batch: the mean over all B x T positions."),
        (draw(3, 6, 6, 1.0), "random logits of shape (3, 6, 6), T = V",  # T == V: no shape error to warn you
         "F.cross_entropy wants (N, V) logits and (N,) targets: flatten with reshape(-1, V) and reshape(-1)."),
        (draw(2, 4, 5, 400.0), "logits of shape (2, 4, 5) in the hundreds", "exp of a logit in the hundreds "
         "overflows: use log_softmax (or F.cross_entropy), which subtracts the largest logit first.")]]
_LOSS = Exercise("next_token_loss", ["logits", "targets"], next_token_loss, _loss_cases, lambda: _loss_cases(True),
                 wrong=_loss_with, mistakes=[
    ({"total": True}, "it sums the losses of the B*T positions: take their mean, so that the loss does not grow "
     "with the batch size or the context length."),
    ({"sign": 1}, "the sign is wrong: the loss is the *negative* mean log-probability of the targets (it is >= 0, "
     "and 0 only for a perfect prediction)."),
    ({"score": "p"}, "it averages the targets' probabilities, not their logarithms: the loss is -mean(log p(target))."),
    ({"score": "1-p", "sign": 1}, "it averages 1 - p(target): the loss is -mean(log p(target))."),
    ({"score": "raw"}, "it uses the logits as if they were log-probabilities: apply log_softmax over the "
     "vocabulary axis first (or use F.cross_entropy, which does)."),
    ({"bits": True}, "it measures in bits (log base 2): use the natural logarithm, as F.cross_entropy does."),
    ({"part": "shift"}, "it shifts the targets once more: targets[:, t] already is the token after position t "
     "(the batch did the shift), so compare logits[:, t] with targets[:, t]."),
    ({"flat": False}, "F.cross_entropy read the logits' axis 1 (the positions) as the classes: it wants (N, V) "
     "logits and (N,) targets, so flatten with logits.reshape(-1, V) and targets.reshape(-1)."),
    ({"part": "row"}, "it only uses the first row of the batch: average over every row and every position."),
    ({"part": "last"}, "it only uses the last position of each row: a causal language model is trained to "
     "predict the next token at every position.")])
def _count_with(V, T, L, C, bias=True, *, tied=True, positions=True, final_ln=True, block_ln=True, out_proj=True,
                ff_width=4, blocks=None, biases=True, ln_shift=True):  # the usual mistakes as switches
    b = int(bool(bias) and biases)
    ln = C + b * C * ln_shift  # one layer norm: gains and shifts
    block = (4 if out_proj else 3) * (C * C + b * C) + 2 * ff_width * C * C + b * (ff_width + 1) * C + 2 * ln * block_ln
    return V * C * (1 if tied else 2) + T * C * positions + (L if blocks is None else blocks) * block + ln * final_ln
_COUNT_CASES = [Case(a, {"bias": b}, about=f"{ab}, bias={b}", hint=h, rtol=0, atol=0.5) for a, b, ab, h in [
    ((10, 8, 1, 4), False, "V = 10, T = 8, one block, C = 4", "by hand: 40 (tokens, shared with the output layer) + "
     "32 (positions) + 192 (12 C^2 in the block) + 8 (its two layer norms' gains) + 4 (the final layer norm) = 276."),
    ((10, 8, 1, 4), True, "V = 10, T = 8, one block, C = 4", "with biases each block gains 11 C (3 C + C in "
     "attention, 4 C + C in the feed-forward block, C + C in the layer norms' shifts) and the final layer norm C: 276 "
     "+ 44 + 4 = 324."),
    ((96, 64, 4, 128), False, "the chapter's model: V = 96, T = 64, 4 blocks, C = 128",
     "12 C^2 + 2 C per block, times n_layer."),
    ((65, 256, 6, 384), False, "nanoGPT's shakespeare-char model: V = 65, T = 256, 6 blocks, C = 384", None),
    ((50257, 1024, 12, 768), True, "GPT-2 small: V = 50257, T = 1024, 12 blocks, C = 768",
     "GPT-2 small has 124,439,808 parameters: the 124M of its name.")]]
_COUNT_HIDDEN = [Case(a, {"bias": b}, rtol=0, atol=0.5) for a in [(1, 1, 1, 1), (2, 3, 1, 2), (96, 64, 4, 128),
    (50, 128, 8, 64), (65, 256, 6, 384), (50304, 1024, 24, 1024), (32000, 2048, 1, 16)] for b in (True, False)]
_COUNT = Exercise("gpt_parameter_count", ["vocab_size", "context", "n_layer", "d_model"], gpt_parameter_count,
                 lambda: _COUNT_CASES, lambda: _COUNT_HIDDEN, grade_id="parameter-count", wrong=_count_with, mistakes=[
    ({"tied": False}, "it counts the output layer's V x C matrix as well: with weight tying it *is* the token "
     "embedding's matrix, so it is counted once."),
    ({"positions": False}, "the position embedding is missing: context x d_model more parameters, one learned "
     "vector per position."),
    ({"final_ln": False}, "the final layer norm, after the last block, is missing: C gains (and C shifts with bias)."),
    ({"block_ln": False}, "the two layer norms of each block are missing: 2 C per block (4 C with bias)."),
    ({"out_proj": False}, "the attention's output projection W_o is missing: attention has four C x C matrices, "
     "W_q, W_k, W_v and W_o."),
    ({"ff_width": 1}, "the feed-forward block is C -> C -> C here: its hidden layer is 4 C wide, C -> 4C -> C, so "
     "it has 8 C^2 weights."),
    ({"blocks": 1}, "it counts one block: multiply the per-block count by n_layer."),
    ({"biases": False}, "it leaves out the biases: with bias=True every linear layer has a bias vector and every "
     "layer norm a shift beside its gain."),
    ({"ln_shift": False}, "the layer norms' shifts are missing: with bias=True each has C gains and C shifts.")])
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
EXERCISES = ExerciseSet(_BATCH, _LOSS, _COUNT, _TOP_P)
check = EXERCISES.check
