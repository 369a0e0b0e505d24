"""The images of chapter 8, all shipped inside installed packages: nothing is downloaded.

* :func:`digits`: scikit-learn's handwritten digits, 1,797 images of 8x8 pixels (16 grey levels), with
  their labels; :func:`digits_split` splits them once, the same way for every part of the chapter.
* :func:`photos`: colour photographs shipped by scikit-learn (two) and scikit-image, and matplotlib's
  portrait of Grace Hopper, as ``(H, W, 3)`` float arrays in ``[0, 1]``. :data:`PHOTO_CREDITS` says
  where each one comes from and under which licence.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

__all__ = ["digits", "digits_split", "DigitSplit", "photos", "photo", "PHOTOS", "PHOTO_CREDITS", "DIGIT_NAMES"]

#: The words for the ten digits, as chapter 8's captions and prompts spell them.
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _missing(package: str, pip_name: str) -> ImportError:
    return ImportError(f"chapter 8's images ship inside {package}, which is not installed here: "
                       f"pip install {pip_name} (or `make setup`, which installs it)")


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise _missing("scikit-learn", "scikit-learn") from exc
    d = load_digits()  # read from the package's own files: no download
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)


def digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's handwritten digits: ``images`` ``(1797, 1, 8, 8)`` in ``[0, 1]`` (ink is 1), ``labels`` ``(1797,)``."""
    images, labels = _digits_arrays()
    return torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.copy())


@dataclass(frozen=True)
class DigitSplit:
    """The digits split once: ``train_images`` ``(N_train, 1, 8, 8)``, ``train_labels`` ``(N_train,)`` and the
    same for the held-out ``test_*``. Every part of chapter 8 uses this split, so that no model is judged on a
    digit another model trained on."""

    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


def digits_split(test_fraction: float = 0.25, seed: int = 0) -> DigitSplit:
    """A seeded, stratified split of :func:`digits`: ``test_fraction`` of each digit's images are held out."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    images, labels = digits()
    g = torch.Generator().manual_seed(seed)
    test = torch.zeros(len(labels), dtype=torch.bool)
    for d in range(10):
        idx = torch.nonzero(labels == d).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        test[idx[: round(test_fraction * len(idx))]] = True
    return DigitSplit(images[~test], labels[~test], images[test], labels[test])


#: name -> (package, where in it, licence)
PHOTO_CREDITS = {
    "china": ("scikit-learn", "sklearn.datasets.load_sample_images()", "Creative Commons BY 2.0, by danielbuechele on "
              "Flickr (scikit-learn's sklearn/datasets/images/README.txt)"),
    "flower": ("scikit-learn", "sklearn.datasets.load_sample_images()", "Creative Commons BY 2.0, by vultilion on "
               "Flickr (scikit-learn's sklearn/datasets/images/README.txt)"),
    "astronaut": ("scikit-image", "skimage.data.astronaut()", "public domain (NASA; the skimage.data.astronaut docstring)"),
    "coffee": ("scikit-image", "skimage.data.coffee()", "CC0, by Rachel Michetti (the skimage.data.coffee docstring)"),
    "chelsea": ("scikit-image", "skimage.data.chelsea()", "CC0, by Stefan van der Walt (the skimage.data.chelsea docstring)"),
    "rocket": ("scikit-image", "skimage.data.rocket()", "public domain, released by SpaceX (the skimage.data.rocket docstring)"),
    "hopper": ("matplotlib", "matplotlib.cbook.get_sample_data('grace_hopper.jpg')", "public domain (a US Navy photograph of Grace Hopper)"),
}
#: the photos' names, in a fixed order
PHOTOS = tuple(PHOTO_CREDITS)


@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        try:
            from sklearn.datasets import load_sample_image
        except ImportError as exc:
            raise _missing("scikit-learn", "scikit-learn") from exc
        img = load_sample_image(f"{name}.jpg")
    elif name == "hopper":
        import matplotlib.cbook as cbook
        import matplotlib.image as mpimg

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            img = mpimg.imread(f, format="jpg")
    else:
        try:
            from skimage import data
        except ImportError as exc:
            raise _missing("scikit-image", "'scikit-image>=0.22'") from exc
        img = getattr(data, name)()
    img = np.asarray(img)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    return np.ascontiguousarray(img[..., :3], dtype=np.float32)


def photo(name: str) -> np.ndarray:
    """One photo as ``(H, W, 3)`` float32 in ``[0, 1]`` (a copy: change it freely)."""
    if name not in PHOTO_CREDITS:
        raise ValueError(f"no photo named {name!r}: choose one of {', '.join(PHOTOS)}")
    return _photo(name).copy()


def photos(names=PHOTOS) -> dict[str, np.ndarray]:
    """Several photos by name (default: all of them), each ``(H, W, 3)`` float32 in ``[0, 1]``."""
    return {name: photo(name) for name in names}
