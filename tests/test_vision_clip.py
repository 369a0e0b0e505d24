"""Chapter 8's CLIP: captions from templates, two encoders in one space, the symmetric contrastive loss,
and zero-shot classification of held-out digits with held-out prompts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attnedu.train import MAX_SECONDS_ENV
from attnedu.vision import clip
from attnedu.vision.clip import (CLIP, TEST_TEMPLATES, TRAIN_TEMPLATES, VOCAB, CLIPConfig, contrastive_loss, prompts,
                                 similarity, text_to_image_recall_at_1, tokenize, train_clip, zero_shot_accuracy)
from attnedu.vision.images import DIGIT_NAMES, digits_split


@pytest.fixture(scope="module")
def split():
    return digits_split()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CLIP().eval()


@pytest.fixture(scope="module")
def trained():
    """The chapter's run: the reference loss, the default settings, one thread, no time cap."""
    mp = pytest.MonkeyPatch()
    mp.delenv(MAX_SECONDS_ENV, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield train_clip(progress=False)
    finally:
        torch.set_num_threads(threads)
        mp.undo()


def _words(templates) -> set[str]:
    return {w for t in templates for w in t.replace("{}", " ").split()}


# ----------------------------------------------------------------------------- the captions
def test_test_templates_are_new_sentences_made_of_training_words():
    assert 6 <= len(TRAIN_TEMPLATES) <= 10 and 2 <= len(TEST_TEMPLATES) <= 4
    assert not set(TEST_TEMPLATES) & set(TRAIN_TEMPLATES)
    training_words = {w for d in range(10) for caption in prompts(TRAIN_TEMPLATES, d) for w in caption.split()}
    for template in TEST_TEMPLATES:
        assert set(template.format("seven").split()) <= training_words, template


def test_every_template_has_one_slot_for_the_digit():
    for template in TRAIN_TEMPLATES + TEST_TEMPLATES:
        assert template.count("{}") == 1


def test_prompts_put_the_digits_name_in_each_template():
    assert prompts(["a handwritten {}", "the digit {} in grey pixels"], 7) == [
        "a handwritten seven", "the digit seven in grey pixels"]
    assert len(prompts(TEST_TEMPLATES, 0)) == len(TEST_TEMPLATES)


def test_the_vocabulary_holds_every_templates_words_and_every_digit():
    assert VOCAB.itos[0] == "<pad>"
    assert set(VOCAB.itos[1:]) == _words(TRAIN_TEMPLATES + TEST_TEMPLATES) | set(DIGIT_NAMES)
    for d in range(10):
        for caption in prompts(TRAIN_TEMPLATES + TEST_TEMPLATES, d):
            assert VOCAB.decode(VOCAB.encode(caption)) == caption


def test_tokenize_pads_to_the_longest_text_with_zeros():
    ids = tokenize(["a handwritten seven", "a photo of the digit two"])
    assert ids.shape == (2, 6) and ids.dtype == torch.long
    assert ids[0, 3:].tolist() == [0, 0, 0] and (ids[1] != 0).all()
    assert tokenize(["a handwritten seven"], length=10).shape == (1, 10)


# ----------------------------------------------------------------------------- the model
def test_encoders_give_unit_vectors_of_d_embed(model, split):
    images = split.test_images[:5]
    ids = tokenize(prompts(TRAIN_TEMPLATES[:5], 3))
    img, txt = model.encode_image(images), model.encode_text(ids)
    assert img.shape == (5, model.config.d_embed) and txt.shape == (5, model.config.d_embed)
    assert torch.allclose(img.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.allclose(txt.norm(dim=1), torch.ones(5), atol=1e-5)


def test_forward_is_the_scaled_similarity_matrix(model, split):
    images, ids = split.test_images[:4], tokenize(prompts(TRAIN_TEMPLATES[:4], 1))
    logits = model(images, ids)
    assert logits.shape == (4, 4)
    expected = math.exp(model.logit_scale.item()) * model.encode_image(images) @ model.encode_text(ids).T
    assert torch.allclose(logits, expected, atol=1e-5)


def test_the_temperature_starts_as_clips():
    assert math.isclose(CLIP().logit_scale.item(), math.log(1 / 0.07), rel_tol=1e-6)
    assert math.isclose(CLIP().scale().item(), 1 / 0.07, rel_tol=1e-5)


def test_padding_does_not_change_a_texts_embedding(model):
    short, padded = tokenize(["a handwritten seven"]), tokenize(["a handwritten seven"], length=12)
    assert torch.allclose(model.encode_text(short), model.encode_text(padded), atol=1e-5)


def test_the_image_encoder_is_a_vit_read_at_its_class_token(model):
    vit = model.image_encoder.vit
    assert vit.head is None and vit.cls is not None


# ----------------------------------------------------------------------------- the loss
def test_contrastive_loss_on_two_pairs_by_hand():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # logits = 2 * image @ text.T = [[2, 1.2], [0, 1.6]]; the right pairs are on the diagonal
    rows = math.log(1 + math.exp(1.2 - 2)) + math.log(1 + math.exp(0 - 1.6))  # image -> text
    cols = math.log(1 + math.exp(0 - 2)) + math.log(1 + math.exp(1.2 - 1.6))  # text -> image
    loss = contrastive_loss(image, text, torch.tensor(math.log(2.0)))
    assert loss.dim() == 0
    assert math.isclose(loss.item(), (rows / 2 + cols / 2) / 2, rel_tol=1e-6)


@pytest.mark.parametrize("B", [1, 2, 7, 64])
def test_contrastive_loss_is_log_B_when_all_similarities_are_equal(B):
    same = F.normalize(torch.ones(B, 8), dim=1)
    assert math.isclose(contrastive_loss(same, same, torch.tensor(2.7)).item(), math.log(B), abs_tol=1e-5)


def test_contrastive_loss_is_symmetric_in_images_and_texts():
    g = torch.Generator().manual_seed(0)
    image = F.normalize(torch.randn(16, 8, generator=g), dim=1)
    text = F.normalize(torch.randn(16, 8, generator=g), dim=1)
    assert math.isclose(contrastive_loss(image, text, 1.5).item(), contrastive_loss(text, image, 1.5).item(),
                        rel_tol=1e-6)


def test_contrastive_loss_falls_as_the_pairs_align():
    g = torch.Generator().manual_seed(1)
    image = F.normalize(torch.randn(8, 16, generator=g), dim=1)
    noise = torch.randn(8, 16, generator=g)
    losses = [contrastive_loss(image, F.normalize(image + s * noise, dim=1), math.log(10)).item() for s in (4, 1, 0)]
    assert losses[0] > losses[1] > losses[2]


def test_the_temperature_learns_through_the_loss(model, split):
    images, ids = split.train_images[:8], tokenize(prompts(TRAIN_TEMPLATES[:8], 4))
    model.zero_grad()
    contrastive_loss(model.encode_image(images), model.encode_text(ids), model.logit_scale).backward()
    assert model.logit_scale.grad is not None and model.logit_scale.grad.abs() > 0
    model.zero_grad()


# ----------------------------------------------------------------------------- training and measuring
def test_train_clip_reaches_the_zero_shot_target(trained, split):
    model, history = trained
    assert not history.stopped_early and len(history.loss) == 200
    assert history.loss[0] > 4.0  # chance is log(128) = 4.85
    assert sum(history.loss[-20:]) / 20 < 3.0  # about 2.6: ~13 images of each digit share a batch
    accuracy = zero_shot_accuracy(model, split.test_images, split.test_labels)  # held-out images and prompts
    assert accuracy >= 0.90  # the issue asks for 0.80; 0.97 when measured
    assert history.zero_shot[0] < 0.3 and math.isclose(history.zero_shot[-1], accuracy)


def test_each_prompt_retrieves_its_digit_from_a_gallery_of_ten(trained, split):
    model, _ = trained
    assert text_to_image_recall_at_1(model, split.test_images, split.test_labels) >= 0.85  # chance: 0.1


def test_a_caption_is_most_similar_to_an_image_of_its_digit(trained, split):
    model, _ = trained
    images = torch.stack([split.test_images[split.test_labels == d][0] for d in range(10)])  # one of each digit
    sims = similarity(model, images, prompts(["a photo of a {} written by hand"], 7) + ["a handwritten three"])
    assert sims.shape == (10, 2) and sims.abs().max() <= 1 + 1e-5
    assert sims[:, 0].argmax() == 7 and sims[:, 1].argmax() == 3


def test_train_clip_trains_with_any_loss_of_the_same_signature(monkeypatch):
    monkeypatch.delenv(MAX_SECONDS_ENV, raising=False)
    seen = []

    def learners_loss(image_emb, text_emb, logit_scale):  # as a learner might write it
        seen.append((tuple(image_emb.shape), tuple(text_emb.shape), logit_scale.dim()))
        logits = logit_scale.exp() * image_emb @ text_emb.T
        targets = torch.arange(len(logits))
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2

    _, history = train_clip(learners_loss, iters=3, progress=False)
    d = CLIPConfig().d_embed
    assert seen == [((128, d), (128, d), 0)] * 3
    reference = train_clip(iters=3, progress=False)[1]
    assert history.loss == pytest.approx(reference.loss, rel=1e-5)


def test_train_clip_honours_the_time_cap(monkeypatch):
    monkeypatch.setenv(MAX_SECONDS_ENV, "0")
    _, history = train_clip(iters=50, progress=False)
    assert history.stopped_early and len(history.loss) == 1


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("call, match", [
    (lambda: tokenize(["a handwritten 7"]), "not in the vocabulary"),
    (lambda: tokenize([""]), "at least one word"),
    (lambda: tokenize(["a photo of the digit two"], length=3), "more than length=3"),
    (lambda: prompts(TRAIN_TEMPLATES, 10), "from 0 to 9"),
    (lambda: prompts(["a handwritten digit"], 1), r"exactly one '\{\}'"),
    (lambda: prompts("a handwritten {}", 1), "wrap it"),
    (lambda: contrastive_loss(torch.zeros(4, 8), torch.zeros(3, 8), 0.0), r"\(4, 8\).*\(3, 8\)"),
    (lambda: contrastive_loss(torch.zeros(4), torch.zeros(4), 0.0), r"\(B, d\)"),
    (lambda: contrastive_loss(torch.zeros(4, 8), torch.zeros(4, 8), torch.zeros(2)), "one number"),
    (lambda: contrastive_loss(torch.zeros(0, 8), torch.zeros(0, 8), 0.0), "empty batch"),
    (lambda: train_clip(iters=0, progress=False), "iters must be a positive integer"),
    (lambda: train_clip(loss_fn="infonce", progress=False), "loss_fn must be a function"),
    (lambda: CLIPConfig(d_model=30, n_head=4), "not divisible"),
])
def test_wrong_inputs_are_refused_with_a_reason(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_the_model_refuses_wrong_shapes(model, split):
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\), got \(3, 8, 8\): add the channel axis"):
        model.encode_image(split.test_images[:3, 0])
    with pytest.raises(ValueError, match="at most context=12"):
        model.encode_text(torch.ones(2, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="all padding"):
        model.encode_text(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 30\)"):
        model.encode_text(torch.full((1, 3), 99))
    with pytest.raises(ValueError, match="3 images but 2 texts"):
        model(split.test_images[:3], tokenize(["a handwritten one", "a handwritten two"]))


def test_the_measures_refuse_wrong_labels(model, split):
    images, labels = split.test_images, split.test_labels
    with pytest.raises(ValueError, match="one per image"):
        zero_shot_accuracy(model, images, labels[:-1])
    with pytest.raises(ValueError, match="from 0 to 9"):
        zero_shot_accuracy(model, images[:2], torch.tensor([3, 12]))
    with pytest.raises(ValueError, match=r"none of \[2, 3, 4, 5, 6, 7, 8, 9\]"):
        text_to_image_recall_at_1(model, images[labels < 2], labels[labels < 2])
    with pytest.raises(ValueError, match="n_galleries"):
        text_to_image_recall_at_1(model, images, labels, n_galleries=0)
    with pytest.raises(ValueError, match="must be a CLIP"):
        zero_shot_accuracy(torch.nn.Linear(2, 2), images, labels)


def test_the_public_names_are_exported():
    for name in clip.__all__:
        assert hasattr(clip, name), name
