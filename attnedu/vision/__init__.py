"""Attention beyond text (chapter 8): images as sequences of patches.

* :mod:`~attnedu.vision.patches`: :func:`patchify` and :func:`unpatchify`, images to patch tokens and back;
* :mod:`~attnedu.vision.vit`: the Vision Transformer, attention rollout, an MLP baseline;
* :mod:`~attnedu.vision.images`: the bundled images (scikit-learn's digits and photos, scikit-image's and
  matplotlib's photos), nothing downloaded;
* :mod:`~attnedu.vision.scenes`: drawn scenes of coloured shapes and their captions, with held-out combinations;
* :mod:`~attnedu.vision.captions`: a captioner, a ViT encoder and a decoder with cross-attention;
* :mod:`~attnedu.vision.superres`: super-resolution and denoising with one attention architecture over patches;
* :mod:`~attnedu.vision.clip`: text and images aligned by a contrastive loss, zero-shot classification;
* :mod:`~attnedu.vision.text_to_image`: digits generated pixel by pixel from a caption;
* :mod:`~attnedu.vision.checkpoints`: the shipped checkpoints and the recipes that reproduce them.
"""

from .patches import patchify, unpatchify
from .vit import ViT, ViTConfig, attention_rollout

__all__ = ["patchify", "unpatchify", "ViT", "ViTConfig", "attention_rollout"]
