"""Chapter 8's captioner: a ViT encoder and a decoder with cross-attention that writes "a red circle above a blue
square". The shipped checkpoint captions scenes of combinations it never saw, and its shape words look at their
own object; its recipe still starts as the run that made it did."""

from __future__ import annotations

import math

import pytest
import torch

from attnedu.vision import checkpoints
from attnedu.vision.captions import (Captioner, CaptionerConfig, attention_to_object, caption_accuracy, caption_loss,
                                     object_patches, shape_attention)
from attnedu.vision.scenes import VOCAB, Object, caption, draw, scenes

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(seed=0) -> Captioner:
    torch.manual_seed(seed)
    return Captioner(CaptionerConfig(d_model=16, n_head=2, n_enc_layer=1, n_dec_layer=1)).eval()


@pytest.fixture(scope="module")
def shipped() -> Captioner:
    return checkpoints.load("captioner")


@pytest.fixture(scope="module")
def held_out():
    return scenes(300, split="held_out", seed=1)


# ----------------------------------------------------------------------------- shapes and validation
def test_forward_gives_next_word_logits_for_every_position():
    model, data = tiny(), scenes(3, seed=0)
    ids = VOCAB.batch(data.captions)  # (3, L)
    logits = model(data.images, ids)
    assert logits.shape == (3, ids.shape[1], len(VOCAB))
    assert model.encode(data.images).shape == (3, 36, 16)  # one vector per 4x4 patch


def test_the_decoder_is_causal_a_later_word_does_not_change_earlier_logits():
    model, data = tiny(), scenes(2, seed=0)
    ids = VOCAB.batch(data.captions)
    changed = ids.clone()
    changed[:, -1] = VOCAB.stoi["red"]
    a, b = model(data.images, ids), model(data.images, changed)
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-6)


def test_the_loss_ignores_padding_and_starts_near_log_vocab():
    model, data = tiny(), scenes(8, seed=0)
    ids = VOCAB.batch(data.captions)
    padded = VOCAB.batch(data.captions, length=16)
    loss = caption_loss(model, (data.images, ids))
    assert torch.allclose(loss, caption_loss(model, (data.images, padded)), atol=1e-6)
    assert abs(loss.item() - math.log(len(VOCAB))) < 0.5


@pytest.mark.parametrize("shape", [(2, 24, 24), (2, 1, 24, 24), (2, 3, 32, 32)])
def test_wrong_image_shapes_are_refused_with_the_shape_expected(shape):
    model = tiny()
    with pytest.raises(ValueError, match=r"\(B, 3, 24, 24\)"):
        model.generate(torch.zeros(shape))
    with pytest.raises(ValueError, match=r"\(B, 3, 24, 24\)"):
        model(torch.zeros(shape), torch.ones(2, 3, dtype=torch.long))


def test_wrong_ids_are_refused():
    model, images = tiny(), torch.zeros(2, 3, 24, 24)
    with pytest.raises(ValueError, match="max_len=16"):
        model(images, torch.ones(2, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B=2, L\)"):
        model(images, torch.ones(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab_size"):
        model(images, torch.full((2, 4), 99))
    with pytest.raises(ValueError, match="integer word ids"):
        model(images, torch.ones(2, 4))


def test_generate_is_batched_and_gives_one_caption_per_image_with_weights_rows_that_sum_to_one():
    model, data = tiny(), scenes(5, seed=0)
    captions, weights = model.generate(data.images, need_weights=True)
    assert len(captions) == 5 and all(isinstance(c, str) for c in captions)
    assert weights.shape[0] == 5 and weights.shape[2] == 36 and weights.shape[1] <= 15
    for b, cap in enumerate(captions):
        n = len(cap.split()) + 1  # its words and its <eos> step (an untrained model may not write <eos>)
        rows = weights[b, :min(n, weights.shape[1])]
        assert torch.allclose(rows.sum(-1), torch.ones(len(rows)), atol=1e-5)
        assert (weights[b, n:] == 0).all()  # after <eos>: padding
    assert model.generate(data.images) == captions
    one = [model.generate(data.images[i:i + 1])[0] for i in range(5)]
    assert one == captions  # batching changes nothing


def test_object_patches_are_the_four_patches_of_its_cell():
    assert object_patches(Object("red", "circle", 0, 0)) == [0, 1, 6, 7]
    assert object_patches(Object("red", "circle", 2, 1)) == [26, 27, 32, 33]
    row = torch.zeros(36)
    row[[26, 27]] = 0.25
    row[0] = 0.5
    assert attention_to_object(row, Object("blue", "square", 2, 1)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"\(36,\)"):
        attention_to_object(torch.ones(35), Object("blue", "square", 2, 1))


def test_accuracy_refuses_what_is_not_scenes():
    with pytest.raises(ValueError, match="Scenes"):
        caption_accuracy(tiny(), torch.zeros(1, 3, 24, 24))


# ----------------------------------------------------------------------------- the shipped checkpoint
def test_shipped_captioner_fits_in_5_mb_and_its_record_says_what_it_measured():
    assert checkpoints.path("captioner").stat().st_size <= 5 * 2**20
    metrics = checkpoints.record("captioner")["metrics"]
    assert metrics["held_out_exact_match"] >= 0.90
    assert metrics["shape_attention_held_out"] > 3 * metrics["attention_chance"]


def test_shipped_captioner_captions_held_out_combinations(shipped, held_out):
    assert caption_accuracy(shipped, held_out) >= 0.90


def test_shipped_captioner_captions_training_combinations(shipped):
    assert caption_accuracy(shipped, scenes(200, split="train", seed=3)) >= 0.95


def test_shipped_shape_words_look_at_their_own_object(shipped, held_out):
    assert shape_attention(shipped, held_out) >= 0.35  # 0.46 measured; chance is 4/36 = 0.11
    captions, weights = shipped.generate(held_out.images[:100], need_weights=True)
    peaks = []
    for cap, true, obs, w in zip(captions, held_out.captions, held_out.objects, weights):
        if cap == true:
            at = [t for t, word in enumerate(cap.split()) if word in ("circle", "square", "triangle")]
            peaks += [int(w[t].argmax()) in object_patches(ob) for t, ob in zip(at, obs)]
    assert sum(peaks) / len(peaks) >= 0.85  # the heaviest patch is the object's own (0.97 measured)


def test_shipped_circle_attends_most_to_the_circle(shipped):
    obs = (Object("red", "square", 1, 0), Object("blue", "circle", 1, 2))
    captions, weights = shipped.generate(draw(obs)[None], need_weights=True)  # no jitter: the cells' centres
    assert captions == [caption(obs)]
    t = captions[0].split().index("circle")
    assert int(weights[0, t].argmax()) in object_patches(obs[1])


def test_recipe_still_starts_as_the_shipped_run_did():
    assert checkpoints.first_losses("captioner") == pytest.approx(checkpoints.record("captioner")["first_losses"],
                                                                  rel=1e-4)
