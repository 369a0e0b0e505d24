"""Text to image (chapter 8): digits drawn pixel by pixel by a GPT that reads a caption first."""

import math

import pytest
import torch
import torch.nn.functional as F

from attnedu.models import GPT, GPTConfig
from attnedu.vision import checkpoints
from attnedu.vision import text_to_image as t2i
from attnedu.vision.images import DIGIT_NAMES, digits_split

NAME = "text-to-image"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def judge():
    return t2i.digit_judge()  # the classifier the recipe's metrics use


@pytest.fixture(scope="module")
def model():
    return checkpoints.load(NAME)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=t2i.VOCAB_SIZE, context=t2i.PROMPT_LENGTH + t2i.N_PIXELS, n_layer=1, n_head=2,
                         d_model=16)).eval()


# ----------------------------------------------------------------------------- image tokens
def test_quantise_makes_64_tokens_per_image_in_row_major_order():
    images = torch.zeros(2, 1, 8, 8)
    images[0, 0, 2, 5] = 1.0  # row 2, column 5: token 2 * 8 + 5
    images[1, 0, 7, 0] = 0.4  # nearest level of 4 (0, 1/3, 2/3, 1) is 1/3
    tokens = t2i.quantise(images)
    assert tokens.shape == (2, 64) and tokens.dtype == torch.long
    assert tokens[0, 21] == t2i.LEVELS - 1 and tokens[0].sum() == t2i.LEVELS - 1
    assert tokens[1, 56] == round(0.4 * (t2i.LEVELS - 1)) and tokens[1].sum() == tokens[1, 56]


def test_quantise_then_dequantise_is_within_half_a_level():
    images = digits_split().train_images
    back = t2i.dequantise(t2i.quantise(images))
    assert back.shape == images.shape and back.dtype == torch.float32
    assert (back - images).abs().max() <= 0.5 / (t2i.LEVELS - 1) + 1e-6
    assert back.min() >= 0 and back.max() <= 1


def test_dequantise_then_quantise_gives_the_tokens_back():
    tokens = torch.randint(0, t2i.LEVELS, (5, 64), generator=torch.Generator().manual_seed(0))
    assert torch.equal(t2i.quantise(t2i.dequantise(tokens)), tokens)


@pytest.mark.parametrize("bad", [torch.zeros(1, 8, 8), torch.zeros(2, 3, 8, 8), torch.zeros(2, 1, 4, 4)])
def test_quantise_rejects_images_that_are_not_b_1_8_8(bad):
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        t2i.quantise(bad)


def test_dequantise_rejects_wrong_shapes_and_levels():
    with pytest.raises(ValueError, match=r"\(B, 64\)"):
        t2i.dequantise(torch.zeros(2, 63, dtype=torch.long))
    with pytest.raises(ValueError, match="LEVELS"):
        t2i.dequantise(torch.full((1, 64), t2i.LEVELS))
    with pytest.raises(ValueError, match="integer"):
        t2i.dequantise(torch.zeros(1, 64))


# ----------------------------------------------------------------------------- captions and the vocabulary
def test_the_vocabulary_puts_pixel_levels_and_words_in_disjoint_ranges():
    assert t2i.TOKENS[:t2i.LEVELS] == tuple(f"<level {v}>" for v in range(t2i.LEVELS))
    assert t2i.PAD >= t2i.LEVELS and t2i.IMAGE >= t2i.LEVELS and t2i.PAD != t2i.IMAGE
    word_ids = t2i.caption_ids([" ".join(t2i.WORDS[:t2i.CAPTION_LENGTH])])[0, :-1]
    assert (word_ids >= t2i.LEVELS).all() and len(set(t2i.TOKENS)) == t2i.VOCAB_SIZE


def test_caption_for_fills_the_templates_with_the_digit_names():
    assert t2i.caption_for(7) == "a handwritten seven"
    assert [t2i.caption_for(3, k) for k in range(len(t2i.CAPTION_TEMPLATES))] == \
        [tmpl.format(digit="three") for tmpl in t2i.CAPTION_TEMPLATES]
    with pytest.raises(ValueError, match="0 to 9"):
        t2i.caption_for(10)
    with pytest.raises(ValueError, match="template"):
        t2i.caption_for(1, len(t2i.CAPTION_TEMPLATES))


def test_caption_ids_pads_on_the_left_and_ends_with_image():
    ids = t2i.caption_ids(["a handwritten seven", "the digit one", t2i.caption_for(0, 2)])
    assert ids.shape == (3, t2i.PROMPT_LENGTH) and ids.dtype == torch.long
    assert (ids[:, -1] == t2i.IMAGE).all()
    words = [t2i.TOKENS.index(w) for w in ("a", "handwritten", "seven")]
    assert ids[0].tolist() == [t2i.PAD] * (t2i.CAPTION_LENGTH - 3) + words + [t2i.IMAGE]
    assert (ids[2] != t2i.PAD).sum() == len(t2i.caption_for(0, 2).split()) + 1
    assert torch.equal(t2i.caption_ids(["A  Handwritten SEVEN"]), ids[:1])  # case and spaces do not matter


def test_caption_ids_rejects_unknown_words_long_captions_and_a_bare_string():
    with pytest.raises(ValueError, match="'cat'"):
        t2i.caption_ids(["a handwritten cat"])
    with pytest.raises(ValueError, match="CAPTION_LENGTH"):
        t2i.caption_ids(["a a a a a a a a"])
    with pytest.raises(ValueError, match=r"use \['the digit one'\]"):
        t2i.caption_ids("the digit one")
    with pytest.raises(ValueError, match="1 to"):
        t2i.caption_ids([""])


# ----------------------------------------------------------------------------- the pixel-only loss
def test_targets_mask_the_prompt_and_keep_all_64_pixels():
    split = digits_split()
    ids = t2i.sequences([t2i.caption_for(int(d)) for d in split.train_labels[:4]], split.train_images[:4])
    assert ids.shape == (4, t2i.PROMPT_LENGTH + 64)
    inputs, targets = t2i.inputs_and_targets(ids)
    assert torch.equal(inputs, ids[:, :-1]) and targets.shape == inputs.shape
    P = t2i.PROMPT_LENGTH
    assert (targets[:, :P - 1] == -1).all()  # predicting a word, <pad> or <image>: not counted
    assert torch.equal(targets[:, P - 1:], t2i.quantise(split.train_images[:4]))  # the first at <image>


def test_the_loss_is_the_mean_cross_entropy_of_the_pixels_only(tiny):
    split = digits_split()
    ids = t2i.sequences(["the digit five", "a handwritten one"], split.train_images[:2])
    inputs, targets = t2i.inputs_and_targets(ids)
    logits, loss = tiny(inputs, targets)
    P = t2i.PROMPT_LENGTH
    pixels_only = F.cross_entropy(logits[:, P - 1:].reshape(-1, t2i.VOCAB_SIZE), ids[:, P:].reshape(-1))
    assert math.isclose(loss.item(), pixels_only.item(), rel_tol=1e-5)


def test_inputs_and_targets_and_sequences_validate():
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        t2i.inputs_and_targets(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="one caption per image"):
        t2i.sequences(["the digit one"], torch.zeros(2, 1, 8, 8))


# ----------------------------------------------------------------------------- drawing
def test_sample_image_returns_pixel_tokens_only(tiny):
    prompt = t2i.caption_ids(["the digit one", "a handwritten two"])
    pixels = t2i.sample_image(tiny, prompt, n_pixels=10, generator=torch.Generator().manual_seed(0))
    assert pixels.shape == (2, 10) and pixels.dtype == torch.long
    assert pixels.min() >= 0 and pixels.max() < t2i.LEVELS  # the words' logits are never sampled


def test_sample_image_validates_its_prompt_and_length(tiny):
    prompt = t2i.caption_ids(["the digit one"])
    with pytest.raises(ValueError, match="<image>"):
        t2i.sample_image(tiny, prompt[:, :-1])
    with pytest.raises(ValueError, match=r"\(B, P\)"):
        t2i.sample_image(tiny, prompt[0])
    with pytest.raises(ValueError, match="at most 64"):
        t2i.sample_image(tiny, prompt, n_pixels=65)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_the_readable_loop_and_the_cached_fast_path_draw_the_same_pixels(model, temperature):
    captions = [t2i.caption_for(d, d % len(t2i.CAPTION_TEMPLATES)) for d in range(10)] * 2
    slow = t2i.sample_image(model, t2i.caption_ids(captions), generator=torch.Generator().manual_seed(3),
                            temperature=temperature)
    fast = t2i.generate_images(model, captions, temperature=temperature, seed=3)
    assert torch.equal(t2i.quantise(fast), slow)


def test_generate_images_is_batched_and_seeded(model):
    captions = ["a handwritten seven", "the digit zero", "a handwritten seven"]
    a = t2i.generate_images(model, captions, seed=1)
    assert a.shape == (3, 1, 8, 8) and a.dtype == torch.float32
    assert torch.equal(a, t2i.generate_images(model, captions, seed=1))
    assert not torch.equal(a, t2i.generate_images(model, captions, seed=2))
    assert not torch.equal(a[0], a[2])  # one caption, two different drawings
    assert torch.equal(a, t2i.dequantise(t2i.quantise(a)))  # every pixel is one of the LEVELS grey levels
    greedy = t2i.generate_images(model, captions, temperature=0, seed=5)
    assert torch.equal(greedy[0], greedy[2])  # the most likely drawing: one per caption, whatever the seed
    assert torch.equal(greedy, t2i.generate_images(model, captions, temperature=0))
    top1 = t2i.generate_images(model, captions, top_k=1, seed=9)
    assert torch.equal(top1, greedy)  # keeping only the most likely level is greedy decoding


def test_generate_images_validates_its_arguments(model):
    with pytest.raises(ValueError, match="temperature"):
        t2i.generate_images(model, ["the digit one"], temperature=-1)
    with pytest.raises(ValueError, match="top_k"):
        t2i.generate_images(model, ["the digit one"], top_k=0)
    with pytest.raises(ValueError, match="'dog'"):
        t2i.generate_images(model, ["the digit dog"])


# ----------------------------------------------------------------------------- judged by a classifier
def test_recognised_fraction_counts_the_requested_digits(judge):
    split = digits_split()
    images, labels = split.test_images[:50], split.test_labels[:50]
    assert t2i.recognised_fraction(judge, images, labels) >= 0.9
    assert t2i.recognised_fraction(judge, images, (labels + 1) % 10) <= 0.1
    with pytest.raises(ValueError, match=r"\(B,\) = \(50,\)"):
        t2i.recognised_fraction(judge, images, labels[:10])


def test_quantised_digits_stay_recognisable(judge):
    split = digits_split()
    requantised = t2i.dequantise(t2i.quantise(split.test_images))
    assert t2i.recognised_fraction(judge, requantised, split.test_labels) >= 0.95


def test_the_shipped_model_draws_the_digit_its_caption_asks_for(model, judge):
    digits = torch.arange(10).repeat_interleave(30)  # 30 drawings of each digit
    captions = [t2i.caption_for(int(d), i % len(t2i.CAPTION_TEMPLATES)) for i, d in enumerate(digits)]
    temperature = checkpoints.record(NAME)["metrics"]["chapter_temperature"]
    for temp in sorted({temperature, 1.0}):
        images = t2i.generate_images(model, captions, temperature=temp, seed=0)
        assert t2i.recognised_fraction(judge, images, digits) >= 0.80, temp


# ----------------------------------------------------------------------------- the shipped checkpoint
def test_the_checkpoint_is_small_and_its_record_says_what_the_chapter_uses():
    assert checkpoints.path(NAME).stat().st_size <= checkpoints.MAX_BYTES
    rec = checkpoints.record(NAME)
    metrics = rec["metrics"]
    assert metrics["images_per_temperature"] == 1000
    assert metrics["chapter_recognised"] >= 0.80
    assert metrics["recognised"][f"{metrics['chapter_temperature']:g}"] == metrics["chapter_recognised"]
    assert metrics["judge_quantised_test_accuracy"] >= 0.95
    assert rec["levels"] == t2i.LEVELS and rec["caption_templates"] == list(t2i.CAPTION_TEMPLATES)


def test_the_recipe_still_starts_as_the_shipped_run_did():
    recorded = checkpoints.record(NAME)["first_losses"]
    assert len(recorded) == checkpoints.FIRST_LOSSES
    assert checkpoints.first_losses(NAME) == pytest.approx(recorded, rel=1e-4)


def test_load_model_rebuilds_the_gpt_from_its_config(model):
    assert isinstance(model, GPT) and not model.training
    assert model.config.vocab_size == t2i.VOCAB_SIZE
    assert model.config.context >= t2i.PROMPT_LENGTH + t2i.N_PIXELS - 1
    assert DIGIT_NAMES[7] in t2i.WORDS
