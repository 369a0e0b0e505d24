"""attnedu.nn's Transformer blocks: equal to torch's reference layers given the same weights,
causal where they must be, and a KV cache that changes nothing but the speed."""

from __future__ import annotations

import pytest
import torch

from attnedu.nn import DecoderBlock, EncoderBlock, FeedForward, KVCache, MultiHeadAttention

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
    torch.testing.assert_close(ours(x, key_padding_mask=pad), ref(x, src_key_padding_mask=pad), **TOL)


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
    torch.testing.assert_close(ours(x, memory, memory_key_padding_mask=mem_pad), expected, **TOL)


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
    torch.testing.assert_close(block(padded, key_padding_mask=pad)[:, :5], block(x), **TOL)


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
