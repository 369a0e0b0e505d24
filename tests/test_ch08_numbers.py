"""Chapter 8 reaches the numbers its issue asks for, as the executed chapter prints them: the ViT at least 95%
on held-out digits, held-out captions at least 90% exactly right, super-resolution above bicubic and denoising
above the noisy input on a photo no model trained on, zero-shot CLIP at least 80% with unseen templates, and at
least 80% of the drawn digits recognised as the one asked for. The chapter is executed once per `make test`
(tests/test_notebooks.py); this reads its outputs from the book's cache."""

from __future__ import annotations

import re

import pytest

from conftest import REPO, chapter_printed, printed_number

NOTEBOOK = REPO / "notebooks" / "08-beyond-text" / "08-beyond-text.ipynb"
pytestmark = pytest.mark.xdist_group(NOTEBOOK.parent.name)  # beside the notebook's own run


@pytest.fixture(scope="module")
def printed(run_id) -> str:
    """Everything the executed chapter printed."""
    return chapter_printed(NOTEBOOK, run_id)


number = printed_number


def test_the_vit_gets_95_percent_of_the_held_out_digits(printed):
    assert number(printed, r"ViT \(16 patches of 2x2\)\s+[\d,]+\s+([\d.]+)%") >= 95.0
    assert number(printed, r"MLP on the 64 pixels\s+[\d,]+\s+([\d.]+)%") > 90.0  # the baseline is printed too


def test_shuffled_patches_fool_only_the_vit_with_positions(printed):
    with_pos = re.search(r"ViT with positions\s+([\d.]+)%\s+([\d.]+)%", printed)
    without = re.search(r"ViT without positions\s+([\d.]+)%\s+([\d.]+)%", printed)
    assert float(with_pos.group(2)) < float(with_pos.group(1)) - 40
    assert without.group(1) == without.group(2)
    assert number(printed, r"predicts the same digit for ([\d.]+)% of the shuffled") == 100.0


def test_held_out_captions_are_at_least_90_percent_exact(printed):
    assert number(printed, r"exact caption match on \d+ held-out scenes: ([\d.]+)%") >= 90.0


def test_shape_words_look_at_their_object(printed):
    assert number(printed, r"shape words put (\d+)% of their cross-attention on their own object") >= 40


def test_super_resolution_beats_bicubic_and_denoising_beats_the_noisy_input(printed):
    assert number(printed, r"superres\s+bicubic [\d.]+ dB\s+[\d.]+ dB\s+([+-][\d.]+) dB") > 0.0
    assert number(printed, r"denoise\s+the noisy input [\d.]+ dB\s+[\d.]+ dB\s+([+-][\d.]+) dB") > 3.0


def test_clip_classifies_digits_zero_shot_from_unseen_templates(printed):
    assert number(printed, r"zero-shot accuracy on \d+ held-out digits, unseen templates: ([\d.]+)%") >= 80.0
    assert number(printed, r"text-to-image recall@1 \(galleries of 10, one image per digit\): ([\d.]+)%") >= 50.0


def test_at_least_80_percent_of_the_drawn_digits_are_recognised(printed):
    assert number(printed, r"recognised by the ViT as the digit asked for: ([\d.]+)%") >= 80.0
