"""attnedu.corpus: the Python corpus is read from the running interpreter, the same text every
time; the tokenizer round-trips; tiny Shakespeare comes from a checked cache or a checked
download, and offline the error says what to do."""

from __future__ import annotations

import hashlib
import sysconfig
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from attnedu import corpus
from attnedu.corpus import (CharTokenizer, CorpusChecksumError, CorpusUnavailableError, python_corpus,
                            tiny_shakespeare, train_val_split)


# ----------------------------------------------------------------------------- the Python corpus
def test_the_python_corpus_is_about_a_megabyte_of_python_and_the_same_every_time():
    text = python_corpus()
    assert 800_000 < len(text) < 2_000_000
    assert text == python_corpus()
    assert "def " in text and "class " in text and "import " in text


def test_the_python_corpus_is_this_interpreters_standard_library_source_in_a_fixed_order():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    text = python_corpus(ascii_only=False)
    first = (stdlib / "abc.py").read_text(encoding="utf-8")
    assert corpus.PYTHON_MODULES[0] == "abc" and text.startswith(first)
    assert (stdlib / "weakref.py").read_text(encoding="utf-8") in text
    assert list(corpus.PYTHON_MODULES) == sorted(corpus.PYTHON_MODULES)


def test_the_python_corpus_is_ascii_by_default():
    text = python_corpus()
    assert text.isascii() and len(text) == len(python_corpus(ascii_only=False))
    assert len(set(text)) <= 97


def test_max_chars_keeps_a_prefix():
    assert python_corpus(max_chars=1000) == python_corpus()[:1000]
    with pytest.raises(ValueError, match="max_chars must be a positive integer"):
        python_corpus(max_chars=0)


def test_a_python_without_library_sources_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    with pytest.raises(CorpusUnavailableError, match="no standard-library source files"):
        python_corpus()


# ----------------------------------------------------------------------------- tokenizer and split
def test_the_tokenizer_round_trips_and_its_vocabulary_is_the_sorted_characters():
    text = python_corpus(max_chars=20_000)
    tok = CharTokenizer(text)
    assert tok.chars == "".join(sorted(set(text))) and tok.vocab_size == len(set(text))
    ids = tok.encode(text)
    assert len(ids) == len(text) and min(ids) == 0 and max(ids) == tok.vocab_size - 1
    assert tok.decode(ids) == text
    assert tok.decode(torch.tensor(ids[:50])) == text[:50]
    assert CharTokenizer.from_chars(tok.chars).encode("def") == tok.encode("def")


def test_the_tokenizer_names_unknown_characters_and_ids():
    tok = CharTokenizer("abc")
    with pytest.raises(ValueError, match=r"not in the vocabulary: \['z'\]"):
        tok.encode("abz")
    with pytest.raises(ValueError, match=r"\[3\] are outside the vocabulary \[0, 3\)"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match=r"1-D.*\(1, 2\)"):
        tok.decode(torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="non-empty str"):
        CharTokenizer("")


def test_the_split_holds_out_the_end_of_the_text():
    train, val = train_val_split(list(range(100)), 0.1)
    assert torch.equal(train, torch.arange(90)) and torch.equal(val, torch.arange(90, 100))
    assert train.dtype == val.dtype == torch.long


@pytest.mark.parametrize("ids, fraction, words", [
    (list(range(10)), 0.0, "val_fraction must be in"),
    (list(range(10)), 1.0, "val_fraction must be in"),
    (list(range(3)), 0.1, "empty training or validation"),
    ([[1, 2], [3, 4]], 0.5, r"1-D.*\(2, 2\)"),
])
def test_a_bad_split_raises_a_value_error(ids, fraction, words):
    with pytest.raises(ValueError, match=words):
        train_val_split(ids, fraction)


# ----------------------------------------------------------------------------- tiny Shakespeare
FAKE = b"First Citizen:\nBefore we proceed any further, hear me speak.\n"
FAKE_SHA = hashlib.sha256(FAKE).hexdigest()


@pytest.fixture
def offline(monkeypatch):
    """urllib behaves as with no network; the calls are counted."""
    calls = []

    def urlopen(url, timeout=None):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


@pytest.fixture
def online(monkeypatch):
    """urllib serves `online.payload` for any URL."""

    class Server:
        payload = FAKE
        calls: list = []

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return Server.payload

    def urlopen(url, timeout=None):
        Server.calls.append(url)
        return Response()

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return Server


def test_offline_without_a_cached_file_the_error_names_the_file_to_create_and_the_offline_corpus(tmp_path, offline):
    with pytest.raises(CorpusUnavailableError) as info:
        tiny_shakespeare(cache_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "tinyshakespeare.txt") in message
    assert "python_corpus()" in message and "ATTNEDU_CACHE" in message and "Temporary failure" in message
    assert offline == [corpus.TINY_SHAKESPEARE_URL]
    assert isinstance(info.value, RuntimeError) and not (tmp_path / "tinyshakespeare.txt").exists()


def test_download_false_never_touches_the_network(tmp_path, offline):
    with pytest.raises(CorpusUnavailableError, match="download=False"):
        tiny_shakespeare(cache_dir=tmp_path, download=False)
    assert offline == []


def test_a_cached_file_with_the_right_checksum_is_read_without_the_network(tmp_path, offline):
    (tmp_path / "tinyshakespeare.txt").write_bytes(FAKE)
    assert tiny_shakespeare(cache_dir=tmp_path, sha256=FAKE_SHA) == FAKE.decode()
    assert offline == []


def test_the_cache_folder_comes_from_ATTNEDU_CACHE_when_not_given(tmp_path, offline, monkeypatch):
    monkeypatch.setenv("ATTNEDU_CACHE", str(tmp_path))
    (tmp_path / "tinyshakespeare.txt").write_bytes(FAKE)
    assert tiny_shakespeare(sha256=FAKE_SHA) == FAKE.decode()
    assert corpus.get_cache_dir() == tmp_path
    monkeypatch.delenv("ATTNEDU_CACHE")
    assert corpus.get_cache_dir() == Path.home() / ".cache" / "attnedu"


def test_a_corrupt_cached_file_is_refused(tmp_path, offline):
    (tmp_path / "tinyshakespeare.txt").write_bytes(FAKE[:-5])  # a truncated download
    with pytest.raises(CorpusChecksumError, match="Delete it"):
        tiny_shakespeare(cache_dir=tmp_path, sha256=FAKE_SHA)
    with pytest.raises(CorpusChecksumError):
        tiny_shakespeare(cache_dir=tmp_path)  # and against the real checksum


def test_a_download_is_checked_then_cached(tmp_path, online):
    assert tiny_shakespeare(cache_dir=tmp_path / "new", sha256=FAKE_SHA) == FAKE.decode()
    assert (tmp_path / "new" / "tinyshakespeare.txt").read_bytes() == FAKE
    assert tiny_shakespeare(cache_dir=tmp_path / "new", sha256=FAKE_SHA) == FAKE.decode()
    assert len(online.calls) == 1  # the second call read the cache


def test_a_download_with_the_wrong_checksum_is_not_saved(tmp_path, online):
    online.payload = b"<html>rate limited</html>"
    with pytest.raises(CorpusChecksumError, match="not saved"):
        tiny_shakespeare(cache_dir=tmp_path, sha256=FAKE_SHA)
    assert list(tmp_path.iterdir()) == []


def test_the_expected_checksum_is_a_sha256_and_the_url_is_char_rnns():
    assert len(corpus.TINY_SHAKESPEARE_SHA256) == 64 and int(corpus.TINY_SHAKESPEARE_SHA256, 16) >= 0
    assert corpus.TINY_SHAKESPEARE_URL.startswith("https://raw.githubusercontent.com/karpathy/char-rnn/")
