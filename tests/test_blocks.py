"""attnedu.nn's Transformer blocks: equal to torch's reference layers given the same weights,
causal where they must be, and a KV cache that changes nothing but the speed; chapter 5's layer_norm and
encoder_block equal torch's, and the attention patterns are what the blocks let through. Their masks are in
the course's convention, True where a position may attend (torch's layers take the opposite)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnedu import functional as AF
from attnedu.nn import DecoderBlock, EncoderBlock, FeedForward, KVCache, MultiHeadAttention, encoder_block, layer_norm

TOL = dict(atol=1e-5, rtol=1e-5)


def copy_mha(ours: MultiHeadAttention, ref: torch.nn.MultiheadAttention) -> None:
    ours.load_state_dict(MultiHeadAttention.from_torch(ref).state_dict())


def copy_linear(ours: torch.nn.Linear, ref: torch.nn.Linear) -> None:
    ours.load_state_dict(ref.state_dict())


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_block_equals_torch_transformer_encoder_layer(norm_first, activation):
    torch.manual_seed(0)
    ref = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=activation,
                                           batch_first=True, norm_first=norm_first)
    ours = EncoderBlock(16, 4, 32, norm_first=norm_first, activation=activation)
    copy_mha(ours.self_attn, ref.self_attn)
    copy_linear(ours.ff.fc1, ref.linear1)
    copy_linear(ours.ff.fc2, ref.linear2)
    ours.res1.norm.load_state_dict(ref.norm1.state_dict())
    ours.res2.norm.load_state_dict(ref.norm2.state_dict())
    x = torch.randn(3, 7, 16)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[1, 5:] = True
    ref.train()  # keeps torch on its plain (not fused inference) path
    torch.testing.assert_close(ours(x, padding_mask=~pad), ref(x, src_key_padding_mask=pad), **TOL)
    window = torch.ones(7, 7, dtype=torch.bool).triu(-2).tril(2)  # a band: |i - j| <= 2 may attend
    torch.testing.assert_close(ours(x, mask=window, padding_mask=~pad),
                               ref(x, src_mask=~window, src_key_padding_mask=pad), **TOL)


@pytest.mark.parametrize("norm_first", [True, False])
def test_decoder_block_equals_torch_transformer_decoder_layer(norm_first):
    torch.manual_seed(1)
    ref = torch.nn.TransformerDecoderLayer(16, 2, 24, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=norm_first)
    ours = DecoderBlock(16, 2, 24, norm_first=norm_first, cross_attention=True)
    copy_mha(ours.self_attn, ref.self_attn)
    copy_mha(ours.cross_attn, ref.multihead_attn)
    copy_linear(ours.ff.fc1, ref.linear1)
    copy_linear(ours.ff.fc2, ref.linear2)
    for res, norm in ((ours.res1, ref.norm1), (ours.res2, ref.norm2), (ours.res3, ref.norm3)):
        res.norm.load_state_dict(norm.state_dict())
    x, memory = torch.randn(2, 6, 16), torch.randn(2, 9, 16)
    mem_pad = torch.zeros(2, 9, dtype=torch.bool)
    mem_pad[0, 7:] = True
    causal = torch.nn.Transformer.generate_square_subsequent_mask(6).isinf()  # True = blocked
    expected = ref(x, memory, tgt_mask=causal, memory_key_padding_mask=mem_pad)
    torch.testing.assert_close(ours(x, memory, memory_padding_mask=~mem_pad), expected, **TOL)


def test_decoder_position_t_never_sees_the_future():
    torch.manual_seed(2)
    block = DecoderBlock(16, 4, 32)
    x = torch.randn(1, 8, 16)
    y = x.clone()
    y[:, 5:] = torch.randn(1, 3, 16)  # change only positions 5, 6, 7
    a, b = block(x), block(y)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_encoder_without_positions_is_permutation_equivariant():
    torch.manual_seed(3)
    block = EncoderBlock(12, 3, 24)
    x = torch.randn(2, 6, 12)
    perm = torch.randperm(6)
    torch.testing.assert_close(block(x)[:, perm], block(x[:, perm]), **TOL)


def test_padding_does_not_change_the_real_positions():
    torch.manual_seed(4)
    block = EncoderBlock(8, 2, 16)
    x = torch.randn(1, 5, 8)
    padded = torch.cat([x, torch.randn(1, 3, 8)], dim=1)
    pad = torch.tensor([[False] * 5 + [True] * 3])
    torch.testing.assert_close(block(padded, padding_mask=~pad)[:, :5], block(x), **TOL)


def test_kv_cache_gives_the_same_outputs_as_the_full_sequence():
    torch.manual_seed(5)
    blocks = [DecoderBlock(32, 4, 64).eval() for _ in range(2)]
    x = torch.randn(2, 12, 32)

    def run(h, caches=None, ):
        for i, b in enumerate(blocks):
            h = b(h, cache=None if caches is None else caches[i])
        return h

    with torch.no_grad():
        full = run(x)
        caches = [KVCache(), KVCache()]
        pieces = [run(x[:, :5], caches)] + [run(x[:, t:t + 1], caches) for t in range(5, 12)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, **TOL)
    assert [len(c) for c in caches] == [12, 12]


def test_pre_norm_keeps_an_untouched_path_and_post_norm_normalises_the_output():
    torch.manual_seed(6)
    x = torch.randn(2, 4, 8) * 3 + 1
    for norm_first in (True, False):
        block = EncoderBlock(8, 2, 16, norm_first=norm_first)
        with torch.no_grad():  # silence both sublayers
            block.self_attn.out_proj.weight.zero_()
            block.self_attn.out_proj.bias.zero_()
            block.ff.fc2.weight.zero_()
            block.ff.fc2.bias.zero_()
        out = block(x)
        if norm_first:
            torch.testing.assert_close(out, x)
        else:
            torch.testing.assert_close(out.mean(-1), torch.zeros(2, 4), atol=1e-5, rtol=0)
            torch.testing.assert_close(out.std(-1, unbiased=False), torch.ones(2, 4), atol=1e-3, rtol=0)


def test_feed_forward_acts_on_each_position_on_its_own():
    torch.manual_seed(7)
    ff = FeedForward(6, 24)
    x = torch.randn(3, 5, 6)
    torch.testing.assert_close(ff(x)[:, 2], ff(x[:, 2:3])[:, 0])
    with pytest.raises(ValueError, match="activation"):
        FeedForward(6, 24, activation="tanh")


def test_attention_weights_are_kept_when_asked():
    block = DecoderBlock(8, 2, 16, cross_attention=True)
    block(torch.randn(1, 3, 8), memory=torch.randn(1, 5, 8), need_weights=True)
    assert block.attn_weights.shape == (1, 2, 3, 3) and block.cross_weights.shape == (1, 2, 3, 5)
    assert torch.all(block.attn_weights[0, :, 0, 1:] == 0)  # the first position sees only itself


def test_cross_attention_is_asked_for_consistently():
    with pytest.raises(ValueError, match="no cross-attention"):
        DecoderBlock(8, 2, 16)(torch.randn(1, 3, 8), memory=torch.randn(1, 2, 8))
    with pytest.raises(ValueError, match="pass the encoder's output as memory"):
        DecoderBlock(8, 2, 16, cross_attention=True)(torch.randn(1, 3, 8))
    cache = KVCache()
    cache.update(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match="do not fit the cached"):
        cache.update(torch.zeros(2, 2, 1, 4), torch.zeros(2, 2, 1, 4))


def test_the_blocks_masks_are_true_where_a_position_may_attend():
    torch.manual_seed(8)
    x = torch.randn(2, 5, 8)
    real = torch.from_numpy(AF.padding_mask(np.array([5, 3]), 5)[:, 0])  # (B, T): chapter 2's, True = real
    enc = EncoderBlock(8, 2, 16)
    enc(x, padding_mask=real, need_weights=True)
    assert torch.all(enc.attn_weights[1, :, :, 3:] == 0)  # nobody attends to sequence 1's padding
    dec = DecoderBlock(8, 2, 16)
    causal = torch.from_numpy(AF.causal_mask(5))  # the default, given explicitly
    torch.testing.assert_close(dec(x, mask=causal), dec(x), **TOL)
    dec(x, mask=torch.ones(5, 5, dtype=torch.bool), need_weights=True)  # everything allowed: not causal
    assert torch.all(dec.attn_weights[0, :, 0, 1:] > 0)
    dec(x, padding_mask=real, need_weights=True)  # causal and padding together
    assert torch.all(dec.attn_weights[1, :, :, 3:] == 0) and torch.all(dec.attn_weights[0, :, 0, 1:] == 0)
    assert torch.equal(dec(x, padding_mask=real.int()), dec(x, padding_mask=real))  # 1/0 as True/False


def test_a_mask_of_the_wrong_shape_or_type_raises_a_value_error_naming_it():
    x = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match=r"padding_mask must be a \(2, 5\) tensor"):
        EncoderBlock(8, 2, 16)(x, padding_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be boolean"):
        DecoderBlock(8, 2, 16)(x, mask=torch.zeros(5, 5))
    with pytest.raises(ValueError, match=r"x must be \(B, T, 8\)"):
        EncoderBlock(8, 2, 16)(torch.randn(5, 8))


def test_with_a_cache_the_default_mask_covers_the_cached_positions():
    torch.manual_seed(9)
    block = DecoderBlock(16, 2, 32).eval()
    x = torch.randn(1, 7, 16)
    with torch.no_grad():
        full = block(x)
        cache = KVCache()
        block(x[:, :4], cache=cache)
        allowed = torch.from_numpy(AF.causal_mask(3, past=4))  # (3, 7): what the block builds itself
        torch.testing.assert_close(block(x[:, 4:], cache=cache, mask=allowed), full[:, 4:], **TOL)


# ------------------------------------------------------------------ chapter 5's functions: layer_norm, encoder_block
@pytest.mark.parametrize("shape", [(1, 1), (4, 7), (2, 3, 16), (2, 2, 3, 5)])
@pytest.mark.parametrize("eps", [1e-5, 1e-2, 1.0])
def test_layer_norm_equals_torch_layer_norm(shape, eps):
    g = torch.Generator().manual_seed(len(shape))
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 4 - 2
    gamma = torch.randn(shape[-1], generator=g, dtype=torch.float64)
    beta = torch.randn(shape[-1], generator=g, dtype=torch.float64)
    expected = torch.nn.functional.layer_norm(x, shape[-1:], gamma, beta, eps)
    torch.testing.assert_close(layer_norm(x, gamma, beta, eps), expected)
    module = torch.nn.LayerNorm(shape[-1], eps=eps).double()
    with torch.no_grad():
        module.weight.copy_(gamma)
        module.bias.copy_(beta)
        torch.testing.assert_close(layer_norm(x, gamma, beta, eps), module(x))


@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_block_function_equals_attnedus_encoder_block(norm_first):
    torch.manual_seed(5)
    block = EncoderBlock(12, 3, 40, norm_first=norm_first).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.2 * torch.randn_like(p))  # non-trivial norms and biases
        x = torch.randn(2, 6, 12)
        ours = encoder_block(x, block.self_attn, block.ff, block.res1.norm, block.res2.norm, norm_first)
        torch.testing.assert_close(ours, block(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_block_function_equals_torch_transformer_encoder_layer(norm_first, activation):
    torch.manual_seed(6)
    layer = torch.nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation=activation,
                                             batch_first=True, norm_first=norm_first).double().train()
    act = torch.nn.ReLU() if activation == "relu" else torch.nn.GELU()
    ff = torch.nn.Sequential(layer.linear1, act, layer.linear2)
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    with torch.no_grad():
        ours = encoder_block(x, layer.self_attn, ff, layer.norm1, layer.norm2, norm_first)
        torch.testing.assert_close(ours, layer(x))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: layer_norm(torch.zeros(2, 4), torch.ones(3), torch.zeros(4)), r"must both have shape \(4,\)"),
        (lambda: layer_norm(torch.zeros(2, 4), torch.ones(4), torch.zeros(4), eps=-1.0), "eps must be a finite num"),
        (lambda: layer_norm(torch.tensor(1.0), torch.ones(1), torch.zeros(1)), "x must have at least one axis"),
        (lambda: encoder_block(torch.zeros(4, 8), None, None, None, None), r"\(B, T, d_model\), got shape \(4, 8\)"),
    ],
)
def test_layer_norm_and_encoder_block_reject_bad_input_with_a_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


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
def test_attention_patterns_are_what_the_blocks_let_through(n_in, n_out):
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
        np.testing.assert_array_equal(dependencies(run, T, d), AF.attention_pattern(kind, n_in, n_out), err_msg=kind)
