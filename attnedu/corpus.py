"""Text to train a character-level language model on (chapter 6), with no text in the repository.

Two corpora:

* :func:`python_corpus`: about 1.1 MB of Python, the source files of a fixed list of standard
  library modules, read at run time from the interpreter that runs this code. It needs no
  network and no download: every Python installation carries it. The text is the same every
  time for a given Python version (a different version has slightly different files).
  "A GPT that writes Python."
* :func:`tiny_shakespeare`: the classic 1.1 MB file of Karpathy's char-rnn, downloaded once
  (checked against its SHA-256) into a cache folder, for those who are online and would rather
  train on Shakespeare.

Then a character-level tokenizer, :class:`CharTokenizer` (every character is a token), and
:func:`train_val_split`, which holds out the end of the text for validation.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
import urllib.error
import urllib.request
from pathlib import Path

import torch

from attnedu._validate import positive_int

__all__ = [
    "PYTHON_MODULES", "python_corpus", "CharTokenizer", "train_val_split",
    "TINY_SHAKESPEARE_URL", "TINY_SHAKESPEARE_SHA256", "tiny_shakespeare", "get_cache_dir",
    "CorpusUnavailableError", "CorpusChecksumError",
]

# ----------------------------------------------------------------------------- Python
#: The standard-library modules whose source makes up :func:`python_corpus`, in this order.
#: Plain, long-lived modules, present as ``.py`` files from Python 3.10 on; alphabetical, so
#: the validation split (the end of the text) is a few whole modules the model never saw.
PYTHON_MODULES: tuple[str, ...] = (
    "abc", "argparse", "bisect", "calendar", "collections", "colorsys", "contextlib", "copy",
    "csv", "dataclasses", "datetime", "difflib", "enum", "fnmatch", "fractions", "functools",
    "getopt", "gettext", "glob", "graphlib", "heapq", "json", "json.decoder", "json.encoder",
    "json.scanner", "keyword", "linecache", "numbers", "operator", "pprint", "queue", "random",
    "reprlib", "sched", "shlex", "shutil", "statistics", "string", "tempfile", "textwrap",
    "tokenize", "traceback", "types", "warnings", "weakref",
)


def _module_file(stdlib: Path, module: str) -> Path | None:
    """``json.decoder`` -> ``<stdlib>/json/decoder.py``; a package -> its ``__init__.py``."""
    rel = Path(*module.split("."))
    for path in (stdlib / rel.with_suffix(".py"), stdlib / rel / "__init__.py"):
        if path.is_file():
            return path
    return None


def python_corpus(max_chars: int | None = None, *, ascii_only: bool = True) -> str:
    """The source of the standard-library modules in :data:`PYTHON_MODULES`, joined by blank lines.

    The files are read from this interpreter's standard library
    (``sysconfig.get_paths()["stdlib"]``), never from the network, so the text is identical on
    every run with the same Python version: about 1.15 million characters and 96 distinct ones
    on Python 3.11. Line endings are normalised to ``"\\n"``.

    Args:
        max_chars: keep only the first ``max_chars`` characters (``None``: all of it).
        ascii_only: replace the few non-ASCII characters (a handful of accented letters in
            comments and tables) by ``"?"``, so that the vocabulary holds only characters
            the model sees often enough to learn.

    Returns:
        The corpus, a ``str``.

    Raises:
        ValueError: if ``max_chars`` is not a positive integer.
        CorpusUnavailableError: if this Python installation ships no standard-library
            sources (some embedded or stripped-down builds keep only compiled files).
    """
    if max_chars is not None:
        max_chars = positive_int(max_chars, "max_chars")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for module in PYTHON_MODULES:
        path = _module_file(stdlib, module)
        if path is None:  # a module a future Python has removed or turned into something else
            continue
        text = path.read_text(encoding="utf-8")  # PEP 3120: Python source is UTF-8
        texts.append(text.replace("\r\n", "\n").replace("\r", "\n"))
    if not texts:
        raise CorpusUnavailableError(
            f"no standard-library source files found under {stdlib}: this Python installation "
            "ships compiled files only. Install a full Python (python.org, conda, pyenv), or use "
            "tiny_shakespeare() or any text of your own."
        )
    corpus = "\n\n".join(texts)
    if ascii_only:
        corpus = "".join(ch if ord(ch) < 128 else "?" for ch in corpus)
    return corpus if max_chars is None else corpus[: int(max_chars)]


# ----------------------------------------------------------------------------- tokenizer
class CharTokenizer:
    """Every character is a token: the vocabulary is the sorted set of a text's characters.

    >>> tok = CharTokenizer("hello")
    >>> tok.chars, tok.vocab_size
    ('ehlo', 4)
    >>> tok.encode("hole")
    [1, 3, 2, 0]
    >>> tok.decode([1, 3, 2, 0])
    'hole'
    """

    def __init__(self, text: str):
        if not isinstance(text, str) or not text:
            raise ValueError(f"CharTokenizer needs a non-empty str to take its vocabulary from, got {text!r:.40}")
        self.chars: str = "".join(sorted(set(text)))
        self.stoi: dict[str, int] = {ch: i for i, ch in enumerate(self.chars)}
        self.itos: dict[int, str] = dict(enumerate(self.chars))

    @classmethod
    def from_chars(cls, chars: str) -> "CharTokenizer":
        """The tokenizer whose vocabulary is ``chars`` (as saved in a checkpoint)."""
        return cls(chars)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """``str`` -> list of token ids. Characters outside the vocabulary raise ``ValueError``."""
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError:
            unknown = sorted(set(text) - set(self.chars))
            raise ValueError(f"characters not in the vocabulary: {unknown!r} "
                             f"(the vocabulary has {self.vocab_size} characters)") from None

    def decode(self, ids) -> str:
        """A sequence of token ids (list, or 1-D tensor) -> ``str``."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"decode takes a 1-D sequence of ids, got a tensor of shape {tuple(ids.shape)}")
            ids = ids.tolist()
        try:
            return "".join(self.itos[int(i)] for i in ids)
        except KeyError:
            bad = sorted({int(i) for i in ids if int(i) not in self.itos})
            raise ValueError(f"token ids {bad} are outside the vocabulary [0, {self.vocab_size})") from None

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def train_val_split(ids, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a sequence of token ids into its first ``1 - val_fraction`` and its last ``val_fraction``.

    The split is by position, not at random: the validation text is text the model never
    saw, rather than the same sentences chopped differently.

    Args:
        ids: ``(N,)`` token ids (list or 1-D tensor).
        val_fraction: the share held out, in ``(0, 1)``.

    Returns:
        ``(train, val)``, two 1-D ``torch.long`` tensors of ``N - n_val`` and
        ``n_val = round(N * val_fraction)`` ids.
    """
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() != 1:
        raise ValueError(f"ids must be a 1-D sequence of token ids, got shape {tuple(ids.shape)}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    n_val = round(len(ids) * val_fraction)
    if n_val < 1 or n_val >= len(ids):
        raise ValueError(f"val_fraction={val_fraction} of {len(ids)} ids leaves an empty training "
                         "or validation part: use more text")
    return ids[: len(ids) - n_val], ids[len(ids) - n_val:]


# ----------------------------------------------------------------------------- tiny Shakespeare
#: Where nanoGPT downloads tiny Shakespeare from: Karpathy's char-rnn repository.
TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
#: SHA-256 of that file (1,115,394 bytes).
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
_FILENAME = "tinyshakespeare.txt"


class CorpusUnavailableError(RuntimeError):
    """The corpus is neither in the cache nor downloadable (offline, or downloads turned off)."""


class CorpusChecksumError(RuntimeError):
    """A cached or downloaded file is not the expected one (its SHA-256 differs)."""


def get_cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder for downloaded corpora: ``path`` if given, else ``$ATTNEDU_CACHE``, else
    ``~/.cache/attnedu``."""
    if path is not None:
        return Path(path).expanduser()
    env = os.environ.get("ATTNEDU_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "attnedu"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tiny_shakespeare(cache_dir: str | os.PathLike | None = None, download: bool = True, *,
                     url: str = TINY_SHAKESPEARE_URL, sha256: str = TINY_SHAKESPEARE_SHA256,
                     timeout: float = 30.0) -> str:
    """Tiny Shakespeare (40,000 lines from the plays), from the cache or downloaded once.

    The file is looked for at ``<cache>/tinyshakespeare.txt``, where ``<cache>`` is
    ``cache_dir``, else ``$ATTNEDU_CACHE``, else ``~/.cache/attnedu``. If it is missing and
    ``download`` is true it is fetched from ``url``; either way its SHA-256 must be ``sha256``
    before it is used (a download is checked before it is written).

    Returns:
        The text, a ``str`` of 1,115,394 characters.

    Raises:
        CorpusUnavailableError: the file is not cached and cannot be downloaded (offline, or
            ``download=False``); the message says where to put the file.
        CorpusChecksumError: the cached or downloaded file is not the expected one.
    """
    folder = get_cache_dir(cache_dir)
    path = folder / _FILENAME
    if path.is_file():
        data = path.read_bytes()
        if _sha256(data) != sha256:
            raise CorpusChecksumError(
                f"{path} is not tiny Shakespeare: its SHA-256 is {_sha256(data)}, expected {sha256} "
                "(a partial or edited file?). Delete it and call tiny_shakespeare() again to download it afresh."
            )
        return data.decode("utf-8")

    fix = (f"Download {url} on a machine that is online and save it as {path} "
           f"(or in the folder named by the ATTNEDU_CACHE environment variable), "
           "or train on attnedu.corpus.python_corpus(), which needs no network.")
    if not download:
        raise CorpusUnavailableError(f"tiny Shakespeare is not in the cache and download=False. {fix}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as exc:  # offline, DNS failure, timeout, HTTP error
        raise CorpusUnavailableError(f"could not download tiny Shakespeare ({exc}). {fix}") from exc
    if _sha256(data) != sha256:
        raise CorpusChecksumError(
            f"the file downloaded from {url} has SHA-256 {_sha256(data)}, expected {sha256}: "
            "not saved. The server may have sent an error page; try again later."
        )
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # atomic: an interrupted download never leaves a half file at `path`
    return data.decode("utf-8")
