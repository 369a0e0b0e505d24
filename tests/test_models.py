"""attnedu.models: a GPT built from attnedu.nn's decoder blocks, with tied input/output
embeddings, a parameter count that a formula predicts, and generation whose KV cache changes
the speed, never the tokens, and which returns only the new tokens, in the type of the prompt.
Sampling filters (top-k, top-p, temperature) do what they say."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

import attnedu.models as models
from attnedu.models import (SHIPPED_CHECKPOINT, GPT, GPTConfig, gpt_parameter_count, next_token_loss, parameter_count,
                             sample_next, top_k_filter, top_p_filter)
from attnedu.nn import DecoderBlock, KVCache


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is fastest


def tiny(context=16, vocab_size=11, n_layer=2, n_head=2, d_model=16, dropout=0.0, bias=True, seed=0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, context=context, n_layer=n_layer, n_head=n_head, d_model=d_model,
                         dropout=dropout, bias=bias)).eval()


def prompt(B=2, T=3, vocab_size=11, seed=1) -> torch.Tensor:
    return torch.randint(vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


def gen(seed=0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


SAMPLED = dict(temperature=1.0)  # generate is greedy by default


# ----------------------------------------------------------------------------- architecture
def test_the_model_is_a_stack_of_attnedu_decoder_blocks_without_torch_transformer_modules():
    model = tiny(n_layer=3)
    assert len(model.blocks) == 3 and all(isinstance(b, DecoderBlock) for b in model.blocks)
    assert all(b.cross_attn is None for b in model.blocks)
    assert "nn.Transformer" not in inspect.getsource(models)
    assert not any(type(m).__name__.startswith("Transformer") for m in model.modules())


def test_output_layer_and_token_embedding_are_one_tensor():
    model = tiny()
    assert model.lm_head.weight is model.wte.weight
    names = [n for n, _ in model.named_parameters()]
    assert "wte.weight" in names and "lm_head.weight" not in names  # counted and optimised once
    _, loss = model(prompt(), prompt(seed=2))
    loss.backward()
    assert model.wte.weight.grad is model.lm_head.weight.grad  # one gradient, from both uses


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dims", [(11, 16, 2, 2, 16), (96, 64, 4, 4, 128), (5, 8, 1, 1, 4), (7, 8, 2, 2, 8, 20)])
def test_num_parameters_equals_the_formula(dims, bias):
    config = GPTConfig(*dims, bias=bias)  # vocab_size, context, n_layer, n_head, d_model[, d_ff]
    model = GPT(config)
    assert model.num_parameters() == parameter_count(config) == sum(p.numel() for p in model.parameters())
    assert model.num_parameters(non_embedding=True) == parameter_count(config, non_embedding=True) \
        == parameter_count(config) - config.context * config.d_model


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dims", [(10, 8, 1, 4), (96, 64, 4, 128), (65, 256, 6, 384), (7, 3, 2, 12)])
def test_gpt_parameter_count_counts_the_parameters_of_a_real_gpt(dims, bias):
    V, T, L, C = dims
    model = GPT(GPTConfig(vocab_size=V, context=T, n_layer=L, n_head=2 if C % 2 == 0 else 1, d_model=C, bias=bias))
    assert gpt_parameter_count(V, T, L, C, bias) == sum(p.numel() for p in model.parameters())


def test_gpt2_small_has_its_124_million_parameters():
    assert gpt_parameter_count(50257, 1024, 12, 768, True) == 124_439_808


def test_the_feed_forward_width_defaults_to_four_times_d_model_and_can_be_set():
    assert GPTConfig(vocab_size=5, context=8, n_layer=1, n_head=2, d_model=8).d_ff == 32
    model = GPT(GPTConfig(vocab_size=5, context=8, n_layer=1, n_head=2, d_model=8, d_ff=20))
    assert model.blocks[0].ff.fc1.out_features == 20 and model.blocks[0].ff.fc2.in_features == 20


def test_nanogpt_cpu_configuration_has_the_expected_parameter_count():
    # 12 C^2 per block dominates (4 * 12 * 128^2 = 786,432); nanoGPT prints "0.80M" (non-embedding)
    config = GPTConfig(vocab_size=65, context=64, n_layer=4, n_head=4, d_model=128, bias=False)
    assert parameter_count(config) == 65 * 128 + 64 * 128 + 4 * (12 * 128 ** 2 + 2 * 128) + 128 == 804_096


def test_forward_gives_logits_for_every_position_and_the_mean_cross_entropy():
    model = tiny()
    idx, targets = prompt(B=2, T=5), prompt(B=2, T=5, seed=3)
    logits, loss = model(idx, targets)
    assert logits.shape == (2, 5, 11)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1))
    torch.testing.assert_close(loss, expected)
    assert abs(loss.item() - torch.log(torch.tensor(11.0)).item()) < 0.2  # small init: near uniform
    assert model(idx)[1] is None


def test_next_token_loss_is_the_loss_the_gpt_returns_minus_the_mean_log_probability_of_the_targets():
    logits, loss = tiny()(prompt(B=3, T=8), targets := prompt(B=3, T=8, seed=4))
    torch.testing.assert_close(next_token_loss(logits, targets), loss)
    probs = torch.tensor([[[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]], dtype=torch.float64)
    by_hand = -(math.log(0.5) + math.log(0.3)) / 2
    assert math.isclose(next_token_loss(probs.log(), torch.tensor([[2, 1]])).item(), by_hand)
    uniform = next_token_loss(torch.zeros(2, 4, 96), torch.zeros(2, 4, dtype=torch.long))
    assert math.isclose(uniform.item(), math.log(96), rel_tol=1e-6)  # an untrained model's loss
    ignored = torch.cat([targets[:, :5], torch.full((3, 3), -1)], dim=1)  # -1: the position does not count
    torch.testing.assert_close(next_token_loss(logits, ignored), next_token_loss(logits[:, :5], targets[:, :5]))


def test_forward_is_causal_a_future_token_never_changes_earlier_logits():
    model = tiny()
    idx = prompt(B=1, T=8)
    changed = idx.clone()
    changed[0, 5] = (changed[0, 5] + 1) % 11
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


# ----------------------------------------------------------------------------- the KV cache
@pytest.mark.parametrize("T0, new", [(1, 15), (3, 13), (16, 0), (5, 1)])
def test_cached_and_uncached_greedy_generation_give_identical_tokens(T0, new):
    model = tiny()
    idx = prompt(T=T0)
    a = model.generate(idx, new, temperature=0.0, use_cache=True)
    b = model.generate(idx, new, temperature=0.0, use_cache=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize("options", [{}, {"top_k": 3}, {"top_p": 0.9}, {"temperature": 0.7, "top_k": 5, "top_p": 0.8}])
def test_cached_and_uncached_sampling_give_identical_tokens_from_the_same_seed(options):
    model = tiny()
    options = {**SAMPLED, **options}
    a = model.generate(prompt(), 13, use_cache=True, seed=7, **options)
    b = model.generate(prompt(), 13, use_cache=False, seed=7, **options)
    assert torch.equal(a, b)
    c = model.generate(prompt(), 13, use_cache=True, seed=8, **options)
    assert not torch.equal(a, c)  # the seed matters: the samples are not all the argmax


def test_generation_past_the_context_window_gives_the_same_tokens_with_or_without_cache():
    model = tiny(context=8)
    for temperature in (0.0, 1.0):
        a = model.generate(prompt(T=3), 20, temperature=temperature, use_cache=True, seed=1)
        b = model.generate(prompt(T=3), 20, temperature=temperature, use_cache=False, seed=1)
        assert a.shape == (2, 20) and torch.equal(a, b)


def test_a_prompt_longer_than_the_context_is_cropped_to_its_last_context_tokens():
    model = tiny(context=8)
    long = prompt(T=12)
    assert torch.equal(model.generate(long, 4), model.generate(long[:, -8:], 4))


def test_the_cache_prefills_the_prompt_then_reads_one_token_per_step():
    model = tiny()
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda mod, args, kwargs: seen.append(args[0].shape[1]), with_kwargs=True)
    model.generate(prompt(T=4), 5, temperature=0.0, use_cache=True)
    assert seen == [4, 1, 1, 1, 1]
    seen.clear()
    model.generate(prompt(T=4), 5, temperature=0.0, use_cache=False)
    assert seen == [4, 5, 6, 7, 8]


def test_generate_returns_only_the_new_tokens_and_restores_training_mode():
    model = tiny(dropout=0.1).train()
    idx = prompt(T=3)
    out = model.generate(idx, 6, seed=0, **SAMPLED)
    assert out.shape == (2, 6) and out.dtype == torch.long
    assert ((0 <= out) & (out < 11)).all()
    assert model.training
    assert model.generate(idx, 0).shape == (2, 0)


def test_generate_takes_a_list_a_1d_or_a_2d_prompt_and_answers_in_kind():
    model = tiny()
    batch = prompt(B=2, T=3)
    both = model.generate(batch, 5)  # (B, T) -> (B, n)
    assert both.shape == (2, 5)
    for row in range(2):
        one = model.generate(batch[row], 5)  # (T,) -> (n,)
        assert one.shape == (5,) and one.dtype == torch.long and torch.equal(one, both[row])
        assert torch.equal(model.generate(batch[row].tolist(), 5), one)  # a list -> (n,)


def test_greedy_decoding_is_the_default_and_appends_the_argmax_each_step():
    model = tiny()
    ids = prompt(B=1, T=4)
    new = model.generate(ids, 3)
    seq = ids
    for token in new[0]:
        with torch.no_grad():
            assert int(model(seq)[0][0, -1].argmax()) == int(token)
        seq = torch.cat([seq, token.view(1, 1)], dim=1)


def test_generated_tokens_are_an_ordinary_tensor_that_training_can_use():
    # generation runs under torch.inference_mode, whose tensors autograd refuses: the result is not one
    model = tiny()
    out = torch.cat([prompt(T=2), model.generate(prompt(T=2), 6, seed=0, **SAMPLED)], dim=1)
    assert not out.is_inference() and not torch.is_inference_mode_enabled()
    model.train()
    _, loss = model(out[:, :-1], out[:, 1:])
    loss.backward()  # the embedding saves the ids for the backward pass
    assert model.wte.weight.grad is not None


def test_generation_evaluation_and_training_mix_freely_and_a_weight_update_is_seen_at_once():
    model = tiny()
    before = model.generate(prompt(), 8, temperature=0.0, use_cache=False)  # keeps fused weights, made in inference mode
    with torch.no_grad():
        logits, _ = model(prompt())  # reads them outside inference mode
    model.train()
    _, loss = model(prompt(), prompt(seed=2))
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))  # an in-place update, as an optimizer makes
        changed, _ = model(prompt())
    assert not torch.allclose(changed, logits)
    fresh = GPT(model.config).eval()
    fresh.load_state_dict(model.state_dict())
    for use_cache in (True, False):  # nothing stale is reused: the same tokens as a fresh copy gives
        assert torch.equal(model.generate(prompt(), 8, temperature=0.0, use_cache=use_cache),
                           fresh.generate(prompt(), 8, temperature=0.0, use_cache=use_cache))
    assert before.shape == (2, 8)


def test_the_cache_keeps_the_fused_projection_for_its_lifetime_and_only_without_autograd():
    attn = tiny().blocks[0].self_attn
    x = torch.randn(1, 1, 16)
    cache = KVCache()
    with torch.no_grad():
        first, _ = attn(x, x, x, need_weights=False, cache=cache)
        kept = cache.projection
        assert kept is not None and kept[0].shape == (48, 16)
        attn(x, x, x, need_weights=False, cache=cache)
        assert cache.projection is kept and len(cache) == 2  # reused, not rebuilt
    grad_cache = KVCache()
    out, _ = attn(x, x, x, need_weights=False, cache=grad_cache)
    assert grad_cache.projection is None and out.requires_grad  # under autograd: built anew, gradients flow
    torch.testing.assert_close(out.detach(), first)


def test_the_cache_returns_every_key_and_value_appended_in_order():
    cache = KVCache()
    chunks = [torch.randn(2, 3, t, 4) for t in (5, 1, 1, 12, 1)]  # a prefill, steps, a longer chunk
    for i, k in enumerate(chunks):
        keys, values = cache.update(k, 2 * k)
        want = torch.cat(chunks[: i + 1], dim=2)
        assert torch.equal(keys, want) and torch.equal(values, 2 * want)
        assert torch.equal(cache.k, want) and len(cache) == want.shape[2]


def test_generate_is_reproducible_with_a_seed():
    model = tiny()
    assert torch.equal(model.generate(prompt(), 10, seed=3, **SAMPLED), model.generate(prompt(), 10, seed=3, **SAMPLED))


# ----------------------------------------------------------------------------- sampling
def test_top_k_keeps_exactly_the_k_largest_logits():
    logits = torch.tensor([[0.1, 2.0, -1.0, 3.0, 0.5], [5.0, 4.0, 3.0, 2.0, 1.0]])
    out = top_k_filter(logits, 2)
    assert torch.isinf(out).sum(dim=-1).tolist() == [3, 3]
    assert torch.equal(out[0].isfinite(), torch.tensor([False, True, False, True, False]))
    assert torch.equal(out[out.isfinite()], logits[out.isfinite()])  # survivors unchanged


def test_top_k_keeps_exactly_k_even_when_logits_tie_and_keeps_all_when_k_covers_the_vocabulary():
    assert top_k_filter(torch.zeros(1, 6), 2).isfinite().sum() == 2
    logits = torch.randn(3, 6)
    assert torch.equal(top_k_filter(logits, 6), logits) and torch.equal(top_k_filter(logits, 100), logits)


def test_top_p_keeps_the_smallest_nucleus_whose_probability_reaches_p():
    probs = torch.tensor([0.15, 0.5, 0.05, 0.3])  # sorted: 0.5, 0.3, 0.15, 0.05 (cumulative 0.5, 0.8, 0.95, 1)
    logits = probs.log()[None]
    kept = lambda p: top_p_filter(logits, p).isfinite()[0].tolist()  # noqa: E731
    assert kept(0.4) == [False, True, False, False]
    assert kept(0.5) == [False, True, False, False]
    assert kept(0.6) == [False, True, False, True]
    assert kept(0.9) == [True, True, False, True]
    assert kept(0.97) == [True, True, True, True]
    assert kept(1.0) == [True, True, True, True]


def test_top_p_agrees_with_a_brute_force_nucleus():
    g = gen(5)
    for _ in range(50):
        logits = torch.randn(1, 9, generator=g) * 2
        p = torch.rand(1, generator=g).item() * 0.98 + 0.01
        probs = torch.softmax(logits[0], -1).tolist()
        order = sorted(range(9), key=lambda i: -probs[i])
        total, nucleus = 0.0, set()
        for i in order:  # the smallest prefix of the most likely tokens with mass >= p
            nucleus.add(i)
            total += probs[i]
            if total >= p:
                break
        got = set(top_p_filter(logits, p).isfinite()[0].nonzero().flatten().tolist())
        assert got == nucleus
        assert torch.equal(top_p_filter(logits, p)[0, list(got)], logits[0, list(got)])  # the kept logits unchanged


def test_sampling_only_ever_draws_tokens_that_survive_the_filters():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0, 2.5]]).expand(2000, 5)
    draws = sample_next(logits, top_k=2, generator=gen())
    assert set(draws.flatten().tolist()) == {1, 4}
    draws = sample_next(logits, top_p=0.5, generator=gen())
    assert set(draws.flatten().tolist()) <= {1, 4}


def test_sampling_at_temperature_one_follows_the_softmax():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]])
    draws = sample_next(logits.expand(40_000, 4), generator=gen()).flatten()
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(freq, torch.softmax(logits[0], -1), atol=0.01, rtol=0)


def test_temperature_towards_zero_approaches_greedy_decoding():
    g = gen(2)
    logits = torch.stack([0.5 * torch.randperm(7, generator=g).float() for _ in range(500)])  # gaps >= 0.5
    greedy = logits.argmax(-1, keepdim=True)
    assert torch.equal(sample_next(logits, temperature=0.0), greedy)
    agreement = [(sample_next(logits, temperature=t, generator=gen()) == greedy).float().mean().item()
                 for t in (2.0, 1.0, 0.3, 0.01)]
    assert agreement == sorted(agreement) and agreement[-1] == 1.0
    model = tiny()
    assert torch.equal(model.generate(prompt(), 10, temperature=1e-4, seed=0),
                       model.generate(prompt(), 10, temperature=0.0))


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("dtype", [None, torch.float16])
def test_a_saved_model_loads_back_with_its_config_extras_and_tied_weights(tmp_path, dtype):
    model = tiny()
    path = tmp_path / "gpt.pt"
    model.save(path, dtype=dtype, vocab="abcdefghijk", val_loss=1.5, torch_version=torch.__version__)
    loaded, extra = GPT.load(path)  # weights_only: plain types only
    assert loaded.config == model.config
    assert extra == {"vocab": "abcdefghijk", "val_loss": 1.5, "torch_version": str(torch.__version__)}
    assert loaded.lm_head.weight is loaded.wte.weight and not loaded.training
    tol = dict(atol=0, rtol=0) if dtype is None else dict(atol=1e-3, rtol=1e-2)
    torch.testing.assert_close(loaded(prompt())[0], model(prompt())[0], **tol)


def test_the_shipped_checkpoint_is_small_loads_and_says_how_to_reproduce_it():
    assert SHIPPED_CHECKPOINT.is_file(), f"{SHIPPED_CHECKPOINT} is missing: see benchmarks/gpt_train.py"
    assert SHIPPED_CHECKPOINT.stat().st_size <= 5 * 1024 * 1024
    model, notes = GPT.load(SHIPPED_CHECKPOINT)
    assert model.config == GPTConfig(vocab_size=96, context=64, n_layer=4, n_head=4, d_model=128, d_ff=512,
                                     dropout=0.0, bias=False)  # the model of chapter 6
    assert len(notes["vocab"]) == 96 and notes["iters"] == 2000 and notes["val_loss"] < 1.7
    assert notes["command"].endswith("benchmarks/gpt_train.py --threads 1 --save attnedu/data/gpt-python-2000.pt")
    idx = torch.tensor([[notes["vocab"].index(c) for c in "def "]])
    out = model.generate(idx, 20, temperature=0.0)
    assert out.shape == (1, 20)


def test_float16_checkpoints_are_half_the_size(tmp_path):
    model = tiny(d_model=64)
    model.save(tmp_path / "a.pt")
    model.save(tmp_path / "b.pt", dtype=torch.float16)
    a, b = (tmp_path / "a.pt").stat().st_size, (tmp_path / "b.pt").stat().st_size
    assert b < 0.6 * a
    assert a < 4 * model.num_parameters() * 1.1  # the tied matrix is stored once


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kwargs, words", [
    (dict(d_model=30, n_head=4), "not divisible by n_head"),
    (dict(context=0), "context must be a positive integer"),
    (dict(vocab_size=2.5), "vocab_size"),
    (dict(d_ff=0), "d_ff must be a positive integer"),
    (dict(dropout=1.0), "dropout"),
])
def test_a_bad_config_raises_a_value_error_naming_the_field(kwargs, words):
    base = dict(vocab_size=5, context=8, n_layer=1, n_head=2, d_model=8)
    with pytest.raises(ValueError, match=words):
        GPTConfig(**{**base, **kwargs})


@pytest.mark.parametrize("idx, words", [
    (torch.zeros(1, 17, dtype=torch.long), r"\(1, 17\).*context=16"),
    (torch.zeros(5, dtype=torch.long), r"ids\[None\]"),
    (torch.zeros(1, 3), "torch.long"),
    (torch.full((1, 3), 11), r"outside \[0, vocab_size=11\)"),
    (torch.zeros(1, 0, dtype=torch.long), "at least one token"),
])
def test_bad_token_ids_raise_a_value_error_naming_the_shape_or_values(idx, words):
    with pytest.raises(ValueError, match=words):
        tiny()(idx)


def test_targets_of_the_wrong_shape_raise_a_value_error():
    with pytest.raises(ValueError, match=r"targets must have the shape of ids \(2, 3\), got \(2, 4\)"):
        tiny()(prompt(), prompt(T=4))


@pytest.mark.parametrize("kwargs, words", [
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(temperature=-0.5), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(top_k=0), "top_k"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(seed=-1), "seed"),
    (dict(ids=[]), "non-empty"),
    (dict(ids=[[0.5, 1.0]]), "integer token ids"),
    (dict(ids=[0, 11]), r"outside \[0, 11\)"),
])
def test_bad_generation_options_raise_a_value_error_before_generating(kwargs, words):
    with pytest.raises(ValueError, match=words):
        tiny().generate(**{"ids": prompt(), "max_new_tokens": 3, **kwargs})


def test_sampling_helpers_check_their_inputs():
    with pytest.raises(ValueError, match=r"\(B, V\)"):
        sample_next(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="floating-point"):
        top_k_filter(torch.zeros(2, 3, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="GPTConfig"):
        parameter_count({"d_model": 8})


@pytest.mark.parametrize("call, words", [
    (lambda: next_token_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)), r"logits must be \(B, T, V\)"),
    (lambda: next_token_loss(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long)), r"targets \(B, T\)"),
    (lambda: next_token_loss(torch.zeros(1, 2, 4), torch.tensor([[0, 4]])), r"targets must be in \[0, V=4\)"),
    (lambda: next_token_loss(torch.zeros(1, 2, 4), torch.zeros(1, 2)), "targets must be integer token ids"),
    (lambda: gpt_parameter_count(0, 8, 1, 4), "vocab_size must be a positive integer"),
    (lambda: gpt_parameter_count(10, 8, 1, 4.0), "d_model must be a positive integer"),
    (lambda: top_p_filter(torch.zeros(4), 0.0), r"top_p must be in \(0, 1\]"),
])
def test_the_loss_the_count_and_top_p_name_a_bad_argument(call, words):
    with pytest.raises(ValueError, match=words):
        call()


def test_greedy_generation_leaves_the_global_random_state_alone():
    model = tiny()
    state = torch.get_rng_state()
    model.generate(prompt(), 5, temperature=0.0)
    assert torch.equal(torch.get_rng_state(), state)


def test_a_checkpoint_whose_config_has_unknown_fields_is_refused_with_their_names(tmp_path):
    model = tiny()
    path = tmp_path / "old.pt"
    model.save(path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["config"]["n_embd"] = checkpoint["config"].pop("d_model")  # another library's name
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=r"\['n_embd'\]"):
        GPT.load(path)


# ----------------------------------------------------------------------------- the GPT's own attention (chapter 6)
from attnedu.functional import causal_mask  # noqa: E402
from attnedu.models import CausalSelfAttention, kv_cache_step  # noqa: E402
from attnedu.nn import MultiHeadAttention  # noqa: E402


def own(seed=0, bias=True, **sizes) -> GPT:
    """``tiny`` built around CausalSelfAttention."""
    torch.manual_seed(seed)
    sizes = {"vocab_size": 11, "context": 16, "n_layer": 2, "n_head": 2, "d_model": 16, "bias": bias, **sizes}
    return GPT(GPTConfig(**sizes), attention=CausalSelfAttention).eval()


@pytest.mark.parametrize("bias", [True, False])
def test_causal_self_attention_is_the_blocks_multi_head_attention_with_the_causal_mask(bias):
    torch.manual_seed(0)
    mha, x = MultiHeadAttention(12, 3, bias=bias), torch.randn(2, 7, 12)
    ours = CausalSelfAttention(12, 3, bias=bias)
    assert ours.load_state_dict(mha.state_dict()) is not None  # the same names and shapes
    expected, _ = mha(x, x, x, attn_mask=~torch.from_numpy(causal_mask(7)), need_weights=False)
    torch.testing.assert_close(ours(x), expected)


def test_causal_self_attention_is_causal_and_gradients_reach_its_four_layers():
    torch.manual_seed(0)
    attn, x = CausalSelfAttention(8, 2), torch.randn(1, 6, 8)
    changed = x.clone()
    changed[:, 4:] += 1.0
    torch.testing.assert_close(attn(changed)[:, :4], attn(x)[:, :4])
    attn(x).sum().backward()
    assert all(getattr(attn, name).weight.grad is not None for name in ("q_proj", "k_proj", "v_proj", "out_proj"))


@pytest.mark.parametrize("bias", [True, False])
def test_kv_cache_steps_one_at_a_time_give_the_attention_of_the_whole_sequence(bias):
    torch.manual_seed(0)
    attn, x = CausalSelfAttention(16, 4, bias=bias), torch.randn(3, 9, 16)
    cache, outs = None, []
    for t in range(9):
        out, cache = kv_cache_step(attn, x[:, t:t + 1], cache)
        assert out.shape == (3, 1, 16) and cache[0].shape == cache[1].shape == (3, 4, t + 1, 4)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, dim=1), attn(x))
    H, d = 4, 4
    torch.testing.assert_close(cache[0], attn.k_proj(x).view(3, 9, H, d).transpose(1, 2))  # the keys, in order


def test_a_gpt_built_around_causal_self_attention_has_the_default_gpts_parameters_and_computes_the_same():
    default, ours = tiny(), own(seed=1)
    assert [(k, v.shape) for k, v in default.state_dict().items()] == [(k, v.shape) for k, v in ours.state_dict().items()]
    ours.load_state_dict(default.state_dict())
    ids = prompt(B=3, T=10)
    torch.testing.assert_close(ours(ids)[0], default(ids)[0])
    assert ours.lm_head.weight is ours.wte.weight and ours.num_parameters() == parameter_count(ours.config)
    for options in ({}, {"temperature": 1.0, "top_k": 4, "seed": 2}):
        tokens = default.generate(ids, 12, **options)
        assert torch.equal(ours.generate(ids, 12, use_cache=True, **options), tokens)
        assert torch.equal(ours.generate(ids, 12, use_cache=False, **options), tokens)


def test_the_shipped_checkpoint_loads_into_a_gpt_around_causal_self_attention():
    shipped, _ = GPT.load(SHIPPED_CHECKPOINT)
    ours = GPT(shipped.config, attention=CausalSelfAttention)
    ours.load_state_dict(shipped.state_dict())
    ids = torch.tensor([[10, 20, 30, 40, 50]])
    torch.testing.assert_close(ours.eval()(ids)[0], shipped(ids)[0], rtol=1e-4, atol=1e-5)


def test_a_gpt_generates_with_the_kv_step_it_is_given_and_steps_one_token_at_a_time():
    calls = []

    def counting_step(attn, x_new, cache):
        calls.append((x_new.shape[1], 0 if cache is None else cache[0].shape[2]))
        return kv_cache_step(attn, x_new, cache)

    model = own()
    model.kv_step = counting_step
    assert model.kv_step is counting_step and all(block.kv_step is counting_step for block in model.blocks)
    new = model.generate([1, 2, 3], 4)
    assert torch.equal(new, own().generate([1, 2, 3], 4, use_cache=False))
    prefill = [(1, 0), (1, 1), (1, 2)] * 2  # each block steps the prompt in, one token at a time
    assert calls == prefill + [(1, 3), (1, 3), (1, 4), (1, 4), (1, 5), (1, 5)]  # then one new token per step


def test_generation_with_causal_self_attention_past_the_context_gives_the_same_tokens():
    model = own(context=8)
    assert torch.equal(model.generate(prompt(T=5), 12), model.generate(prompt(T=5), 12, use_cache=False))


def test_the_default_gpt_is_unchanged_by_the_attention_option():
    assert GPT(GPTConfig(vocab_size=5, context=4, n_layer=1, n_head=1, d_model=4)).kv_step is None
    assert all(type(block) is DecoderBlock for block in tiny().blocks)
    torch.manual_seed(0)
    a = GPT(GPTConfig(vocab_size=11, context=16, n_layer=2, n_head=2, d_model=16))
    torch.manual_seed(0)
    b = GPT(GPTConfig(vocab_size=11, context=16, n_layer=2, n_head=2, d_model=16), attention=None)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


class _NoOutProj(torch.nn.Module):
    def __init__(self, d_model, n_head, bias=True):
        super().__init__()
        self.n_head = n_head
        self.q_proj = self.k_proj = self.v_proj = torch.nn.Linear(d_model, d_model, bias=bias)


@pytest.mark.parametrize("call, words", [
    (lambda: CausalSelfAttention(10, 3), "d_model=10 is not divisible by n_head=3"),
    (lambda: CausalSelfAttention(8, 2)(torch.zeros(2, 3, 6)), r"x must be \(B, T, 8\), got \(2, 3, 6\)"),
    (lambda: kv_cache_step(CausalSelfAttention(8, 2), torch.zeros(1, 2, 8)), r"x_new must be \(B, 1, 8\)"),
    (lambda: kv_cache_step(CausalSelfAttention(8, 2), torch.zeros(1, 1, 8), (torch.zeros(1, 4, 3, 2),) * 2),
     r"cache must be two \(B, H, t, d_head\) = \(1, 2, t, 4\) tensors"),
    (lambda: GPT(GPTConfig(5, 4, 1, 2, 8), attention=_NoOutProj), r"needs `out_proj = nn.Linear\(8, 8, bias=True\)`"),
    (lambda: GPT(GPTConfig(5, 4, 1, 2, 8), kv_step=kv_cache_step), "pass attention=... too"),
    (lambda: GPT(GPTConfig(5, 4, 1, 2, 8), attention="CausalSelfAttention"), "attention must be a class"),
    (lambda: GPT(GPTConfig(5, 4, 1, 2, 8), attention=CausalSelfAttention, kv_step=3), "kv_step must be a function"),
    (lambda: setattr(tiny(), "kv_step", kv_cache_step), "only a GPT built with attention"),
])
def test_the_gpts_own_attention_names_a_bad_argument(call, words):
    with pytest.raises(ValueError, match=words):
        call()
