"""attnedu.retrieval.bm25 and .fts5: our tokenizer splits text as FTS5's unicode61 does,
and our BM25 scores equal SQLite FTS5's bm25() (negated) to rounding, on a written
corpus and on generated ones."""

from __future__ import annotations

import math
import sqlite3
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnedu.retrieval import BM25, bm25_weight, fts5_index, fts5_match_query, fts5_search, tokenize

CORPUS = [
    "Attention is a weighted average: each query scores every key, and a softmax turns the scores into weights.",
    "The scaled dot-product attention divides Q·Kᵀ by √d, so that the softmax does not saturate when d is large.",
    "Multi-head attention runs h heads in parallel; each head has its own projections W_Q, W_K and W_V.",
    "Self-attention lets every token attend to every other token — its cost grows as n² with the length n.",
    "A causal mask hides the future: token t may only attend to tokens 0…t. Decoders (GPT) use it; encoders don't.",
    "Nadaraya and Watson's kernel regression (1964) is the oldest attention mechanism: a Gaussian kernel's weights.",
    "Positional encodings — sinusoidal, learned, or RoPE (rotary) — tell attention where each token sits.",
    "Le mécanisme d'attention « pondère » les valeurs; la requête compare chaque clé. Très élégant.",
    "Über die Aufmerksamkeit: Schlüssel, Abfrage und Wert. Die Gewichte summieren sich zu Eins.",
    "Retrieval-augmented generation (RAG) retrieves passages with BM25 or dense embeddings, then the decoder attends.",
    "BM25 scores a document by term frequency, inverse document frequency and length; k1=1.2 and b=0.75 by default.",
    "Reciprocal rank fusion adds 1/(60 + rank) over rankings: hybrid search without tuning the score scales.",
    "",
    "A KV cache keeps the keys and values of past tokens, so generating each new token costs O(n), not O(n²).",
    "FAISS builds HNSW graphs and IVF cells; approximate search trades recall@10 for queries per second.",
    "Café, naïve, coöperate, façade, jalapeño, smörgåsbord, São Paulo, Øresund, Łódź, İstanbul, ﬁle.",
]

QUERIES = [
    "attention",
    "softmax weights",
    "attention attention heads",  # a repeated term counts twice, as in FTS5
    "the",  # in many documents: IDF clamped to 1e-6
    "token attend",
    "cafe naive",
    "MÉCANISME d'attention",
    "Schlüssel Wert",
    "bm25 k1",
    "São Łódź istanbul",
    "recall@10 queries",
    "unicorn",  # in no document
    "n²",
    "GPT-2 (decoder) OR encoder",  # OR and parentheses are text here, not FTS5 syntax
]


def fts5_all_scores(conn, query, table="documents"):
    """{rowid: -bm25} for every document FTS5 matches: the reference."""
    match = fts5_match_query(query)
    if not match:
        return {}
    rows = conn.execute(f"SELECT rowid, -bm25({table}) FROM {table} WHERE {table} MATCH ?", (match,))
    return dict(rows.fetchall())


def assert_equal_to_fts5(docs, queries, conn=None):
    bm25 = BM25(docs)
    conn = conn or fts5_index(docs)
    for query in queries:
        ours = bm25.scores(query)
        ref = fts5_all_scores(conn, query)
        assert set(np.flatnonzero(ours > 0).tolist()) == set(ref), query
        for doc, score in ref.items():
            assert ours[doc] == pytest.approx(score, rel=1e-12, abs=1e-12), (query, doc)


# ------------------------------------------------------------------------ tokenizer
def fts5_tokens(texts):
    """FTS5's own tokens of each text, read back through an fts5vocab table."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(body)")
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    conn.executemany("INSERT INTO t(rowid, body) VALUES (?, ?)", enumerate(texts))
    out = [[] for _ in texts]
    for term, doc in conn.execute("SELECT term, doc FROM v ORDER BY doc, offset"):
        out[doc].append(term)
    return out


def test_tokenize_folds_case_and_diacritics_and_splits_on_everything_else():
    assert tokenize("Über-Attention: naïve Q·Kᵀ, 2024!") == ["uber", "attention", "naive", "q", "kᵀ", "2024"]
    assert tokenize("don't") == ["don", "t"]
    assert tokenize("cafe\u0301 CAFÉ") == ["cafe", "cafe"]  # decomposed and composed é
    assert tokenize("ẩ") == ["ẩ"]  # two diacritics: remove_diacritics=1 keeps the letter as it is
    assert tokenize("snake_case x+y") == ["snake", "case", "x", "y"]
    assert tokenize(" \u0301 ?! ") == []


EDGE_TEXTS = [
    "e\u0301te\u0301 \u0301abc a\u0301\u0301b",  # diacritics after a letter, at a token's start, doubled
    "İstanbul ΣΊΣΥΦΟΣ ſtraße ǅemal Ǳ µ ﬁ ½ ² ⅷ",
    "日本語のテキスト 中文 한국어 עברית العربية हिन्दी",
    "tab\there\nnew line\u00a0nbsp\u2009thin\u200bzero-width",
]


def test_tokenize_equals_fts5_on_hard_strings_and_the_corpus():
    texts = EDGE_TEXTS + CORPUS
    assert [tokenize(t) for t in texts] == fts5_tokens(texts)


def test_tokenize_equals_fts5_for_every_character_of_the_latin_greek_cyrillic_and_punctuation_blocks():
    """Each character between two letters: a separator, dropped, or folded exactly as FTS5 does.

    FTS5's tables come from Unicode 6.1: FTS5 keeps a character assigned later inside the term,
    unchanged, where we (with Python's newer Unicode data) split on it or fold its case. That is
    the only difference allowed, and there is none in the main Latin blocks."""
    latin = [*range(0x00, 0x250), *range(0x1E00, 0x1F00)]
    others = [*range(0x250, 0x800), *range(0x2000, 0x2070), *range(0x2C60, 0x2C80), *range(0x3000, 0x3100),
              *range(0xA720, 0xA800), *range(0xFF00, 0xFFF0)]
    codes = [c for c in latin + others if not 0xD800 <= c <= 0xDFFF and c != 0]
    theirs = fts5_tokens([f"q{chr(c)}q" for c in codes])
    for c, ref in zip(codes, theirs):
        ours = tokenize(f"q{chr(c)}q")
        if ours != ref:
            assert c not in latin, f"U+{c:04X} {unicodedata.name(chr(c), '?')}: {ours} != FTS5 {ref}"
            assert ref == [f"q{chr(c)}q"], f"U+{c:04X} {unicodedata.name(chr(c), '?')}: {ours} != FTS5 {ref}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(max_codepoint=0x24F, exclude_categories=("Cs",)), max_size=40))
def test_tokenize_equals_fts5_on_random_latin_text(text):
    text = text.replace("\x00", "")  # SQLite text ends at NUL
    assert tokenize(text) == fts5_tokens([text])[0]


# -------------------------------------------------------------------------- BM25
def test_bm25_by_hand():
    """N = 3 documents, avgdl = (2 + 3 + 1) / 3 = 2; "cat" is in one: n = 1."""
    bm25 = BM25(["cat dog", "dog dog bird", "fish"])
    idf = math.log((3 - 1 + 0.5) / (1 + 0.5))
    expected = idf * (1 * 2.2) / (1 + 1.2 * (1 - 0.75 + 0.75 * 2 / 2))
    np.testing.assert_allclose(bm25.scores("cat"), [expected, 0, 0])
    assert bm25.avgdl == 2 and bm25.n_docs == 3 and bm25.df[bm25.vocabulary["dog"]] == 2
    docs, counts = bm25.postings("dog")
    assert docs.tolist() == [0, 1] and counts.tolist() == [1, 2]
    assert bm25.idf("dog") == 1e-6  # in 2 of 3 documents: ln(1.5 / 2.5) < 0, clamped as FTS5 does


def test_bm25_equals_fts5_on_a_written_corpus():
    assert_equal_to_fts5(CORPUS, QUERIES)


def test_search_ranks_as_fts5_does():
    bm25, conn = BM25(CORPUS), fts5_index(CORPUS)
    for query in QUERIES:
        for k in (1, 3, 100):
            s1, i1 = bm25.search(query, k)
            s2, i2 = fts5_search(conn, query, k)
            assert i1.tolist() == i2.tolist(), query
            np.testing.assert_allclose(s1, s2, rtol=1e-12)


def test_search_returns_only_matches_best_first_and_ties_by_id():
    bm25 = BM25(["a b", "c", "a b", "a", "b a"])
    scores, ids = bm25.search("a", k=10)
    assert ids.tolist() == [3, 0, 2, 4]  # the short document first, then the tie in id order
    assert scores[1] == scores[2] == scores[3] and scores[0] > scores[1]
    assert bm25.search("a", k=2)[1].tolist() == [3, 0]


def test_a_query_without_terms_gives_an_empty_result():
    bm25 = BM25(CORPUS)
    for query in ("", "?!  ...", "unicorn"):
        scores, ids = bm25.search(query, 5)
        assert scores.shape == ids.shape == (0,)
        assert fts5_search(CORPUS, query, 5)[1].shape == (0,)
    assert not bm25.scores("").any()


def test_fts5_search_builds_a_table_from_documents_and_accepts_another_name():
    conn = fts5_index(CORPUS[:5], table="passages")
    ours = BM25(CORPUS[:5]).search("attention", 3)[1]
    assert fts5_search(conn, "attention", 3, table="passages")[1].tolist() == ours.tolist()


WORDS = ["attention", "Attention", "ATTENTION!", "tête", "tete", "naïve", "naive", "q·k", "x_1", "2024",
         "l'été", "über", "uber", "softmax", "key", "value", "query", "the", "a", "—", "...", "é", "ß"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    docs=st.lists(st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join), min_size=1, max_size=15),
    queries=st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join), min_size=1, max_size=4),
)
def test_bm25_equals_fts5_on_generated_corpora(docs, queries):
    assert_equal_to_fts5(docs, queries)


@pytest.mark.parametrize("k1, b", [(0.0, 0.75), (2.0, 0.0), (1.2, 1.0)])
def test_other_parameters_follow_the_formula(k1, b):
    docs = ["a a b", "b c", "c c c d", "e"]
    bm25 = BM25(docs, k1=k1, b=b)
    avgdl = 10 / 4
    idf_a = math.log((4 - 1 + 0.5) / 1.5)
    expected = idf_a * (2 * (k1 + 1)) / (2 + k1 * (1 - b + b * 3 / avgdl))
    assert bm25.scores("a")[0] == pytest.approx(expected)


# ------------------------------------------------------- the weight of one term (chapter 11's exercise 1)
def test_bm25_weight_by_hand():
    # N = 8, n = 3, f = 1, |D| = avgdl: the IDF is ln(5.5 / 3.5) and the fraction is 1
    assert bm25_weight(1, 3, 6, 6.0, 8) == pytest.approx(math.log(5.5 / 3.5))
    assert bm25_weight(1, 4, 6, 6.0, 8) == pytest.approx(1e-6)  # ln(1) = 0 is floored
    assert bm25_weight(0, 3, 6, 6.0, 8) == 0.0
    assert bm25_weight([1, 2], 3, [6, 6], 6.0, 8).shape == (2,)
    f, dl = 3.0, 9.0  # k1 = 2, b = 0.5, avgdl = 6: the length factor is 1 - 0.5 + 0.5 * 1.5 = 1.25
    assert bm25_weight(f, 1, dl, 6.0, 10, k1=2.0, b=0.5) == pytest.approx(math.log(9.5 / 1.5) * 9 / (3 + 2 * 1.25))


@pytest.mark.parametrize("k1, b", [(1.2, 0.75), (0.5, 0.0), (2.0, 1.0)])
def test_bm25_scores_are_the_bm25_weights_summed_over_the_query(k1, b):
    bm25 = BM25(CORPUS, k1=k1, b=b)
    for query in QUERIES:
        total = np.zeros(len(CORPUS))
        for term in tokenize(query):
            ids, counts = bm25.postings(term)
            if ids.size:
                total[ids] += bm25_weight(counts, len(ids), bm25.doc_len[ids], bm25.avgdl, len(CORPUS), k1=k1, b=b)
        np.testing.assert_allclose(total, bm25.scores(query), rtol=1e-12)


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: BM25([]), "documents is empty"),
        (lambda: BM25("one text"), "got one string; wrap it"),
        (lambda: BM25(["ok", None]), r"documents\[1\] is a NoneType, not a string"),
        (lambda: BM25(["ok", 3]), r"documents\[1\] is a int"),
        (lambda: BM25(42), "documents must be a list of strings"),
        (lambda: BM25(["a"], k1=-1), "k1 must be a finite number >= 0"),
        (lambda: BM25(["a"], k1=float("nan")), "k1 must be a finite number >= 0"),
        (lambda: BM25(["a"], b=1.5), r"b must be in \[0, 1\]"),
        (lambda: BM25(["a"]).scores(["a"]), "query must be a string"),
        (lambda: BM25(["a"]).search("a", 0), "k must be a positive integer"),
        (lambda: BM25(["a"]).search("a", 2.0), "k must be a positive integer"),
        (lambda: tokenize(None), "text must be a string"),
        (lambda: fts5_search(["a"], "a", 1, table="x; DROP TABLE y"), "plain SQL name"),
        (lambda: fts5_search(["a"], None, 1), "query must be a string"),
        (lambda: fts5_search(["a"], "a", -1), "k must be a positive integer"),
        (lambda: fts5_index([]), "documents is empty"),
        (lambda: bm25_weight(1, 9, 6, 6.0, 8), r"n must be an integer in \[0, n_docs = 8\]"),
        (lambda: bm25_weight(1, 2.5, 6, 6.0, 8), "n must be an integer"),
        (lambda: bm25_weight(1, 0, 6, 6.0, 0), "n_docs must be a positive integer"),
        (lambda: bm25_weight(1, 3, 6, 0.0, 8), "avgdl must be > 0"),
        (lambda: bm25_weight(1, 3, 6, 6.0, 8, b=1.5), r"b in \[0, 1\]"),
        (lambda: bm25_weight(1, 3, 6, 6.0, 8, k1=-1), "k1 must be a finite number >= 0"),
        (lambda: bm25_weight("1", 3, 6, 6.0, 8), "f must be an array of numbers"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_k_larger_than_the_collection_returns_every_match():
    scores, ids = BM25(["a", "b", "a c"]).search("a", k=1000)
    assert sorted(ids.tolist()) == [0, 2]
