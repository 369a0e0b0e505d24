"""Chapter 8, image to image: super-resolution and denoising with one patch transformer (attnedu.vision.superres)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnedu.vision import checkpoints, superres
from attnedu.vision.images import PHOTOS
from attnedu.vision.superres import (HELD_OUT, PatchTransformer, PatchTransformerConfig, add_noise, apply,
                                     bicubic_upsample, box_blur, downsample, evaluate, psnr)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def shipped():
    return {task: checkpoints.load(task) for task in superres.TASKS}


def untrained(seed: int = 0) -> PatchTransformer:
    torch.manual_seed(seed)
    return PatchTransformer(PatchTransformerConfig()).eval()


# ----------------------------------------------------------------------------- the measure
def test_psnr_of_an_error_of_0_1_everywhere_is_20_db():
    target = torch.rand(2, 3, 8, 8)
    assert psnr(target + 0.1, target) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01 (to float32 rounding)
    assert psnr(target.double() - 0.01, target.double()) == pytest.approx(40.0, abs=1e-9)  # MSE 1e-4


def test_psnr_scales_with_max_value_and_is_infinite_for_equal_images():
    target = np.full((4, 4), 100.0)
    assert psnr(target + 25.5, target, max_value=255) == pytest.approx(20.0)
    assert psnr(target, target) == math.inf


def test_psnr_rejects_different_shapes_and_a_bad_max():
    with pytest.raises(ValueError, match=r"same shape.*\(3, 8, 8\).*\(3, 8, 9\)"):
        psnr(torch.zeros(3, 8, 8), torch.zeros(3, 8, 9))
    with pytest.raises(ValueError, match="max_value"):
        psnr(torch.zeros(2), torch.ones(2), max_value=0)


# ----------------------------------------------------------------------------- the damage
def test_downsample_averages_each_block():
    images = torch.arange(16.0).reshape(1, 1, 4, 4)
    small = downsample(images, 2)
    assert small.shape == (1, 1, 2, 2)
    assert torch.equal(small, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert downsample(torch.rand(3, 3, 12, 18), 3).shape == (3, 3, 4, 6)


def test_downsample_rejects_sizes_that_are_not_multiples_and_missing_batch_axes():
    with pytest.raises(ValueError, match=r"7x8 pixels cannot be shrunk by factor=2"):
        downsample(torch.rand(1, 3, 7, 8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\).*\(3, 8, 8\)"):
        downsample(torch.rand(3, 8, 8))


def test_bicubic_upsample_is_torchs_bicubic_clamped_to_the_unit_range():
    small = torch.rand(2, 3, 5, 7)
    up = bicubic_upsample(small, 2)
    assert up.shape == (2, 3, 10, 14)
    assert float(up.min()) >= 0.0 and float(up.max()) <= 1.0
    reference = F.interpolate(small, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.equal(up, reference)


def test_add_noise_is_seeded_unclamped_and_20_db_away_at_sigma_0_1():
    clean = torch.rand(4, 3, 64, 64)
    a = add_noise(clean, 0.1, torch.Generator().manual_seed(1))
    b = add_noise(clean, 0.1, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert float((a - clean).std()) == pytest.approx(0.1, rel=0.02)
    assert float(a.min()) < 0.0 or float(a.max()) > 1.0  # not clamped
    assert psnr(a, clean) == pytest.approx(20.0, abs=0.1)
    with pytest.raises(ValueError, match="sigma"):
        add_noise(clean, -0.1)


def test_box_blur_keeps_shape_and_a_flat_image():
    flat = torch.full((1, 3, 9, 11), 0.3)
    assert torch.allclose(box_blur(flat), flat)
    with pytest.raises(ValueError, match="odd"):
        box_blur(flat, 2)


# ----------------------------------------------------------------------------- the model
def test_the_model_maps_crops_to_crops_of_the_same_shape():
    model = untrained()
    x = torch.rand(3, 3, 32, 32)
    assert model(x).shape == x.shape
    model(x, need_weights=True)
    assert len(model.attention_weights) == model.config.n_layer
    assert model.attention_weights[0].shape == (3, 4, 64, 64)  # (B, n_head, N, N): 8x8 patches of 4x4 pixels


def test_an_untrained_model_returns_its_input_exactly_so_it_starts_at_the_baseline():
    model = untrained()
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model(x), x)
    for task in superres.TASKS:
        result = evaluate(model, task, size=64)
        assert result["psnr_model"] == result["psnr_baseline"]
        assert result["gain_db"] == 0.0


def test_the_model_rejects_crops_of_another_size_and_bad_configs():
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\).*\(1, 3, 48, 48\).*apply\(\)"):
        untrained()(torch.rand(1, 3, 48, 48))
    with pytest.raises(ValueError, match="cannot be cut into 5x5 patches"):
        PatchTransformerConfig(image_size=32, patch=5)
    with pytest.raises(ValueError, match="not divisible by n_head"):
        PatchTransformerConfig(d_model=30, n_head=4)


def test_apply_handles_photos_whose_size_is_not_a_multiple_of_the_crop(shipped):
    image = torch.rand(3, 45, 70)
    assert torch.allclose(apply(untrained(), image, shifts=4), image, atol=1e-6)  # tiles blended: the input
    out = apply(shipped["denoise"], image)
    assert out.shape == (3, 45, 70) and torch.isfinite(out).all()
    assert apply(shipped["superres"], torch.rand(3, 10, 100)).shape == (3, 10, 100)  # smaller than a crop


def test_apply_on_one_crop_with_one_grid_is_the_model_itself(shipped):
    model = shipped["superres"]
    crop = torch.rand(3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(apply(model, crop, shifts=1), model(crop[None])[0], atol=1e-6)


def test_apply_rejects_bad_tiles_and_images():
    model = untrained()
    image = torch.rand(3, 40, 40)
    with pytest.raises(ValueError, match="crop=16 but this model reads 32x32 crops"):
        apply(model, image, crop=16)
    with pytest.raises(ValueError, match="overlap=32 must be smaller than crop=32"):
        apply(model, image, overlap=32)
    with pytest.raises(ValueError, match="shifts=5 must be at most patch=4"):
        apply(model, image, shifts=5)
    with pytest.raises(ValueError, match=r"\(3, H, W\).*\(1, 3, 40, 40\)"):
        apply(model, image[None])


# ----------------------------------------------------------------------------- the data
def test_the_held_out_photo_is_not_a_training_photo():
    assert HELD_OUT in PHOTOS
    assert set(superres.training_photos()) == set(PHOTOS) - {HELD_OUT}


@pytest.mark.parametrize("task", superres.TASKS)
def test_the_held_out_photo_never_appears_in_the_training_crops(task, monkeypatch):
    real = superres.photo

    def poisoned(name):  # the held-out photo made of NaNs: one pixel of it in a crop would show
        img = real(name)
        return np.full_like(img, np.nan) if name == HELD_OUT else img

    monkeypatch.setattr(superres, "photo", poisoned)
    batch_fn = superres.training_batches(task, batch_size=64)
    generator = torch.Generator().manual_seed(0)
    for _ in range(30):
        inputs, targets = batch_fn(generator)
        assert inputs.shape == targets.shape == (64, 3, 32, 32)
        assert torch.isfinite(inputs).all() and torch.isfinite(targets).all()
    assert torch.isnan(superres.held_out_pair(task, size=32)[1]).all()  # the poison is there to be found


def test_training_pairs_are_the_damage_of_their_targets():
    inputs, targets = superres.training_batches("superres", batch_size=8)(torch.Generator().manual_seed(3))
    # each input is the bicubic blow-up of its target's 2x2 averages (up to the crop's border)
    again = superres.degrade(targets, "superres")
    assert torch.allclose(inputs[..., 4:-4, 4:-4], again[..., 4:-4, 4:-4], atol=1e-5)
    inputs, targets = superres.training_batches("denoise", batch_size=8)(torch.Generator().manual_seed(3))
    assert float((inputs - targets).std()) == pytest.approx(superres.SIGMA, rel=0.1)


# ----------------------------------------------------------------------------- the shipped checkpoints
def test_the_shipped_super_resolution_beats_bicubic_on_the_held_out_photo(shipped):
    result = evaluate(shipped["superres"], "superres")
    assert result["psnr_baseline"] > 25  # the region is judged, not an empty sky
    assert result["gain_db"] >= 0.5
    assert result["psnr_one_grid"] > result["psnr_baseline"] + 0.2  # even without the shifted grids
    assert result == pytest.approx(checkpoints.record("superres")["metrics"], abs=1e-3)


def test_the_shipped_denoiser_beats_the_noisy_photo_and_a_box_blur(shipped):
    result = evaluate(shipped["denoise"], "denoise")
    assert result["psnr_baseline"] == pytest.approx(20.0, abs=0.2)
    assert result["gain_db"] >= 6.0
    assert result["psnr_model"] >= result["psnr_box_blur"] + 2.0
    assert result["psnr_model"] > result["psnr_one_grid"]  # the shifted grids help
    assert result == pytest.approx(checkpoints.record("denoise")["metrics"], abs=1e-3)


@pytest.mark.parametrize("name", superres.TASKS)
def test_the_shipped_records_say_what_was_trained_and_judged(name):
    rec = checkpoints.record(name)
    assert rec["task"] == name and rec["held_out"] == HELD_OUT and rec["eval_size"] == superres.EVAL_SIZE
    assert rec["steps"] == rec["iters"] and len(rec["first_losses"]) == checkpoints.FIRST_LOSSES
    assert checkpoints.path(name).stat().st_size <= checkpoints.MAX_BYTES
    assert rec["bytes"] == checkpoints.path(name).stat().st_size


@pytest.mark.parametrize("name", superres.TASKS)
def test_the_recipes_still_start_as_the_shipped_runs_did(name):
    assert checkpoints.first_losses(name) == pytest.approx(checkpoints.record(name)["first_losses"], rel=1e-4)
