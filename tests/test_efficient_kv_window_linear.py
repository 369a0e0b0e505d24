"""Chapter 9's KV-cache bill, sliding-window attention and linear attention (attnedu.efficient)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnedu.efficient.kv_cache import (group_kv_heads, grouped_cache_bytes, grouped_losses, kv_cache_bytes,
                                        measured_cache_bytes, validation_ids)
from attnedu.efficient.linear import (approximation_error, crossover, feature_map, linear_attention,
                                      linear_attention_quadratic, softmax_attention)
from attnedu.efficient.window import (RollingKVCache, cache_bytes_by_length, chapter3_passage, perturbation_reach,
                                      receptive_field, rolling_window_attention, sliding_window_attention,
                                      sliding_window_mask, window_attention_step)
from attnedu.functional import causal_mask
from attnedu.pretrained import ModelNotFoundError

pytestmark = pytest.mark.usefixtures("one_thread")


def qkv(B=2, H=3, T=20, d=8, d_v=None, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(B, H, T, d, generator=g, dtype=dtype), torch.randn(B, H, T, d, generator=g, dtype=dtype)
    return q, k, torch.randn(B, H, T, d_v or d, generator=g, dtype=dtype)


# ============================================================================ the KV cache's bill
def test_kv_cache_bytes_is_two_times_layers_heads_head_size_bytes_tokens_batch():
    assert kv_cache_bytes(30, 3, 64) == 2 * 30 * 3 * 64 * 2  # one token, float16
    assert kv_cache_bytes(30, 3, 64, tokens=8192) == 188_743_680  # SmolLM2, full context, float16: 180 MiB
    assert kv_cache_bytes(4, 2, 32, tokens=10, batch=3, bytes_per_number=4) == 2 * 4 * 2 * 32 * 4 * 10 * 3


def test_kv_cache_bytes_agrees_with_chapter_7s_mib():
    from attnedu.llama import LlamaConfig, kv_cache_mib

    c = LlamaConfig()
    for n_kv_head in (3, 9):
        assert kv_cache_bytes(c.n_layer, n_kv_head, c.head_dim, tokens=c.context, bytes_per_number=4) \
            == kv_cache_mib(n_kv_head=n_kv_head) * 2**20


@pytest.mark.parametrize("kwargs, name", [({"n_layer": 0}, "n_layer"), ({"n_kv_head": 1.5}, "n_kv_head"),
                                          ({"tokens": -1}, "tokens"), ({"bytes_per_number": True}, "bytes_per_number")])
def test_kv_cache_bytes_names_the_bad_size(kwargs, name):
    args = {"n_layer": 2, "n_kv_head": 2, "head_dim": 8, **kwargs}
    with pytest.raises(ValueError, match=name):
        kv_cache_bytes(**args)


@pytest.fixture(scope="module")
def smollm():
    from attnedu.pretrained import SmolLM

    try:
        return SmolLM.load()
    except ModelNotFoundError as error:
        pytest.skip(str(error))


def test_smollm2s_measured_cache_equals_the_formula_and_a_third_of_multi_head(smollm):
    m = measured_cache_bytes(smollm, tokens=64)
    assert (m["n_layer"], m["n_head"], m["n_kv_head"], m["head_dim"]) == (30, 9, 3, 64)
    assert m["dtype"] == "float32" and m["bytes_per_number"] == 4
    assert m["measured"] == m["formula"] == kv_cache_bytes(30, 3, 64, tokens=64, bytes_per_number=4) == 2_949_120
    assert m["mha"] == 3 * m["measured"]  # 9 key/value heads instead of 3
    assert m["measured"] <= m["allocated"] <= 2 * m["measured"]  # KVCache doubles its storage when full


def test_measured_cache_bytes_rejects_more_tokens_than_the_context(smollm):
    with pytest.raises(ValueError, match="context"):
        measured_cache_bytes(smollm, tokens=smollm.config.context + 1)


# ============================================================================ GQA from the course GPT
@pytest.fixture(scope="module")
def gpt():
    from attnedu.models import GPT, SHIPPED_CHECKPOINT

    model, notes = GPT.load(SHIPPED_CHECKPOINT)
    return model, validation_ids(notes["vocab"])


def head_rows(weight, head, d_head):
    return weight[head * d_head:(head + 1) * d_head]


def test_grouping_all_heads_separately_changes_nothing(gpt):
    model, val = gpt
    same = group_kv_heads(model, model.config.n_head)
    for a, b in zip(model.state_dict().values(), same.state_dict().values()):
        assert torch.equal(a, b)
    losses = grouped_losses([4], model=model, val_ids=val, eval_iters=2)
    baseline = grouped_losses([4], model=same, val_ids=val, eval_iters=2)
    assert losses == baseline


def test_grouping_gives_the_heads_of_a_group_the_same_keys_and_values_and_leaves_the_model_alone(gpt):
    model, _ = gpt
    before = {name: t.clone() for name, t in model.state_dict().items()}
    grouped = group_kv_heads(model, 2)  # heads (0, 1) and (2, 3)
    d_head = model.config.d_model // model.config.n_head
    for block, original in zip(grouped.blocks, model.blocks):
        for name in ("k_proj", "v_proj"):
            w, w0 = getattr(block.self_attn, name).weight, getattr(original.self_attn, name).weight
            rows = [head_rows(w, h, d_head) for h in range(4)]
            assert torch.equal(rows[0], rows[1]) and torch.equal(rows[2], rows[3])
            assert not torch.equal(rows[0], rows[2])
            torch.testing.assert_close(rows[0], (head_rows(w0, 0, d_head) + head_rows(w0, 1, d_head)) / 2)
        assert torch.equal(block.self_attn.q_proj.weight, original.self_attn.q_proj.weight)  # queries untouched
    for name, t in model.state_dict().items():
        assert torch.equal(t, before[name])  # the original is untouched
    x = torch.randn(1, 5, model.config.d_model)
    with torch.no_grad():
        k = grouped.blocks[0].self_attn.k_proj(x).view(1, 5, 4, d_head)  # (B, T, H, d_head)
    assert torch.equal(k[:, :, 0], k[:, :, 1]) and torch.equal(k[:, :, 2], k[:, :, 3])


def test_a_grouped_gpt_attends_like_grouped_query_attention(gpt):
    from attnedu.llama import GroupedQueryAttention

    model, _ = gpt
    grouped = group_kv_heads(model, 2)
    attn = grouped.blocks[1].self_attn  # attnedu.nn.MultiHeadAttention, 4 heads of 32
    C, d_head = model.config.d_model, model.config.d_model // model.config.n_head
    gqa = GroupedQueryAttention(C, n_head=4, n_kv_head=2, bias=False)
    with torch.no_grad():
        gqa.q_proj.weight.copy_(attn.q_proj.weight)
        gqa.out_proj.weight.copy_(attn.out_proj.weight)
        for ours, theirs in ((gqa.k_proj, attn.k_proj), (gqa.v_proj, attn.v_proj)):
            ours.weight.copy_(torch.cat([head_rows(theirs.weight, h, d_head) for h in (0, 2)]))  # one per group
        x = torch.randn(2, 10, C)
        blocked = ~torch.from_numpy(causal_mask(10))  # torch's convention in MultiHeadAttention: True = blocked
        expected, _ = attn(x, x, x, attn_mask=blocked, need_weights=False)
        got, _ = gqa(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_grouped_losses_rise_as_heads_are_shared(gpt):
    model, val = gpt
    losses = grouped_losses(model=model, val_ids=val, eval_iters=10)
    assert list(losses) == [4, 2, 1]
    assert all(math.isfinite(v) for v in losses.values())
    # measured (eval_iters=20, seed=1; Python 3.11.7): 1.582 (MHA: the checkpoint's recorded val_loss),
    # 2.891 (GQA, 2 key/value heads), 3.718 (MQA): mean-pooling without uptraining costs a lot
    assert losses[4] < losses[2] < losses[1]
    assert 1.3 < losses[4] < 2.0


def test_grouped_cache_bytes_scale_with_the_key_value_heads(gpt):
    model, _ = gpt
    b = grouped_cache_bytes(model.config, [4, 2, 1])
    assert b == {4: 2 * 4 * 4 * 32 * 4 * 64, 2: 2 * 4 * 2 * 32 * 4 * 64, 1: 2 * 4 * 1 * 32 * 4 * 64}
    with pytest.raises(ValueError, match="not divisible"):
        grouped_cache_bytes(model.config, [3])


def test_group_kv_heads_rejects_what_does_not_fit(gpt):
    model, _ = gpt
    with pytest.raises(ValueError, match="n_head=4 is not divisible by n_kv_head=3"):
        group_kv_heads(model, 3)
    with pytest.raises(ValueError, match="n_kv_head must be a positive integer"):
        group_kv_heads(model, 0)
    with pytest.raises(ValueError, match="must be a GPT"):
        group_kv_heads(torch.nn.Linear(2, 2), 1)
    with pytest.raises(ValueError, match="pass val_ids"):
        grouped_losses([1], model=model)


# ============================================================================ sliding windows
def test_the_window_mask_is_chapter_3s_local_window():
    T = 64
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    assert np.array_equal(sliding_window_mask(T, 8), causal_mask(T) & (i - j < 8))
    assert np.array_equal(sliding_window_mask(5, 5), causal_mask(5))
    assert np.array_equal(sliding_window_mask(5, 1), np.eye(5, dtype=bool))
    assert sliding_window_mask(10, 3).sum(axis=1).tolist() == [1, 2] + [3] * 8


@pytest.mark.parametrize("window", [1, 3, 7, 20, 50])
def test_sliding_window_attention_equals_sdpa_with_the_mask_on_every_path(window):
    q, k, v = qkv(T=20, d_v=5)
    allowed = torch.from_numpy(sliding_window_mask(20, window))
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    for path in ("explicit", "sdpa", "banded"):
        torch.testing.assert_close(sliding_window_attention(q, k, v, window, path=path), expected,
                                   atol=1e-6, rtol=1e-5)


def test_a_window_as_long_as_the_sequence_is_causal_attention():
    q, k, v = qkv(T=12)
    torch.testing.assert_close(sliding_window_attention(q, k, v, 12),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-6, rtol=1e-5)


def test_the_rolling_cache_keeps_the_last_window_in_order():
    cache = RollingKVCache(window=4)
    assert cache.nbytes == 0 and len(cache) == 0
    for p in range(10):
        cache.append(torch.full((1, 2, 1, 3), float(p)), torch.full((1, 2, 1, 3), -float(p)))
        expected = list(range(max(0, p - 3), p + 1))
        assert cache.keys()[0, 1, :, 0].tolist() == expected
        assert cache.values()[0, 0, :, 2].tolist() == [-e for e in expected]
        assert len(cache) == min(p + 1, 4) and cache.position == p + 1
        assert cache.nbytes == 2 * 1 * 2 * 4 * 3 * 4  # the whole buffer, from the first position on


@pytest.mark.parametrize("window", [1, 4, 9, 30])
def test_attention_over_the_rolling_cache_equals_sliding_window_attention(window):
    q, k, v = qkv(T=25, d_v=6, seed=1)
    torch.testing.assert_close(rolling_window_attention(q, k, v, window), sliding_window_attention(q, k, v, window),
                               atol=1e-6, rtol=1e-5)


def test_the_rolling_cache_stays_flat_while_a_plain_cache_grows():
    Ts = [1, 8, 16, 64, 256]
    b = cache_bytes_by_length(Ts, window=16, batch=1, n_head=4, head_dim=32)
    per_token = 2 * 4 * 32 * 4  # keys and values, 4 heads of 32 float32 numbers
    assert b["growing"] == [per_token * T for T in Ts]
    assert b["rolling"] == [per_token * 16] * len(Ts)
    assert all(a >= g for a, g in zip(b["growing_allocated"], b["growing"]))


def test_window_attention_step_and_the_cache_validate():
    with pytest.raises(ValueError, match="window must be a positive integer"):
        RollingKVCache(0)
    cache = RollingKVCache(3)
    with pytest.raises(ValueError, match="empty"):
        cache.keys()
    with pytest.raises(ValueError, match=r"\(B, H, 1, d\): one new position"):
        cache.append(torch.zeros(1, 2, 2, 4), torch.zeros(1, 2, 2, 4))
    cache.append(torch.zeros(1, 2, 1, 4), torch.zeros(1, 2, 1, 4))
    with pytest.raises(ValueError, match="do not fit"):
        cache.append(torch.zeros(1, 3, 1, 4), torch.zeros(1, 3, 1, 4))
    with pytest.raises(ValueError, match=r"q must be \(B, H, 1, d\) = \(1, 2, 1, 4\)"):
        window_attention_step(torch.zeros(1, 2, 1, 5), cache)
    with pytest.raises(ValueError, match="must be a floating-point"):
        sliding_window_attention(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), 2)
    with pytest.raises(ValueError, match="path must be one of"):
        sliding_window_attention(*qkv(), 2, path="flash")


def test_the_receptive_field_grows_by_window_minus_one_per_layer():
    assert receptive_field(1, 8) == 8
    assert receptive_field(2, 8) == 15
    assert receptive_field(9, 8) == 64  # chapter 3: 9 layers of 8 before "Ada" reaches "she", 63 tokens on
    with pytest.raises(ValueError, match="n_layer"):
        receptive_field(0, 8)


@pytest.mark.parametrize("n_layer", [1, 2, 8, 9])
def test_token_0_reaches_exactly_the_receptive_field(n_layer):
    change = perturbation_reach(n_layer, window=8)  # (64,): chapter 3's passage, "Ada" perturbed
    reach = receptive_field(n_layer, 8)
    assert torch.all(change[:reach] > 0)
    assert torch.all(change[reach:] == 0)  # bit for bit: those outputs never see token 0


def test_she_learns_about_ada_with_nine_windowed_layers_not_eight():
    assert perturbation_reach(8, 8)[63] == 0
    assert perturbation_reach(9, 8)[63] > 0
    X, W_q, W_k = chapter3_passage()
    assert X.shape == (64, 16) and W_q.shape == W_k.shape == (16, 8) and X[0, 0] == 3.0 and X[63, 1] == 3.0


# ============================================================================ linear attention
def test_the_feature_map_is_elu_plus_one_and_positive():
    x = torch.linspace(-10, 10, 101)
    torch.testing.assert_close(feature_map(x), F.elu(x) + 1, atol=1e-6, rtol=1e-6)
    x = torch.tensor([-30.0, -80.0])  # where elu(x) + 1 rounds to 0 in float32
    torch.testing.assert_close(feature_map(x), torch.exp(x), atol=0, rtol=1e-6)
    assert torch.all(feature_map(x) > 0) and torch.all(F.elu(x) + 1 == 0)
    x = torch.tensor([-100.0, 0.0, 100.0], requires_grad=True)
    feature_map(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[2] == 1


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_equals_its_quadratic_form(causal):
    q, k, v = qkv(B=2, H=3, T=64, d=16, d_v=12, seed=2)
    torch.testing.assert_close(linear_attention(q, k, v, causal), linear_attention_quadratic(q, k, v, causal),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("T, chunk", [(64, 16), (64, 64), (50, 16), (5, 64), (1, 1)])
def test_chunkwise_causal_linear_attention_equals_the_prefix_sums(T, chunk):
    q, k, v = qkv(B=1, H=2, T=T, d=16, d_v=8, seed=4)
    expected = linear_attention_quadratic(q, k, v, causal=True)
    torch.testing.assert_close(linear_attention(q, k, v, causal=True, chunk=chunk), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(linear_attention(q, k, v, causal=True), expected, atol=1e-5, rtol=1e-5)


def test_linear_attention_reads_keys_of_another_length_without_the_mask():
    q, _, _ = qkv(T=5)
    _, k, v = qkv(T=9, seed=3)
    torch.testing.assert_close(linear_attention(q, k, v), linear_attention_quadratic(q, k, v), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="as many queries as keys"):
        linear_attention(q, k, v, causal=True)


def test_causal_linear_attention_at_position_i_ignores_later_tokens():
    q, k, v = qkv(T=10)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 6:] += 1.0
    v2[:, :, 6:] -= 2.0
    torch.testing.assert_close(linear_attention(q, k2, v2, causal=True)[:, :, :6],
                               linear_attention(q, k, v, causal=True)[:, :, :6])


def test_linear_attention_is_not_softmax_attention():
    q, k, v = qkv(B=1, H=4, T=256, d=64)
    error = approximation_error(q, k, v)
    # about 0.78 on standard normal inputs (0.66 causal): a different attention, not a close approximation
    assert 0.3 < error < 1.5
    assert approximation_error(q, k, v, causal=True) > 0.1
    torch.testing.assert_close(softmax_attention(q, k, v), F.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("causal", [False, True])
def test_crossover_times_both_and_reports_where_linear_wins(causal):
    # measured on one thread (B=1, H=4, d=64, float32): from T=512 non-causal, T=1024 causal by chunks of 64
    r = crossover([16, 32], d=8, n_head=1, causal=causal, repeats=1)
    assert r["T"] == [16, 32] and len(r["softmax_s"]) == len(r["linear_s"]) == 2
    assert all(0 < s < 1 for s in r["softmax_s"] + r["linear_s"])
    assert r["crossover"] in (None, 16, 32) and r["threads"] == 1 and r["causal"] is causal
    assert r["chunk"] == (64 if causal else None)
    with pytest.raises(ValueError, match="increasing"):
        crossover([64, 32])


def test_linear_attention_validates_its_inputs():
    with pytest.raises(ValueError, match=r"q must be a floating-point \(B, H, T, d\) tensor, got \(3, 4\)"):
        linear_attention(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 4))
    q, k, v = qkv(d=8)
    with pytest.raises(ValueError, match="expected q"):
        linear_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="floating-point tensor"):
        feature_map(torch.arange(3))
    with pytest.raises(ValueError, match="chunk is for causal=True"):
        linear_attention(q, k, v, chunk=4)
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        linear_attention(q, k, v, causal=True, chunk=0)
