"""attnedu.nn.MultiHeadAttention has exactly the semantics of torch.nn.MultiheadAttention
(batch_first=True): outputs, weights and gradients agree within 1e-5 in float32, for every kind
of mask and their combinations, with kdim/vdim different from embed_dim. Chapter 5's
cross_attention and decoder_block, written from a module's parts, equal torch's and attnedu's
modules."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnedu.nn import (DecoderBlock, MultiHeadAttention, SelfAttention, cross_attention, decoder_block, mha_flops,
                        mha_parameter_count)

TOL = dict(atol=1e-5, rtol=1e-5)


def pair(E, H, kdim=None, vdim=None, bias=True, seed=0):
    torch.manual_seed(seed)
    ref = torch.nn.MultiheadAttention(E, H, batch_first=True, kdim=kdim, vdim=vdim, bias=bias)
    return ref, MultiHeadAttention.from_torch(ref)


def our_grads(ours: MultiHeadAttention, ref: torch.nn.MultiheadAttention) -> dict:
    """Our parameter gradients, laid out like torch's parameters."""
    g = {}
    w = [ours.q_proj.weight.grad, ours.k_proj.weight.grad, ours.v_proj.weight.grad]
    if ref._qkv_same_embed_dim:
        g["in_proj_weight"] = torch.cat(w)
    else:
        g["q_proj_weight"], g["k_proj_weight"], g["v_proj_weight"] = w
    if ref.in_proj_bias is not None:
        g["in_proj_bias"] = torch.cat([ours.q_proj.bias.grad, ours.k_proj.bias.grad, ours.v_proj.bias.grad])
        g["out_proj.bias"] = ours.out_proj.bias.grad
    g["out_proj.weight"] = ours.out_proj.weight.grad
    return g


def run_both(ref, ours, q, k, v, **kwargs):
    """Forward and backward through both modules on copies of the inputs; return everything."""
    results = []
    for module in (ref, ours):
        module.zero_grad()
        inputs = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
        if q is k and k is v:
            inputs = [inputs[0]] * 3
        out, weights = module(*inputs, **kwargs)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()  # not a symmetric loss
        results.append((out, weights, [t.grad for t in inputs]))
    return results


def assert_same(ref, ours, results, need_weights=True):
    (o1, w1, g1), (o2, w2, g2) = results
    torch.testing.assert_close(o2, o1, **TOL)
    if need_weights:
        torch.testing.assert_close(w2, w1, **TOL)
    else:
        assert w1 is None and w2 is None
    for a, b in zip(g1, g2):
        torch.testing.assert_close(b, a, **TOL)
    ours_g = our_grads(ours, ref)
    for name, p in ref.named_parameters():
        torch.testing.assert_close(ours_g[name], p.grad, **TOL, msg=f"gradient of {name}")


MASK_KINDS = ["none", "bool", "float", "bool-3d", "float-3d"]


def make_attn_mask(kind, B, H, L, S, gen):
    shape = (L, S) if not kind.endswith("3d") else (B * H, L, S)
    if kind == "none":
        return None
    if kind.startswith("bool"):
        m = torch.rand(shape, generator=gen) < 0.4
        m[..., 0] = False  # every query keeps at least one key
        return m
    return torch.randn(shape, generator=gen)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    B=st.integers(1, 3), L=st.integers(1, 6), S=st.integers(1, 6), H=st.sampled_from([1, 2, 4]),
    head_dim=st.integers(1, 5), kdim=st.sampled_from([None, 3, 7]), vdim=st.sampled_from([None, 2, 5]),
    mask_kind=st.sampled_from(MASK_KINDS), padding=st.sampled_from([None, "bool", "float"]),
    need_weights=st.booleans(), average=st.booleans(), bias=st.booleans(), seed=st.integers(0, 2**16),
)
def test_equal_to_torch_for_random_shapes_masks_and_gradients(
    B, L, S, H, head_dim, kdim, vdim, mask_kind, padding, need_weights, average, bias, seed
):
    E = H * head_dim
    ref, ours = pair(E, H, kdim, vdim, bias, seed)
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, L, E, generator=gen)
    k = torch.randn(B, S, kdim or E, generator=gen)
    v = torch.randn(B, S, vdim or E, generator=gen)
    kpm = None
    if padding == "bool":
        kpm = torch.rand(B, S, generator=gen) < 0.3
        kpm[:, 0] = False
    elif padding == "float":
        kpm = torch.randn(B, S, generator=gen)
    attn_mask = make_attn_mask(mask_kind, B, H, L, S, gen)
    if padding == "float" and attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape).masked_fill(attn_mask, float("-inf"))  # torch wants matching types
    if padding == "bool" and attn_mask is not None and attn_mask.dtype != torch.bool:
        kpm = torch.zeros(kpm.shape).masked_fill(kpm, float("-inf"))
    results = run_both(ref, ours, q, k, v, key_padding_mask=kpm, attn_mask=attn_mask,
                       need_weights=need_weights, average_attn_weights=average)
    assert_same(ref, ours, results, need_weights)


@pytest.mark.parametrize("need_weights", [True, False])
def test_self_attention_with_a_causal_mask_and_the_is_causal_hint(need_weights):
    ref, ours = pair(32, 4)
    x = torch.randn(2, 9, 32)
    causal = torch.ones(9, 9, dtype=torch.bool).triu(1)
    results = run_both(ref, ours, x, x, x, attn_mask=causal, is_causal=True, need_weights=need_weights)
    assert_same(ref, ours, results, need_weights)
    if need_weights:
        assert torch.all(results[1][1][:, causal] == 0)  # no weight on the future


def test_per_head_weights_and_unbatched_inputs():
    ref, ours = pair(12, 3)
    x, y = torch.randn(4, 12), torch.randn(6, 12)
    (o1, w1), (o2, w2) = ref(x, y, y, average_attn_weights=False), ours(x, y, y, average_attn_weights=False)
    assert w2.shape == (3, 4, 6) and o2.shape == (4, 12)
    torch.testing.assert_close(o2, o1, **TOL)
    torch.testing.assert_close(w2, w1, **TOL)


def test_explicit_and_fast_paths_agree():
    torch.manual_seed(3)
    fast = MultiHeadAttention(24, 3)
    slow = MultiHeadAttention(24, 3, fast=False)
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(2, 7, 24)
    pad = torch.tensor([[False] * 7, [False] * 4 + [True] * 3])
    torch.testing.assert_close(fast(x, x, x, key_padding_mask=pad, need_weights=False)[0],
                               slow(x, x, x, key_padding_mask=pad, need_weights=False)[0], **TOL)


def test_dropout_in_training_and_not_in_eval():
    ref, ours = pair(16, 2)
    ours_d = MultiHeadAttention(16, 2, dropout=0.5)
    ours_d.load_state_dict(ours.state_dict())
    x = torch.randn(2, 5, 16)
    ours_d.eval()
    torch.testing.assert_close(ours_d(x, x, x)[0], ours(x, x, x)[0])
    ours_d.train()
    torch.manual_seed(0)
    _, w = ours_d(x, x, x, average_attn_weights=False)
    assert (w == 0).any()  # dropped weights


def test_default_initialisation_matches_torchs_scale():
    torch.manual_seed(0)
    ours, ref = MultiHeadAttention(64, 8), torch.nn.MultiheadAttention(64, 8)
    assert abs(ours.q_proj.weight.abs().max().item() - ref.in_proj_weight.abs().max().item()) < 0.02
    assert torch.all(ours.q_proj.bias == 0) and torch.all(ours.out_proj.bias == 0)


def test_parameter_count_matches_the_formula_and_torch():
    for E, H, kdim, vdim, bias in [(64, 8, None, None, True), (12, 3, 5, 7, True), (16, 4, None, None, False)]:
        ref, ours = pair(E, H, kdim, vdim, bias)
        kd, vd = kdim or E, vdim or E
        formula = E * E + kd * E + vd * E + E * E + (4 * E if bias else 0)
        assert sum(p.numel() for p in ours.parameters()) == formula == sum(p.numel() for p in ref.parameters())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: MultiHeadAttention(10, 3), r"embed_dim=10 is not divisible by num_heads=3"),
        (lambda: MultiHeadAttention(8, 2, dropout=1.5), "dropout"),
        (lambda: MultiHeadAttention.from_torch(torch.nn.Linear(2, 2)), "needs a torch.nn.MultiheadAttention"),
        (lambda: MultiHeadAttention.from_torch(torch.nn.MultiheadAttention(8, 2, add_bias_kv=True)), "add_bias_kv"),
    ],
)
def test_bad_construction_raises_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x: m(x, x[:, :, :4], x), r"key has shape \(2, 5, 4\) but this module expects its last axis to be 8"),
        (lambda m, x: m(x, x, x[:, :3]), r"key \(2, 5, 8\) and value \(2, 3, 8\) must have the same"),
        (lambda m, x: m(x, x, x, attn_mask=torch.zeros(5, 4, dtype=torch.bool)), r"attn_mask has shape \(5, 4\)"),
        (lambda m, x: m(x, x, x, key_padding_mask=torch.zeros(2, 4, dtype=torch.bool)),
         r"key_padding_mask has shape \(2, 4\); expected \(2, 5\)"),
        (lambda m, x: m(x, x, x, attn_mask=torch.zeros(5, 5, dtype=torch.int64)), "boolean .* or floating-point"),
        (lambda m, x: m(x, x, x, is_causal=True), "is_causal=True is a hint"),
        (lambda m, x: m(x[0, 0], x, x), r"all be \(B, T, E\) or all \(T, E\)"),
        (lambda m, x: m(x, x[:1], x[:1]), "different batch sizes"),
    ],
)
def test_bad_input_names_the_shapes(call, message):
    m = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=message):
        call(m, torch.randn(2, 5, 8))


# ------------------------------------------------------------------ chapter 3: SelfAttention
def test_self_attention_module_equals_the_numpy_function_and_lets_gradients_reach_its_weights():
    import numpy as np

    from attnedu.functional import self_attention

    torch.manual_seed(0)
    module = SelfAttention(6, 4, 3).double()
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    out, weights = module(x)
    assert out.shape == (2, 5, 3) and weights.shape == (2, 5, 5)
    W_q, W_k, W_v = (layer.weight.detach().numpy().T for layer in (module.W_q, module.W_k, module.W_v))
    ref_out, ref_weights = self_attention(x.numpy(), W_q, W_k, W_v)
    torch.testing.assert_close(out, torch.from_numpy(ref_out), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(weights, torch.from_numpy(ref_weights), rtol=1e-10, atol=1e-12)
    out.sum().backward()
    assert all(layer.weight.grad is not None for layer in (module.W_q, module.W_k, module.W_v))
    assert SelfAttention(8, 2).W_v.out_features == 2  # d_v defaults to d_k


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SelfAttention(0, 4), "d_model must be a positive integer"),
        (lambda: SelfAttention(8, 4, d_v=2.5), "d_v must be a positive integer"),
        (lambda: SelfAttention(8, 4)(torch.randn(3, 5)), r"x must be a \(\.\.\., T, 8\) tensor, got \(3, 5\)"),
    ],
)
def test_self_attention_module_names_a_bad_size(make, message):
    with pytest.raises(ValueError, match=message):
        make()


# ------------------------------------------------------------------ chapter 4: counting parameters and FLOPs
@pytest.mark.parametrize("E, H, kdim, vdim, bias", [(64, 8, None, None, True), (12, 3, 5, 7, True),
                                                    (16, 1, None, 3, False), (768, 12, None, None, True)])
def test_mha_parameter_count_equals_numel_of_both_modules(E, H, kdim, vdim, bias):
    theirs = torch.nn.MultiheadAttention(E, H, kdim=kdim, vdim=vdim, bias=bias)
    ours = MultiHeadAttention.from_torch(theirs)
    expected = mha_parameter_count(E, kdim, vdim, bias)
    assert sum(p.numel() for p in theirs.parameters()) == expected
    assert sum(p.numel() for p in ours.parameters()) == expected
    assert mha_parameter_count(4) == 4 * 4 * 4 + 4 * 4  # by hand: four 4 x 4 matrices, four biases of 4


@pytest.mark.parametrize("B, T, E, H", [(2, 5, 16, 4), (1, 33, 32, 1), (1, 33, 32, 8)])
def test_mha_flops_equals_torchs_flop_counter_on_the_explicit_path(B, T, E, H):
    from torch.utils.flop_counter import FlopCounterMode

    module = MultiHeadAttention(E, H)
    x = torch.randn(B, T, E)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(x, x, x, need_weights=True)
    assert counter.get_total_flops() == mha_flops(B, T, E, H)
    assert mha_flops(1, 3, 2, 1) == 168  # by hand: 4 * 24 for the projections, 2 * 36 for the attention


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mha_flops(1, 2, 10, 3), "embed_dim=10 is not divisible by num_heads=3"),
        (lambda: mha_flops(0, 2, 8, 2), "batch must be a positive integer"),
        (lambda: mha_flops(1, 2, 8, 2.0), "num_heads must be a positive integer"),
        (lambda: mha_parameter_count(8, kdim=0), "kdim must be a positive integer"),
        (lambda: mha_parameter_count(-1), "embed_dim must be a positive integer"),
        (lambda: mha_parameter_count(8, bias=1), "bias must be True or False"),
    ],
)
def test_the_counts_reject_bad_sizes_with_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------ chapter 5: cross-attention and the decoder block
def padded(lengths, S):
    """(B, S) booleans, True for the first lengths[b] positions: the course's convention."""
    return torch.arange(S)[None, :] < torch.tensor(lengths)[:, None]


@pytest.mark.parametrize("B, T, S, E, H, lengths", [(1, 1, 1, 4, 1, None), (2, 3, 5, 8, 2, [5, 2]),
                                                    (3, 6, 4, 12, 3, [1, 4, 3]), (2, 4, 7, 16, 8, None)])
def test_cross_attention_equals_torch_multihead_attention_with_a_key_padding_mask(B, T, S, E, H, lengths):
    torch.manual_seed(B * T * S)
    theirs = torch.nn.MultiheadAttention(E, H, batch_first=True).double()
    ours = MultiHeadAttention.from_torch(theirs)
    x, memory = torch.randn(B, T, E, dtype=torch.float64), torch.randn(B, S, E, dtype=torch.float64)
    mask = None if lengths is None else padded(lengths, S)
    out, weights = cross_attention(x, memory, ours, mask)
    ref_out, ref_weights = theirs(x, memory, memory, key_padding_mask=None if mask is None else ~mask,
                                  average_attn_weights=False)
    assert out.shape == (B, T, E) and weights.shape == (B, H, T, S)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(weights, ref_weights, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, T, dtype=torch.float64))
    if mask is not None:  # padding gets exactly no weight, and changing it changes nothing
        assert torch.all(weights.masked_select(~mask[:, None, None, :]) == 0)
        noisy = memory.masked_fill(~mask[..., None], 1e3)
        torch.testing.assert_close(cross_attention(x, noisy, ours, mask)[0], out, rtol=1e-10, atol=1e-12)


def test_cross_attention_by_hand():
    attn = MultiHeadAttention(2, 1).double()
    with torch.no_grad():
        for linear in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
            linear.weight.copy_(torch.eye(2))
            linear.bias.zero_()
    x = torch.zeros(1, 3, 2, dtype=torch.float64)  # three queries [0, 0]: every score is 0
    memory = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]], dtype=torch.float64)
    out, weights = cross_attention(x, memory, attn, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(weights[0, 0], torch.tensor([[0.5, 0.5, 0.0]] * 3, dtype=torch.float64))
    torch.testing.assert_close(out[0], torch.tensor([[0.5, 0.5]] * 3, dtype=torch.float64))
    torch.testing.assert_close(cross_attention(x, memory, attn)[0][0], torch.full((3, 2), 2.0, dtype=torch.float64))


@pytest.mark.parametrize("lengths", [None, [6, 3]])
def test_decoder_block_function_equals_the_decoder_block_module_and_torchs_layer(lengths):
    torch.manual_seed(5)
    theirs = torch.nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, activation="gelu", batch_first=True,
                                              norm_first=True).double()
    block = DecoderBlock(16, 4, 32, cross_attention=True).double().eval()
    for mine, ref in [(block.self_attn, theirs.self_attn), (block.cross_attn, theirs.multihead_attn)]:
        mine.load_state_dict(MultiHeadAttention.from_torch(ref).state_dict())
    block.ff.fc1.load_state_dict(theirs.linear1.state_dict())
    block.ff.fc2.load_state_dict(theirs.linear2.state_dict())
    for i, res in enumerate((block.res1, block.res2, block.res3), start=1):
        res.norm.load_state_dict(getattr(theirs, f"norm{i}").state_dict())
    x, memory = torch.randn(2, 5, 16, dtype=torch.float64), torch.randn(2, 6, 16, dtype=torch.float64)
    mask = None if lengths is None else padded(lengths, 6)
    parts = (block.self_attn, block.cross_attn, block.ff, block.res1.norm, block.res2.norm, block.res3.norm)
    with torch.no_grad():
        ours = decoder_block(x, memory, *parts, mask)
        torch.testing.assert_close(ours, block(x, memory, memory_padding_mask=mask), rtol=1e-10, atol=1e-12)
        causal = torch.triu(torch.ones(5, 5, dtype=torch.bool), diagonal=1)  # torch's convention: True = blocked
        ref = theirs(x, memory, tgt_mask=causal, memory_key_padding_mask=None if mask is None else ~mask)
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
        later = x.clone()
        later[:, 3:] = torch.randn(2, 2, 16, dtype=torch.float64)  # the causal mask: positions 0-2 unchanged
        torch.testing.assert_close(decoder_block(later, memory, *parts, mask)[:, :3], ours[:, :3])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda a, x, m: cross_attention(x, m[..., :4], a), r"memory must be \(B=2, S, 8\) .* got \(2, 3, 4\)"),
        (lambda a, x, m: cross_attention(x, m[:1], a), r"memory must be \(B=2, S, 8\)"),
        (lambda a, x, m: cross_attention(x[0], m, a), r"x must be \(B, T, 8\), got \(5, 8\)"),
        (lambda a, x, m: cross_attention(x, m, a, torch.ones(2, 5, dtype=torch.bool)),
         r"memory_mask must be a \(2, 3\) tensor"),
        (lambda a, x, m: cross_attention(x, m, a, torch.ones(2, 3)), r"memory_mask must be boolean"),
        (lambda a, x, m: cross_attention(x, m, torch.nn.MultiheadAttention(8, 2)), "MultiHeadAttention.from_torch"),
        (lambda a, x, m: decoder_block(x[0], m, a, a, None, None, None, None), r"x must be \(B, T, d_model\)"),
    ],
)
def test_cross_attention_and_decoder_block_name_bad_shapes(call, message):
    a = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=message):
        call(a, torch.randn(2, 5, 8), torch.randn(2, 3, 8))
