"""PyTorch's compile cache folder, left as the course found it.

Importing ``torch._dynamo`` makes PyTorch's compile cache folder, ``<tmp>/torchinductor_<user>``,
whether or not anything is ever compiled, and nothing removes it (PyTorch 2.13:
``torch/_dynamo/package.py`` calls ``torch._inductor.runtime.cache_dir_utils.cache_dir()`` on import).
``transformers`` and ``sentence-transformers`` import it on their own import, so chapter 7 would leave an
empty folder in /tmp on every run, and the course promises to leave none.

:func:`watch` (called by ``import attnedu``) notes whether that folder is there. When the process ends,
the folder is removed if it was not there before and holds nothing but empty folders. A cache that holds
anything is kept (someone compiled something), and so is a folder the user chose with
``TORCHINDUCTOR_CACHE_DIR``, which is not watched at all.
"""

from __future__ import annotations

import atexit
import getpass
import os
import re
import tempfile
from pathlib import Path

__all__ = ["default_folder", "watch", "remove_if_empty"]

_watched: set[Path] = set()


def default_folder() -> Path:
    """Where PyTorch puts its compile cache when ``TORCHINDUCTOR_CACHE_DIR`` is unset: the same rule as
    ``torch._inductor.runtime.cache_dir_utils.default_cache_dir``, written out so that this module
    imports no torch."""
    try:
        user = getpass.getuser()
    except (KeyError, ModuleNotFoundError, OSError):
        user = f"uid_{os.getuid()}" if hasattr(os, "getuid") else "unknown_user"
    return Path(tempfile.gettempdir()) / ("torchinductor_" + re.sub(r'[\\/:*?"<>|]', "_", user))


def remove_if_empty(folder: Path) -> bool:
    """Remove ``folder`` if it holds no file, only (nested) empty folders. Returns whether it is gone.
    Anything in it, or any error (another process writing there now), keeps it."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return not folder.exists()
    try:
        for _, _, files in os.walk(folder):
            if files:
                return False
        for root, dirs, _ in os.walk(folder, topdown=False):
            for name in dirs:
                os.rmdir(os.path.join(root, name))
        os.rmdir(folder)
    except OSError:
        return False
    return True


def watch() -> None:
    """Remove PyTorch's default compile cache folder when this process ends, if this process made it
    and left it empty. Does nothing when ``TORCHINDUCTOR_CACHE_DIR`` is set or the folder is there now."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return
    folder = default_folder()
    if folder in _watched or folder.exists():
        return
    _watched.add(folder)
    atexit.register(remove_if_empty, folder)
