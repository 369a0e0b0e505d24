"""Chapter 8's checks: the library passes them, visible and hidden; the notebook's own solutions pass, and so do
other right ways to write them; typical mistakes get the sentence meant for them, the debug exercise's given code
included; the prediction is graded only when hidden and its reference is what the experiment shows; garbage never
crashes a check."""

from __future__ import annotations

import json
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO, assert_one_sentence, garbage
from attnedu.checks import CheckFailed
from attnedu.checks import ch08_beyond_text as ch08
from attnedu.vision import text_to_image as t2i

NOTEBOOK = REPO / "notebooks" / "08-beyond-text" / "08-beyond-text.ipynb"
LEVELS = t2i.LEVELS


def _solution_cells() -> dict[str, dict]:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return {c["metadata"]["nbgrader"]["grade_id"]: c for c in cells
            if c["metadata"].get("nbgrader", {}).get("solution")}


def _define(source: str, name: str):
    """The function a solution cell defines, run in the notebook's namespace."""
    namespace = {"torch": torch, "F": F, "t2i": t2i}
    exec(source, namespace)  # noqa: S102 - our own notebook's cell
    return namespace[name]


# ------------------------------------------------------------------ the library and the notebook's solutions pass
def test_the_library_passes_every_chapter_8_check_visible_and_hidden(capsys):
    for name, ex in ch08.EXERCISES.items():
        ch08.check(name, ex.reference)
        ch08.check(name, ex.reference, hidden=True)
    out = capsys.readouterr().out
    for name in ("patchify", "attention_rollout", "contrastive_loss", "sample_image"):
        assert f"`{name}` passes all 5 checks" in out
    assert out.count("is recorded") == 1


@pytest.mark.parametrize("grade_id, name", [("patchify", "patchify"), ("attention-rollout", "attention_rollout"),
                                            ("contrastive-loss", "contrastive_loss"), ("sample-image", "sample_image")])
def test_the_notebooks_own_solutions_pass(grade_id, name, capsys):
    fn = _define("".join(_solution_cells()[grade_id]["source"]), name)
    ch08.check(name, fn)
    ch08.check(name, fn, hidden=True)
    assert capsys.readouterr().out.count("passes all") == 1


def test_the_records_are_the_issues_grade_ids_and_kinds():
    kinds = {ex.grade_id: ex.kind for ex in ch08.EXERCISES.values()}
    assert kinds == {"patchify": "code", "attention-rollout": "code", "predict-shuffled-patches": "predict",
                     "contrastive-loss": "code", "sample-image": "debug"}


# ------------------------------------------------------------------ other right ways pass
def patchify_unfold(images, patch):  # with Tensor.unfold, channels in front inside each patch
    B, C = images.shape[:2]
    x = images.unfold(2, patch, patch).unfold(3, patch, patch)  # (B, C, rows, cols, p, p)
    return x.permute(0, 2, 3, 1, 4, 5).reshape(B, -1, C * patch * patch)


def patchify_loops(images, patch):  # slow and plain: one patch at a time
    B, C, H, W = images.shape
    return torch.stack([images[:, :, r:r + patch, c:c + patch].reshape(B, -1)
                        for r in range(0, H, patch) for c in range(0, W, patch)], dim=1)


def rollout_recursive(attentions):
    T = attentions[0].shape[-1]
    mixed = 0.5 * (attentions[-1].mean(1) + torch.eye(T, dtype=attentions[0].dtype))
    return mixed if len(attentions) == 1 else mixed @ rollout_recursive(attentions[:-1])


def loss_by_log_softmax(image_emb, text_emb, logit_scale):
    logits = logit_scale.exp() * image_emb @ text_emb.T
    diagonal = torch.arange(len(logits))
    return -(logits.log_softmax(1)[diagonal, diagonal].mean() + logits.log_softmax(0)[diagonal, diagonal].mean()) / 2


@pytest.mark.parametrize("name, fn", [("patchify", patchify_unfold), ("patchify", patchify_loops),
                                      ("attention_rollout", rollout_recursive),
                                      ("contrastive_loss", loss_by_log_softmax)])
def test_other_right_ways_pass(name, fn, capsys):
    ch08.check(name, fn)
    ch08.check(name, fn, hidden=True)
    assert capsys.readouterr().out.count("passes all") == 1


# ------------------------------------------------------------------ mistakes get their sentence
def patchify_reshape(images, patch):
    B, C, H, W = images.shape
    return images.reshape(B, H * W // patch**2, C * patch * patch)


def patchify_channels_last(images, patch):
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // patch, patch, W // patch, patch).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, -1, C * patch * patch)


def rollout_no_residual(attentions):
    out = attentions[0].mean(1)
    for a in attentions[1:]:
        out = a.mean(1) @ out
    return out


def loss_one_way(image_emb, text_emb, logit_scale):
    logits = logit_scale.exp() * image_emb @ text_emb.T
    return F.cross_entropy(logits, torch.arange(len(logits)))


def loss_no_exp(image_emb, text_emb, logit_scale):
    logits = logit_scale * image_emb @ text_emb.T
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


@pytest.mark.parametrize("name, fn, message", [
    ("patchify", patchify_reshape, "Likely cause: a reshape alone does not cut squares"),
    ("patchify", patchify_channels_last, "Likely cause: each patch is flattened pixel by pixel with the channels"),
    ("attention_rollout", rollout_no_residual, "Likely cause: the residual connection is missing"),
    ("contrastive_loss", loss_one_way, "Likely cause: only the image-to-text direction"),
    ("contrastive_loss", loss_no_exp, "Likely cause: the similarities are multiplied by logit_scale itself"),
])
def test_mistakes_get_their_sentence(name, fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch08.check(name, fn)


def test_the_debug_exercises_given_code_fails_its_check_naming_the_bug():
    cell = _solution_cells()["sample-image"]
    given = cell["metadata"]["attnedu"]["given"]
    source = "".join(cell["source"])
    start, end = source.index("    ### BEGIN SOLUTION\n"), source.index("    ### END SOLUTION")
    buggy = _define(source[:start] + given, "sample_image")  # the function ends with the solution region
    assert not source[end:].strip("\n").replace("    ### END SOLUTION", "")
    with pytest.raises(CheckFailed, match="Likely cause: the model reads only the prompt at every step"):
        ch08.check("sample_image", buggy)
    with pytest.raises(CheckFailed, match="reads only the prompt"):
        ch08.check("sample_image", buggy, hidden=True)


def test_a_sampler_that_uses_the_first_position_is_told_so():
    def first_position(model, prompt, n_pixels=64, generator=None, temperature=1.0):
        return ch08._sample_with(model, prompt, n_pixels, generator, temperature, position=0)
    with pytest.raises(CheckFailed, match="the logits at position 0"):
        ch08.check("sample_image", first_position)


# ------------------------------------------------------------------ the prediction
@pytest.mark.parametrize("answer, sentence", [("a", "does not keep its accuracy"), ("c", "keeps exactly"),
                                              ("d", "the other way round")])
def test_the_prediction_is_recorded_visibly_and_graded_hidden(answer, sentence, capsys):
    ch08.check("predict_shuffled_patches", lambda: answer)
    assert "is recorded" in capsys.readouterr().out
    ch08.check("predict_shuffled_patches", lambda: "b", hidden=True)
    with pytest.raises(CheckFailed, match=sentence):
        ch08.check("predict_shuffled_patches", lambda: answer, hidden=True)


def test_the_reveal_says_the_answer_and_why(capsys):
    ch08.reveal("predict_shuffled_patches", lambda: "c")
    out = capsys.readouterr().out
    assert "'b'" in out and ch08.EXERCISES["predict_shuffled_patches"].explain in out


def test_the_predictions_reference_is_what_the_experiment_shows():
    """A ViT without positions gives the same outputs for shuffled patches; one with positions does not."""
    from attnedu.vision import ViT, ViTConfig, patchify, unpatchify

    assert ch08.EXERCISES["predict_shuffled_patches"].reference() == "b"
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8)
    shuffled = unpatchify(patchify(x, 2)[:, torch.randperm(16)], 2, 8, 8)
    with torch.no_grad():
        bag = ViT(ViTConfig(8, 2, d_model=16, n_head=2, n_layer=2, positions=False)).eval()
        placed = ViT(ViTConfig(8, 2, d_model=16, n_head=2, n_layer=2)).eval()
        placed.pos.normal_()
        assert torch.allclose(bag(x), bag(shuffled), atol=1e-5)
        assert not torch.allclose(placed(x), placed(shuffled), atol=1e-3)


# ------------------------------------------------------------------ garbage never crashes
@pytest.mark.parametrize("name", ["patchify", "attention_rollout", "contrastive_loss", "sample_image"])
@pytest.mark.parametrize("fn, message", garbage("not an array of numbers"))
def test_garbage_gets_a_sentence_not_a_crash(name, fn, message):
    assert_one_sentence(partial(ch08.check, name), fn, message)
