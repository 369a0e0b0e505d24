"""Chapter 8's foundations: patches, the Vision Transformer, attention rollout, the bundled images and the
drawn scenes."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from attnedu.vision import ViT, ViTConfig, attention_rollout, patchify, unpatchify
from attnedu.vision import images, scenes


def test_patchify_reads_patches_in_row_major_order_each_flattened_channel_row_column():
    x = torch.arange(1 * 2 * 4 * 4).reshape(1, 2, 4, 4)  # two channels of 4x4
    p = patchify(x, 2)  # (1, 4, 2*2*2)
    assert p.shape == (1, 4, 8)
    # patch 1 is the top-right square: rows 0-1, columns 2-3, channel 0 then channel 1
    assert p[0, 1].tolist() == [2, 3, 6, 7, 18, 19, 22, 23]
    assert p[0, 2].tolist() == [8, 9, 12, 13, 24, 25, 28, 29]  # bottom-left


@pytest.mark.parametrize("shape, patch", [((2, 3, 24, 24), 4), ((1, 1, 8, 8), 2), ((3, 1, 6, 9), 3), ((1, 2, 8, 8), 8)])
def test_unpatchify_inverts_patchify(shape, patch):
    x = torch.randn(shape)
    p = patchify(x, patch)
    assert p.shape == (shape[0], shape[2] * shape[3] // patch**2, shape[1] * patch * patch)
    assert torch.equal(unpatchify(p, patch, *shape[2:]), x)


def test_patchify_is_a_convolution_with_kernel_and_stride_patch():
    torch.manual_seed(0)
    x, conv = torch.randn(2, 3, 8, 12), torch.nn.Conv2d(3, 5, kernel_size=4, stride=4)
    by_conv = conv(x).flatten(2).transpose(1, 2)  # (B, N, 5)
    by_patches = patchify(x, 4) @ conv.weight.flatten(1).T + conv.bias  # (B, N, 5)
    assert torch.allclose(by_conv, by_patches, atol=1e-5)


@pytest.mark.parametrize("bad, patch, words", [
    (torch.zeros(8, 8), 2, "(B, C, H, W)"), (torch.zeros(1, 1, 8, 6), 4, "multiples of patch"),
    (torch.zeros(1, 1, 8, 8), 0, "patch")])
def test_patchify_names_what_is_wrong(bad, patch, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        patchify(bad, patch)


def test_vit_classifies_from_the_class_token_and_keeps_every_layers_weights():
    torch.manual_seed(0)
    model = ViT(ViTConfig(8, 2, d_model=32, n_head=4, n_layer=3))
    logits = model(torch.rand(5, 1, 8, 8), need_weights=True)
    assert logits.shape == (5, 10)
    assert len(model.attention_weights) == 3
    assert all(w.shape == (5, 4, 17, 17) for w in model.attention_weights)  # 16 patches + the class token
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        model(torch.rand(5, 3, 8, 8))


def test_a_vit_without_positions_or_class_token_ignores_the_patches_order():
    """Self-attention is permutation-equivariant: without position embeddings, the mean of the tokens cannot
    tell where a patch came from."""
    torch.manual_seed(0)
    x = torch.rand(3, 1, 8, 8)
    shuffled = unpatchify(patchify(x, 2)[:, torch.randperm(16)], 2, 8, 8)
    for class_token in (False, True):
        bag = ViT(ViTConfig(8, 2, d_model=16, n_head=2, n_layer=2, class_token=class_token, positions=False)).eval()
        with torch.no_grad():
            assert torch.allclose(bag(x), bag(shuffled), atol=1e-5)
    model = ViT(ViTConfig(8, 2, d_model=16, n_head=2, n_layer=2)).eval()
    with torch.no_grad():
        model.pos.normal_()  # with positions, the order matters
        assert not torch.allclose(model(x), model(shuffled), atol=1e-3)


def test_attention_rollout_is_the_product_of_the_layers_mixing_with_the_residual():
    torch.manual_seed(0)
    a1, a2 = (torch.softmax(torch.randn(2, 3, 5, 5), -1) for _ in range(2))
    eye = torch.eye(5)
    mix = lambda a: 0.5 * (a.mean(1) + eye)  # noqa: E731
    assert torch.allclose(attention_rollout([a1, a2]), mix(a2) @ mix(a1), atol=1e-6)
    assert torch.allclose(attention_rollout([a1], residual=False), a1.mean(1))
    assert torch.allclose(attention_rollout([a1, a2]).sum(-1), torch.ones(2, 5), atol=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        attention_rollout([a1, a2[:, :, :4, :4]])
    with pytest.raises(ValueError, match="at least one"):
        attention_rollout([])


def test_the_digits_ship_with_scikit_learn_and_split_the_same_way_every_time():
    x, y = images.digits()
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    s1, s2 = images.digits_split(), images.digits_split()
    assert torch.equal(s1.test_labels, s2.test_labels) and len(s1.test_labels) + len(s1.train_labels) == 1797
    assert 0.23 < len(s1.test_labels) / 1797 < 0.27
    assert torch.bincount(s1.test_labels).min() >= 40  # every digit held out
    with pytest.raises(ValueError, match="test_fraction"):
        images.digits_split(1.5)


@pytest.mark.parametrize("name", images.PHOTOS)
def test_every_photo_loads_offline_from_an_installed_package(name, monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("a photo tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    images._photo.cache_clear()
    img = images.photo(name)
    assert img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 256
    assert img.dtype == np.float32 and 0.0 <= img.min() and img.max() <= 1.0 and img.std() > 0.05
    assert images.PHOTO_CREDITS[name][2]  # a licence is named


def test_an_unknown_photo_lists_the_names():
    with pytest.raises(ValueError, match="china"):
        images.photo("mona-lisa")


def test_captions_read_the_objects_top_to_bottom_or_left_to_right():
    O = scenes.Object  # noqa: N806
    assert scenes.caption([O("red", "circle", 1, 1)]) == "a red circle"
    assert scenes.caption([O("blue", "square", 2, 0), O("red", "circle", 0, 0)]) == "a red circle above a blue square"
    assert (scenes.caption([O("green", "triangle", 1, 2), O("red", "circle", 1, 0), O("blue", "square", 1, 1)])
            == "a red circle left of a blue square left of a green triangle")
    with pytest.raises(ValueError, match="share a row or a column"):
        scenes.caption([O("red", "circle", 0, 0), O("blue", "square", 1, 1)])


def test_drawn_scenes_paint_each_object_in_its_colour_inside_its_cell():
    O = scenes.Object  # noqa: N806
    img = scenes.draw([O("red", "circle", 0, 2), O("blue", "square", 2, 2)], random.Random(0))
    assert img.shape == (3, 24, 24)
    red = torch.tensor(scenes.COLOURS["red"])[:, None, None]
    is_red = (img - red).abs().sum(0) < 1e-6
    assert is_red.sum() > 15 and is_red[:8, 16:].sum() == is_red.sum()  # all of it in the top-right cell
    assert (img.sum(0) > 0).sum() < 24 * 24 / 4  # mostly background


def test_held_out_scenes_only_show_combinations_never_used_in_training():
    train, held_out = scenes.split_combinations()
    assert not train & held_out and len(held_out) > 100
    tr, te = scenes.scenes(300, seed=3), scenes.scenes(300, split="held_out", seed=3)
    assert {scenes.combination(o) for o in tr.objects} <= train
    assert {scenes.combination(o) for o in te.objects} <= held_out
    # every word of every held-out caption is seen in training
    words = {w for c in tr.captions for w in c.split()}
    assert {w for c in te.captions for w in c.split()} <= words
    assert tr.images.shape == (300, 3, 24, 24)
    again = scenes.scenes(300, seed=3)
    assert again.captions == tr.captions and torch.equal(again.images, tr.images)


def test_the_caption_vocabulary_round_trips_and_rejects_unknown_words():
    ids = scenes.VOCAB.batch(["a red circle", "a blue square above a green triangle"])
    assert ids.shape == (2, 9) and ids[0, 0] == scenes.VOCAB.BOS and ids[0, -1] == scenes.VOCAB.PAD
    assert scenes.VOCAB.decode(ids[1]) == "a blue square above a green triangle"
    with pytest.raises(ValueError, match="purple"):
        scenes.VOCAB.encode("a purple circle")

