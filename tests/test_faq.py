"""The book's page "Databases for generative AI: questions and answers" answers every point of
the FAQ in the course's source material, and each answer links to a section that runs it."""

from __future__ import annotations

import re

from attnedu import coursebook
from conftest import REPO

PAGE = REPO / "book" / "databases-faq.md"
SEED_FAQ_ANSWERS = 25  # lines 15-39 of ../shared/seed/attention-and-databases.txt
REF = re.compile(r"\{ref\}`(?:[^`<]*<)?([a-z0-9-]+)>?`")
DEMONSTRATING_CHAPTERS = ("ch10-", "ch11-", "ch12-", "ch13-", "ch14-")


def questions() -> dict[str, str]:
    """{question heading: its answer's text} for every ### heading of the page."""
    parts = re.split(r"^### (.+)$", PAGE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {parts[i].strip(): re.split(r"^\(|^## ", parts[i + 1], flags=re.MULTILINE)[0]
            for i in range(1, len(parts), 2)}


def test_the_faq_page_is_in_the_book():
    assert "book/databases-faq" in (REPO / "_toc.yml").read_text(encoding="utf-8")


def test_every_faq_point_of_the_source_material_has_a_question():
    qs = questions()
    assert len(qs) == SEED_FAQ_ANSWERS, sorted(qs)
    assert all(q.endswith("?") for q in qs), [q for q in qs if not q.endswith("?")]


def test_every_answer_links_to_a_section_of_chapters_10_to_14_that_exists():
    labels = {s.id for s in coursebook.sections(REPO)}
    for question, answer in questions().items():
        refs = REF.findall(answer)
        demonstrating = [r for r in refs if r.startswith(DEMONSTRATING_CHAPTERS)]
        assert demonstrating, f"{question!r} links to no section of chapters 10-14: {refs}"
        missing = [r for r in refs if r not in labels]
        assert not missing, f"{question!r} links to labels that no heading carries: {missing}"


def test_the_answers_are_short_paragraphs():
    for question, answer in questions().items():
        words = len(answer.split())
        assert 20 <= words <= 130, f"{question!r}: {words} words"
