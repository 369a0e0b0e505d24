"""attnedu.rag (chapter 12): chunking, prompt assembly, grounding measures, the tiny reader and
its invented world, and "ask the course". SmolLM2 and MiniLM are loaded once, for the few tests
at the end that need them (a few seconds each after loading)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from attnedu import coursebook
from attnedu.rag import (
    Answer,
    Chunk,
    CourseIndex,
    FactReader,
    FactWorld,
    build_messages,
    build_prompt,
    check_citations,
    chunk_sections,
    chunk_sentences,
    chunk_words,
    cited_sources,
    exact_match,
    format_sources,
    generate_answer,
    invented_names,
    lenient_substring_match,
    normalize_answer,
    pad_facts,
    reader_accuracy,
    section_link,
    split_sentences,
    strip_citations,
    substring_match,
    supports,
    reader_loss,
    token_f1,
    train_reader,
    truncate_words,
)


# ------------------------------------------------------------------ chunking
@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 10, 37, 100])
@pytest.mark.parametrize("size, overlap", [(1, 0), (4, 0), (4, 1), (4, 3), (10, 5), (50, 10)])
def test_fixed_size_chunks_cover_the_text_in_order_and_overlap_exactly(n, size, overlap):
    words = [f"w{i}" for i in range(n)]
    chunks = [c.split() for c in chunk_words(" ".join(words), size, overlap)]
    if n == 0:
        assert chunks == []
        return
    step = size - overlap
    assert len(chunks) == max(1, -(-(n - overlap) // step))  # ceil((n - o) / (s - o))
    for i, chunk in enumerate(chunks):
        assert chunk == words[i * step:i * step + size]  # chunk i starts at i (s - o)
        assert len(chunk) == size or i == len(chunks) - 1  # only the last may be short
    for a, b in zip(chunks, chunks[1:]):
        assert a[-overlap:] == b[:overlap] if overlap else a[-1] != b[0]
    assert chunks[-1][-1] == words[-1]  # the end of the text is in the last chunk
    assert len(chunks) == 1 or len(chunks[-1]) > overlap  # no chunk lies inside the one before


def test_chunk_words_by_hand_and_on_any_white_space():
    assert chunk_words("a b c d e f g h i j", 4, 1) == ["a b c d", "d e f g", "g h i j"]
    assert chunk_words("a b c d e f g h i j", 4) == ["a b c d", "e f g h", "i j"]
    assert chunk_words(" one\ntwo\t three  ", 2, 1) == ["one two", "two three"]
    assert chunk_words("   ", 3) == []


@pytest.mark.parametrize("size, overlap", [(0, 0), (3, 3), (3, 5), (3, -1), (2.5, 0), (True, 0)])
def test_chunk_words_rejects_sizes_that_never_move_on(size, overlap):
    with pytest.raises(ValueError, match="size|overlap"):
        chunk_words("a b c", size, overlap)


def test_sentences_are_split_at_ends_but_not_after_abbreviations_or_in_numbers():
    text = "Attention is a weighted sum, e.g. of values. Is 3.14 pi? Yes! It (mostly) is.\n\nA new paragraph"
    assert split_sentences(text) == ["Attention is a weighted sum, e.g. of values.", "Is 3.14 pi?", "Yes!",
                                     "It (mostly) is.", "A new paragraph"]


def test_sentence_chunks_keep_sentences_whole_within_the_limit():
    text = "One two three. Four five. Six seven eight nine. Ten. Eleven twelve thirteen fourteen fifteen sixteen."
    chunks = chunk_sentences(text, 5)
    assert " ".join(chunks) == " ".join(split_sentences(text))  # nothing lost, nothing repeated
    sentences = split_sentences(text)
    for c in chunks:
        assert len(c.split()) <= 5 or c in sentences  # only a single long sentence exceeds the limit
    overlapping = chunk_sentences(text, 7, overlap=1)
    assert overlapping[0] == "One two three. Four five."
    assert overlapping[1].startswith("Four five.")  # the last sentence carried over


def test_chunk_sections_keep_the_section_label_and_title():
    sections = [SimpleNamespace(id="ch01-a", page="p", title="A", text="w " * 25),
                SimpleNamespace(id="ch01-b", page="p", title="B", text="   ")]
    chunks = chunk_sections(sections, "words", size=10, overlap=0)
    assert [c.id for c in chunks] == ["ch01-a#0", "ch01-a#1", "ch01-a#2"]
    assert all(isinstance(c, Chunk) and c.section == "ch01-a" for c in chunks)
    assert str(chunks[0]).startswith("A\n\n")
    assert [c.text for c in chunk_sections(sections, "section")] == [("w " * 25).strip()]
    with pytest.raises(ValueError, match="strategy"):
        chunk_sections(sections, "paragraphs")


def test_chunk_sections_of_the_book_come_from_real_labels():
    sections = coursebook.sections()[:20]
    labels = {s.id for s in sections}
    chunks = chunk_sections(sections, "sentences", size=60)
    assert chunks and {c.section for c in chunks} <= labels


# ------------------------------------------------------------------ prompts
def test_sources_are_numbered_from_one_one_line_each():
    assert format_sources(["The cat.", "  A\n\ndog  ran. "]) == "[1] The cat.\n[2] A dog ran."
    assert format_sources([]) == ""
    twelve = format_sources([f"p{i}" for i in range(12)]).split("\n")
    assert [re.match(r"\[(\d+)\] ", line).group(1) for line in twelve] == [str(i) for i in range(1, 13)]


def test_the_prompt_holds_instruction_sources_and_question_in_order():
    prompt = build_prompt("What is X?", ["X is 1.", "Y is 2."])
    assert prompt.index("Answer the question") < prompt.index("[1] X is 1.") < prompt.index("[2] Y is 2.")
    assert prompt.endswith("Question: What is X?\nAnswer:")
    assert "Sources" not in build_prompt("What is X?", [])


def test_chat_messages_put_the_instruction_in_the_system_turn():
    messages = build_messages("What is X?", ["X is 1."])
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "cite" in messages[0]["content"].lower() and messages[1]["content"].startswith("Sources:\n[1] X is 1.")
    assert build_messages("What is X?", [])[1]["content"] == "What is X?"


@pytest.mark.parametrize("bad", ["one passage", [1, 2], None])
def test_passages_must_be_a_list_of_strings(bad):
    with pytest.raises(ValueError, match="passages"):
        format_sources(bad)


def test_truncate_words_marks_the_cut():
    assert truncate_words("a b c d", 2) == "a b ..."
    assert truncate_words("a  b", 5) == "a b"


# ------------------------------------------------------------------ grounding
def test_normalisation_is_squads():
    assert normalize_answer("The  Capital, of Morsk!") == "capital of morsk"
    assert normalize_answer("An apple a day") == "apple day"


PITFALLS = [  # prediction, gold, substring says, lenient says, exact match, a person says right
    ("Morsk", "Morsk", True, True, 1.0, True),
    ("It is not Morsk.", "Morsk", True, True, 0.0, False),  # negation
    ("Morsk? No, Dravel.", "Morsk", True, True, 0.0, False),
    ("Morskavel", "Morsk", True, True, 0.0, False),  # a longer word
    ("The capital is Mor", "Morsk", False, False, 0.0, False),  # truncated
    ("", "Morsk", False, True, 0.0, False),  # empty: inside every string
    ("Morsk", "Morsk Bay", False, True, 0.0, False),
]


@pytest.mark.parametrize("pred, gold, sub, lenient, em, right", PITFALLS)
def test_substring_matching_misjudges_the_pitfalls_and_exact_match_does_not(pred, gold, sub, lenient, em, right):
    assert substring_match(pred, gold) is sub
    assert lenient_substring_match(pred, gold) is lenient
    assert exact_match(pred, gold) == em
    if sub and not right:
        assert exact_match(pred, gold) == 0.0  # exact match is not fooled where substring matching is


def test_token_f1_by_hand():
    assert token_f1("The capital is Morsk.", "Morsk") == pytest.approx(0.5)
    assert token_f1("Morsk Morsk", "Morsk") == pytest.approx(2 / 3)  # counted with multiplicity
    assert token_f1("not Morsk", "Morsk") == pytest.approx(2 / 3)  # negation still gets credit
    assert token_f1("", "Morsk") == 0.0 and token_f1("the", "a") == 1.0 and token_f1("x", "y") == 0.0


@pytest.mark.parametrize("answer, cited", [
    ("Morsk [1].", [1]), ("[2] then [1]", [2, 1]), ("both [1, 3]", [1, 3]), ("[1][2] and [1]", [1, 2]),
    ("[12]", [12]), ("[ 4 ]", [4]), ("none", []), ("[a] [1-2] 2024 [note] [4,]", []),
])
def test_citations_are_parsed_in_order_once_each(answer, cited):
    assert cited_sources(answer) == cited


def test_support_needs_the_claims_words_in_order_not_inside_another_word():
    passage = "The capital of Veltria is Morskavel, not Dravel."
    assert not supports(passage, "Morsk")
    assert supports(passage, "capital of Veltria is Morskavel")
    assert not supports(passage, "Veltria capital")
    assert not supports(passage, "")


def test_check_citations_tells_a_wrong_citation_from_a_right_one():
    sources = ["The river of Veltria is the Sarn.", "The capital of Veltria is Morsk."]
    right = check_citations("The capital is Morsk [2].", sources, claim="Morsk")
    wrong = check_citations("The capital is Morsk [1].", sources, claim="Morsk")
    invented = check_citations("Morsk [3].", sources, claim="Morsk")
    assert (right.cited, right.valid, right.supported) == ([2], True, True)
    assert (wrong.valid, wrong.supported) == (True, False)
    assert (invented.valid, invented.supported) == (False, False)
    assert strip_citations("Morsk [2], yes [1, 3].") == "Morsk , yes ."


# ------------------------------------------------------------------ the invented world and the reader
def test_invented_names_are_distinct_and_reproducible():
    names = invented_names(80, seed=3)
    assert len(set(names)) == 80 and names == invented_names(80, seed=3) and names != invented_names(80, seed=4)
    assert all(n[0].isupper() and n.isalpha() for n in names)


def test_the_world_writes_facts_and_questions():
    world = FactWorld(["Veltria"], ["capital"], ["Morsk"])
    assert world.sentence((0, 0, 0)) == "The capital of Veltria is Morsk."
    assert world.question(0, 0) == "What is the capital of Veltria?"
    with pytest.raises(ValueError, match="out of range"):
        world.sentence((1, 0, 0))


def test_the_knowledge_base_has_distinct_entity_attribute_pairs():
    world = FactWorld.invent(seed=0)
    kb = world.knowledge_base(100, seed=1)
    assert len({(e, a) for e, a, _ in kb}) == 100 and kb == world.knowledge_base(100, seed=1)
    with pytest.raises(ValueError, match="pairs"):
        world.knowledge_base(len(world.entities) * len(world.attributes) + 1)


def test_every_batch_draws_new_facts_and_asks_about_one_of_its_own():
    world = FactWorld.invent(seed=0)
    g = torch.Generator().manual_seed(0)
    (f1, q1, a1), (f2, q2, a2) = world.batch(256, 6, g), world.batch(256, 6, g)
    assert f1.shape == (256, 6, 3) and q1.shape == (256, 2) and a1.shape == (256,)
    for f, q, a in [(f1, q1, a1), (f2, q2, a2)]:
        match = (f[:, :, 0] == q[:, None, 0]) & (f[:, :, 1] == q[:, None, 1])  # (B, F)
        assert (match.sum(1) == 1).all(), "exactly one fact answers each question"
        assert (f[:, :, 2][match] == a).all(), "and its value is the answer"
        pairs = f[:, :, 0] * 10 + f[:, :, 1]
        assert all(len(set(row.tolist())) == 6 for row in pairs), "distinct (entity, attribute) pairs"
    # re-randomised: the same (entity, attribute) gets independent values in the two batches
    v1 = {(int(e), int(a)): int(v) for e, a, v in f1.reshape(-1, 3)}
    v2 = {(int(e), int(a)): int(v) for e, a, v in f2.reshape(-1, 3)}
    shared = v1.keys() & v2.keys()
    assert len(shared) > 50 and np.mean([v1[k] != v2[k] for k in shared]) > 0.8
    assert not torch.equal(f1, f2)


def test_the_reader_ignores_the_order_of_facts_and_the_padding():
    world = FactWorld.invent(seed=0)
    torch.manual_seed(0)
    reader = FactReader.for_world(world).eval()
    f, q, _ = world.batch(8, 5, torch.Generator().manual_seed(1))
    logits = reader(f, q)
    assert logits.shape == (8, len(world.values))
    torch.testing.assert_close(reader(f.flip(1), q), logits, atol=1e-5, rtol=1e-5)
    padded = torch.cat([f, torch.zeros(8, 2, 3, dtype=torch.long)], dim=1)
    mask = torch.ones(8, 7, dtype=torch.bool)  # True for the real facts, the course's convention
    mask[:, 5:] = False
    torch.testing.assert_close(reader(padded, q, mask), logits, atol=1e-5, rtol=1e-5)
    assert reader.attention(f, q).shape == (8, 2, 6)
    assert reader(f[:, :0], q).shape == (8, len(world.values))  # no context at all
    with pytest.raises(ValueError, match="facts"):
        reader(f.float(), q)


def test_pad_facts_marks_the_real_facts_true_and_the_padding_false():
    facts, mask = pad_facts([[(1, 2, 3)], [], [(0, 0, 0), (4, 1, 2)]])
    assert facts.shape == (3, 2, 3) and mask.tolist() == [[True, False], [False, False], [True, True]]
    assert facts[0, 0].tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="n_facts"):
        pad_facts([[(1, 2, 3)] * 3], n_facts=2)


def test_the_reader_learns_to_copy_far_beyond_chance_and_is_at_chance_without_context(one_thread):
    world = FactWorld.invent(seed=0)
    torch.manual_seed(0)
    reader = FactReader.for_world(world)
    history = train_reader(reader, world, iters=200, seed=0, progress=False)
    assert history.accuracy[-1] > 0.9 and history.accuracy[0] < 0.1
    assert history.eval_iters == [0, 50, 100, 150, 200]
    f, q, a = world.batch(512, 6, torch.Generator().manual_seed(99))
    assert reader_accuracy(reader, f, q, a) > 0.9
    assert reader_accuracy(reader, f[:, :0], q, a) < 0.1  # nothing to copy: chance is 1/40
    assert history.loss[-1] < history.loss[0] / 5


def test_training_is_chapter_6s_loop_seeded_and_honours_the_time_cap(monkeypatch):
    from attnedu.train import History, train

    world = FactWorld.invent(seed=0)
    torch.manual_seed(0)
    wrapped = train_reader(FactReader.for_world(world), world, iters=5, seed=3, progress=False)
    torch.manual_seed(0)
    model = FactReader.for_world(world)
    held_out = world.batch(512, 6, torch.Generator().manual_seed(4))
    direct = train(model, lambda g: world.batch(64, 6, g), loss_fn=reader_loss, iters=5, lr=3e-3, warmup=5,
                   eval_fn=lambda: {"accuracy": reader_accuracy(model, *held_out)}, eval_every=50, seed=3,
                   progress=False)
    assert isinstance(wrapped, History) and wrapped.loss == direct.loss and wrapped.accuracy == direct.accuracy
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(train_reader(FactReader.for_world(world), world, iters=5, seed=3, progress=False).loss)
    assert runs[0] == runs[1]
    monkeypatch.setenv("ATTNEDU_MAX_TRAIN_SECONDS", "0")
    history = train_reader(FactReader.for_world(world), world, iters=50, progress=False)
    assert len(history.loss) == 1 and history.stopped_early


# ------------------------------------------------------------------ ask the course
class HashEncoder:
    """A stand-in for MiniLM: unit vectors from the words' hashes (bag of words)."""

    def encode(self, texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", t.lower()):
                out[i, sum(map(ord, w)) % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


class EchoLM:
    """A stand-in chat model that cites source 2 and records what it was asked."""

    def __init__(self):
        self.asked = []

    def chat(self, messages, max_new_tokens=48):
        self.asked.append(messages)
        return "It is in the second source [2], and nowhere else [7]."


@pytest.fixture(scope="module")
def small_course():
    sections = [s for s in coursebook.sections() if s.page.startswith(("notebooks/02", "notebooks/06"))]
    return CourseIndex(sections, HashEncoder(), embed_words=32)


def test_ask_maps_citations_to_real_section_labels(small_course):
    lm = EchoLM()
    answer = small_course.ask("What does a KV cache store?", lm, k=3)
    assert len(answer.sources) == 3 and answer.cited == [2, 7]
    assert answer.citations == [answer.sources[1]] and answer.invalid_citations == [7]
    labels = {s.id for s in coursebook.sections()}
    assert answer.citations[0].id in labels
    assert len({s.id for s in answer.sources}) == 3
    assert {s.page for s in answer.sources} <= {s.page for s in small_course.sections}
    user = lm.asked[0][1]["content"]
    assert re.findall(r"^\[(\d)\] ", user, flags=re.M) == ["1", "2", "3"]
    md = answer.markdown()
    assert f"#{answer.citations[0].id})" in md and "**cited**" in md and "[7]" in md


def test_section_links_are_relative_to_this_chapter():
    assert section_link("notebooks/06-gpt/06-gpt", "ch06-x") == "../06-gpt/06-gpt.html#ch06-x"
    assert section_link("book/how-to-use") == "../../book/how-to-use.html"


def test_the_index_rejects_what_it_cannot_use():
    with pytest.raises(ValueError, match="sections is empty"):
        CourseIndex([], HashEncoder())
    with pytest.raises(ValueError, match="encoder"):
        CourseIndex(coursebook.sections()[:2], object())
    with pytest.raises(ValueError, match="chat"):
        CourseIndex(coursebook.sections()[:3], HashEncoder()).ask("a question?", object())
    assert isinstance(Answer("q", "a", [], []).citations, list)


@pytest.fixture(scope="module")
def smollm():
    from attnedu.pretrained import ModelNotFoundError, SmolLM

    try:
        return SmolLM.load()
    except ModelNotFoundError as err:
        pytest.skip(str(err))


def test_smollm2_copies_an_invented_fact_from_its_sources_and_cites_a_number(smollm):
    world = FactWorld(["Kypyl", "Drizy"], ["capital"], ["Ryrour", "Zhedrax"])
    sources = [world.sentence((0, 0, 0)), world.sentence((1, 0, 1))]
    reply = generate_answer(smollm, build_messages(world.question(0, 0), sources), max_new_tokens=16,
                            prefix="According to source [")
    assert reply.startswith("According to source [") and cited_sources(reply)
    assert supports(reply, "Ryrour") and not supports(reply, "Zhedrax")
    alone = generate_answer(smollm, build_messages(world.question(0, 0), []), max_new_tokens=12)
    assert not supports(alone, "Ryrour")  # it cannot know


def test_ask_the_course_with_the_real_models_cites_real_sections(smollm):
    from attnedu.pretrained import MiniLM

    sections = [s for s in coursebook.sections() if s.page.startswith("notebooks/06")]
    course = CourseIndex(sections, MiniLM.load(), embed_words=32)
    answer = course.ask("What does a KV cache store?", smollm, k=2, passage_words=40, max_new_tokens=24,
                        prefix="According to source [")
    assert answer.cited and all(s.id in {x.id for x in sections} for s in answer.citations)
    assert "ch06-a-kv-cache-the-same-tokens" in [s.id for s in answer.sources]
