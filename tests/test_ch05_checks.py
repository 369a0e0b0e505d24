"""Chapter 5's checks: the references pass, typical mistakes get the sentence meant for them,
garbage never crashes a check, and the references are the real thing: layer norm equals
torch's, the encoder block equals attnedu.nn.EncoderBlock and torch.nn.TransformerEncoderLayer,
and the attention patterns are exactly what attnedu.nn's blocks let through."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_one_sentence, garbage  # what learners typically get wrong
import torch
import torch.nn.functional as F
from torch import nn

from attnedu import functional as AF
from attnedu.checks import CheckFailed
from attnedu.checks import ch05_transformer as ch05
from attnedu.nn import DecoderBlock, EncoderBlock

ln_ref, eb_ref = ch05.layer_norm_reference, ch05.encoder_block_reference
acc_ref, pat_ref = ch05.sequence_accuracy_reference, ch05.attention_pattern_reference


# ------------------------------------------------------------------ wrong learner functions
def ln_unbiased(x, gamma, beta, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) * gamma + beta


def ln_std_plus_eps(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    std = ((x - mean) ** 2).mean(-1, keepdim=True).sqrt()
    return (x - mean) / (std + eps) * gamma + beta


def ln_no_eps(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / ((x - mean) ** 2).mean(-1, keepdim=True).sqrt() * gamma + beta


def ln_batch_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(0, keepdim=True)
    var = ((x - mean) ** 2).mean(0, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def ln_no_affine(x, gamma, beta, eps=1e-5):
    return ln_ref(x, torch.ones_like(gamma), torch.zeros_like(beta), eps)


def ln_swapped(x, gamma, beta, eps=1e-5):
    return ln_ref(x, beta, gamma, eps)


def rms_norm(x, gamma, beta, eps=1e-5):
    return x / torch.sqrt((x**2).mean(-1, keepdim=True) + eps) * gamma + beta


def ln_fixed_eps(x, gamma, beta, eps=1e-5):
    return ln_ref(x, gamma, beta)


def ln_numpy(x, gamma, beta, eps=1e-5):
    x, gamma, beta = (np.asarray(a) for a in (x, gamma, beta))
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(-1, keepdims=True) + eps) * gamma + beta


def sa(attn, h):
    return attn(h, h, h)[0]


def eb_no_residual(x, attn, ff, norm1, norm2, norm_first=True):
    if norm_first:
        return ff(norm2(sa(attn, norm1(x))))
    return norm2(ff(norm1(sa(attn, x))))


def eb_residual_from_norm(x, attn, ff, norm1, norm2, norm_first=True):
    if norm_first:
        h = norm1(x)
        x = h + sa(attn, h)
        h = norm2(x)
        return h + ff(h)
    return eb_ref(x, attn, ff, norm1, norm2, False)


def eb_always_post(x, attn, ff, norm1, norm2, norm_first=True):
    x = norm1(x + sa(attn, x))
    return norm2(x + ff(x))


def eb_swapped(x, attn, ff, norm1, norm2, norm_first=True):
    return eb_ref(x, attn, ff, norm1, norm2, not norm_first)


def eb_normalised_output(x, attn, ff, norm1, norm2, norm_first=True):
    if norm_first:
        x = x + norm1(sa(attn, x))
        return x + norm2(ff(x))
    return eb_ref(x, attn, ff, norm1, norm2, False)


def eb_norm1_twice(x, attn, ff, norm1, norm2, norm_first=True):
    return eb_ref(x, attn, ff, norm1, norm1, norm_first)


def eb_no_ff(x, attn, ff, norm1, norm2, norm_first=True):
    return x + sa(attn, norm1(x)) if norm_first else norm1(x + sa(attn, x))


def eb_post_skips_norm1(x, attn, ff, norm1, norm2, norm_first=True):
    if norm_first:
        return eb_ref(x, attn, ff, norm1, norm2, True)
    x = x + sa(attn, x)
    return norm2(x + ff(x))


def eb_keeps_tuple(x, attn, ff, norm1, norm2, norm_first=True):
    h = norm1(x)
    return x + attn(h, h, h)  # forgot that attention returns (output, weights)


def acc_token(pred, target):
    return (pred == target).float().mean().item()


def acc_any(pred, target):
    return (pred == target).any(dim=1).float().mean().item()


def acc_count(pred, target):
    return (pred == target).all(dim=1).sum().item()


def acc_error_rate(pred, target):
    return 1 - (pred == target).all(dim=1).float().mean().item()


def acc_per_position(pred, target):
    return (pred == target).all(dim=0).float()


def pat_transposed(kind, n_in, n_out):
    return pat_ref(kind, n_in, n_out).T


def pat_strict(kind, n_in, n_out):
    T = n_in + n_out
    if kind == "encoder":
        return np.ones((T, T), dtype=bool)
    if kind == "decoder":
        return np.tril(np.ones((T, T), dtype=bool), k=-1)
    m = pat_ref(kind, n_in, n_out)
    m[n_in:, n_in:] = np.tril(np.ones((n_out, n_out), dtype=bool), k=-1)
    return m


def pat_t5_causal_everywhere(kind, n_in, n_out):
    return pat_ref("decoder" if kind == "encoder-decoder" else kind, n_in, n_out)


def pat_t5_outputs_see_the_future(kind, n_in, n_out):
    m = pat_ref(kind, n_in, n_out)
    if kind == "encoder-decoder":
        m[n_in:, n_in:] = True
    return m


def pat_t5_inputs_see_outputs(kind, n_in, n_out):
    m = pat_ref(kind, n_in, n_out)
    if kind == "encoder-decoder":
        m[:n_in] = True
    return m


def pat_t5_no_cross_attention(kind, n_in, n_out):
    m = pat_ref(kind, n_in, n_out)
    if kind == "encoder-decoder":
        m[n_in:, :n_in] = False
    return m


def pat_ints(kind, n_in, n_out):
    return pat_ref(kind, n_in, n_out).astype(int)


# ------------------------------------------------------------------ the references pass
@pytest.mark.parametrize(
    "check, fn, n",
    [
        (ch05.check_layer_norm, ln_ref, 5),
        (ch05.check_encoder_block, eb_ref, 4),
        (ch05.check_sequence_accuracy, acc_ref, 4),
        (ch05.check_attention_pattern, pat_ref, 7),
    ],
)
def test_the_reference_passes_its_own_check_and_says_so(check, fn, n, capsys):
    check(fn)
    assert f"passes all {n} checks" in capsys.readouterr().out


def test_the_notebooks_own_solutions_pass(capsys):
    # written the way the chapter's solution cells write them
    def layer_norm(x, gamma, beta, eps=1e-5):
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps) * gamma + beta

    def encoder_block(x, attn, ff, norm1, norm2, norm_first=True):
        if norm_first:
            h = norm1(x)
            x = x + attn(h, h, h)[0]
            return x + ff(norm2(x))
        x = norm1(x + attn(x, x, x)[0])
        return norm2(x + ff(x))

    def sequence_accuracy(pred, target):
        return (pred == target).all(dim=1).float().mean().item()

    def attention_pattern(kind, n_in, n_out):
        T = n_in + n_out
        if kind == "encoder":
            return np.ones((T, T), dtype=bool)
        if kind == "decoder":
            return np.tril(np.ones((T, T), dtype=bool))
        mask = np.zeros((T, T), dtype=bool)
        mask[:n_in, :n_in] = True
        mask[n_in:, :n_in] = True
        mask[n_in:, n_in:] = np.tril(np.ones((n_out, n_out), dtype=bool))
        return mask

    ch05.check_layer_norm(layer_norm)
    ch05.check_layer_norm(ln_numpy)  # NumPy operations on the tensors are fine too
    ch05.check_encoder_block(encoder_block)
    ch05.check_sequence_accuracy(sequence_accuracy)
    ch05.check_sequence_accuracy(lambda p, t: (p == t).all(dim=1).float().mean())  # a 0-d tensor
    ch05.check_attention_pattern(attention_pattern)
    assert capsys.readouterr().out.count("passes all") == 6


# ------------------------------------------------------------------ layer norm
@pytest.mark.parametrize(
    "fn, message",
    [
        (ln_unbiased, r"Likely cause: it divides the squared deviations by d - 1"),
        (ln_std_plus_eps, r"Likely cause: it adds eps to the standard deviation"),
        (ln_no_eps, r"Likely cause: it leaves out eps: a row whose entries are all equal"),
        (ln_batch_norm, r"Likely cause: it normalises each feature over the batch \(axis 0\), which is batch norm"),
        (ln_no_affine, r"other gamma and beta.*Likely cause: it forgets gamma and beta"),
        (ln_swapped, r"Likely cause: gamma and beta are swapped"),
        (rms_norm, r"Likely cause: .*that is RMSNorm"),
        (ln_fixed_eps, r"eps = 0\.5.*Likely cause: it ignores the eps argument"),
    ],
)
def test_layer_norm_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch05.check_layer_norm(fn)


# ------------------------------------------------------------------ encoder block
@pytest.mark.parametrize(
    "fn, message",
    [
        (eb_no_residual, r"norm_first=True.*Likely cause: the residual connections are missing"),
        (eb_residual_from_norm, r"Likely cause: it adds the sublayer's output to norm\(x\) instead of x"),
        (eb_always_post, r"1 head, norm_first=True.*Likely cause: pre-norm and post-norm are swapped"),
        (eb_swapped, r"Likely cause: pre-norm and post-norm are swapped"),
        (eb_normalised_output, r"Likely cause: it normalises the sublayer's output"),
        (eb_norm1_twice, r"Likely cause: it uses norm1 for both sublayers"),
        (eb_no_ff, r"Likely cause: the feed-forward sublayer is missing"),
        (eb_post_skips_norm1, r"norm_first=False.*Likely cause: in post-norm it skips norm1"),
        (eb_keeps_tuple, r"raised TypeError.*Hint: pre-norm: .*attn returns a tuple \(output, weights\)"),
    ],
)
def test_encoder_block_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch05.check_encoder_block(fn)


# ------------------------------------------------------------------ sequence accuracy
@pytest.mark.parametrize(
    "fn, message",
    [
        (acc_token, r"2 of them right.*Likely cause: that is the token accuracy"),
        (acc_any, r"Likely cause: it counts a sequence as right when any position is right"),
        (acc_count, r"Likely cause: it returns the number of right sequences"),
        (acc_error_rate, r"Likely cause: it returns the fraction of wrong sequences"),
        (acc_per_position, r"shape \(3,\); expected shape \(\).*Hint: by hand.*dim=1"),
    ],
)
def test_sequence_accuracy_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch05.check_sequence_accuracy(fn)


# ------------------------------------------------------------------ attention patterns
@pytest.mark.parametrize(
    "fn, message",
    [
        (pat_transposed, r"'decoder'.*Likely cause: the pattern is transposed"),
        (pat_strict, r"'decoder'.*Likely cause: a position may not attend to itself"),
        (pat_t5_causal_everywhere, r"'encoder-decoder'.*Likely cause: the inputs are read causally"),
        (pat_t5_outputs_see_the_future, r"Likely cause: the outputs see later outputs"),
        (pat_t5_inputs_see_outputs, r"Likely cause: the inputs attend to the outputs"),
        (pat_t5_no_cross_attention, r"Likely cause: the outputs cannot see the inputs"),
        (pat_ints, r"expected booleans"),
    ],
)
def test_attention_pattern_mistakes_get_their_sentence(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch05.check_attention_pattern(fn)


# ------------------------------------------------------------------ garbage never crashes
@pytest.mark.parametrize(
    "check",
    [ch05.check_layer_norm, ch05.check_encoder_block, ch05.check_sequence_accuracy,
     ch05.check_attention_pattern],
)
@pytest.mark.parametrize("fn, message", garbage("not an array of numbers"))
def test_garbage_gets_a_sentence_not_a_crash(check, fn, message):
    assert_one_sentence(check, fn, message)


# ------------------------------------------------------------------ the references are the real thing
@pytest.mark.parametrize("shape", [(1, 1), (4, 7), (2, 3, 16), (2, 2, 3, 5)])
@pytest.mark.parametrize("eps", [1e-5, 1e-2, 1.0])
def test_layer_norm_reference_equals_torch_layer_norm(shape, eps):
    g = torch.Generator().manual_seed(len(shape))
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 4 - 2
    gamma = torch.randn(shape[-1], generator=g, dtype=torch.float64)
    beta = torch.randn(shape[-1], generator=g, dtype=torch.float64)
    torch.testing.assert_close(ln_ref(x, gamma, beta, eps), F.layer_norm(x, shape[-1:], gamma, beta, eps))
    module = nn.LayerNorm(shape[-1], eps=eps).double()
    with torch.no_grad():
        module.weight.copy_(gamma)
        module.bias.copy_(beta)
        torch.testing.assert_close(ln_ref(x, gamma, beta, eps), module(x))


@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_block_reference_equals_attnedus_encoder_block(norm_first):
    torch.manual_seed(5)
    block = EncoderBlock(12, 3, 40, norm_first=norm_first).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.2 * torch.randn_like(p))  # non-trivial norms and biases
        x = torch.randn(2, 6, 12)
        ours = eb_ref(x, block.self_attn, block.ff, block.res1.norm, block.res2.norm, norm_first)
        torch.testing.assert_close(ours, block(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_block_reference_equals_torch_transformer_encoder_layer(norm_first, activation):
    torch.manual_seed(6)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=activation,
                                       batch_first=True, norm_first=norm_first).double().train()
    act = nn.ReLU() if activation == "relu" else nn.GELU()
    ff = nn.Sequential(layer.linear1, act, layer.linear2)
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    with torch.no_grad():
        ours = eb_ref(x, layer.self_attn, ff, layer.norm1, layer.norm2, norm_first)
        torch.testing.assert_close(ours, layer(x))


def dependencies(run, n_positions: int, d: int) -> np.ndarray:
    """(T, T) booleans: output position i changes when input position j does."""
    torch.manual_seed(0)
    x = torch.randn(1, n_positions, d)
    with torch.no_grad():
        base = run(x)
        deps = np.zeros((n_positions, n_positions), dtype=bool)
        for j in range(n_positions):
            y = x.clone()
            y[0, j] += torch.randn(d)  # not a constant: LN would remove it
            deps[:, j] = (run(y) - base).abs().amax(dim=-1)[0].numpy() > 1e-6
    return deps


@pytest.mark.parametrize("n_in, n_out", [(4, 3), (1, 5), (5, 1)])
def test_attention_patterns_are_what_attnedus_blocks_let_through(n_in, n_out):
    # stacks of two blocks, so that indirect paths would show up too
    d, T = 8, n_in + n_out
    torch.manual_seed(1)
    enc = [EncoderBlock(d, 2, 16).eval() for _ in range(2)]
    dec = [DecoderBlock(d, 2, 16).eval() for _ in range(2)]
    xdec = [DecoderBlock(d, 2, 16, cross_attention=True).eval() for _ in range(2)]

    def stack(blocks, h, *args):
        for b in blocks:
            h = b(h, *args)
        return h

    def encoder_decoder(x):
        memory = stack(enc, x[:, :n_in])
        return torch.cat([memory, stack(xdec, x[:, n_in:], memory)], dim=1)

    runs = {"encoder": lambda x: stack(enc, x), "decoder": lambda x: stack(dec, x),
            "encoder-decoder": encoder_decoder}
    for kind, run in runs.items():
        np.testing.assert_array_equal(dependencies(run, T, d), pat_ref(kind, n_in, n_out), err_msg=kind)


def test_attention_pattern_blocks_match_the_library_masks():
    m = pat_ref("encoder-decoder", 6, 4)
    assert m[:6, :6].all() and not m[:6, 6:].any() and m[6:, :6].all()
    np.testing.assert_array_equal(m[6:, 6:], AF.causal_mask(4))
    np.testing.assert_array_equal(m[6:, 6:], ~DecoderBlock.causal_mask(4).numpy())  # torch's: True = blocked
    np.testing.assert_array_equal(pat_ref("decoder", 3, 7), AF.causal_mask(10))
    assert pat_ref("encoder", 3, 7).all() and pat_ref("encoder-decoder", 3, 0).all()
    assert all(pat_ref(k, 2, 3).dtype == bool for k in ch05.KINDS)


def test_sequence_accuracy_reference_counts_whole_rows():
    target = torch.arange(12).reshape(4, 3)
    pred = target.clone()
    pred[0, 0] = 99
    pred[2, 1] = 99
    assert acc_ref(pred, target) == 0.5
    assert acc_ref(target.numpy(), target.numpy()) == 1.0
    assert isinstance(acc_ref(pred, target), float)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: ln_ref(torch.zeros(2, 4), torch.ones(3), torch.zeros(4)), r"must both have shape \(4,\)"),
        (lambda: ln_ref(torch.zeros(2, 4), torch.ones(4), torch.zeros(4), eps=-1.0), "non-negative"),
        (lambda: ln_ref(torch.tensor(1.0), torch.ones(1), torch.zeros(1)), "at least one axis"),
        (lambda: eb_ref(torch.zeros(4, 8), None, None, None, None), r"\(B, T, d_model\), got shape \(4, 8\)"),
        (lambda: acc_ref(torch.zeros(2, 3), torch.zeros(2, 4)), r"must both be \(B, T\)"),
        (lambda: acc_ref(torch.zeros(0, 3), torch.zeros(0, 3)), "empty batch"),
        (lambda: pat_ref("bert", 2, 2), "kind must be one of"),
        (lambda: pat_ref("decoder", -1, 2), "n_in must be a non-negative integer"),
        (lambda: pat_ref("decoder", 2, 1.5), "n_out must be a non-negative integer"),
        (lambda: pat_ref("encoder", 0, 0), "at least 1"),
    ],
)
def test_references_reject_bad_input_with_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
