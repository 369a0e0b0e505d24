"""Chapter 11's question set, data/questions.jsonl: judgments name sections that exist."""

import json
import shutil
from collections import Counter

import pytest

from attnedu import coursebook
from conftest import REPO


@pytest.fixture(scope="module")
def questions():
    return coursebook.questions(REPO)


@pytest.fixture(scope="module")
def section_ids():
    return {s.id for s in coursebook.sections(REPO)}


def test_there_are_at_least_80_questions_with_unique_ids_and_texts(questions):
    assert len(questions) >= 80, f"only {len(questions)} questions; issue 6 asks for at least 80"
    ids = Counter(q["id"] for q in questions)
    twice = [i for i, n in ids.items() if n > 1]
    assert not twice, f"ids used twice: {twice}"
    texts = Counter(" ".join(q["question"].lower().split()) for q in questions)
    twice = [t for t, n in texts.items() if n > 1]
    assert not twice, f"questions asked twice: {twice}"


def test_every_judged_section_exists(questions, section_ids):
    """The test that fails when a label disappears from the book."""
    missing = [(q["id"], sid) for q in questions for sid in q["relevant"] if sid not in section_ids]
    assert not missing, "\n".join(
        f"question {qid} judges the section {sid!r}, which no longer exists in the book. "
        f"Restore the label ({sid})= above its heading (labels are kept when a heading is reworded), "
        f"or update the judgment in data/questions.jsonl to the section's new label "
        f"(`python -m attnedu.coursebook list` prints them)."
        for qid, sid in missing)


def test_every_question_has_a_section_that_answers_it(questions):
    without = [q["id"] for q in questions if 2 not in q["relevant"].values()]
    assert not without, f"questions without a section of grade 2: {without}"


def test_the_three_kinds_are_all_there_in_reasonable_proportion(questions):
    kinds = Counter(q["kind"] for q in questions)
    assert set(kinds) == set(coursebook.QUESTION_KINDS), kinds
    for kind, n in kinds.items():
        assert 0.2 <= n / len(questions) <= 0.5, f"{n} of {len(questions)} questions are {kind!r}: {kinds}"


def test_every_part_of_the_book_is_asked_about(questions):
    """Chapters 1-5 and the pages for learners and instructors (the set was written before
    later chapters existed; questions about them are welcome, but not required here)."""
    pages = {s.id: s.page.rsplit("/", 1)[-1] for s in coursebook.sections(REPO)}
    asked = Counter(pages[sid] for q in questions for sid, g in q["relevant"].items() if g == 2 and sid in pages)
    for page in ("how-to-use", "for-instructors", "01-weighted-sums", "02-scaled-dot-product",
                 "03-self-attention", "04-multi-head-attention", "05-transformer"):
        assert asked[page] >= 5, f"only {asked[page]} questions are answered by {page}: {asked}"


def test_qrels_is_pytrec_evals_format(questions):
    qrels = coursebook.qrels(REPO)
    assert list(qrels) == [q["id"] for q in questions]
    assert all(isinstance(g, int) and g in (0, 1, 2) for judged in qrels.values() for g in judged.values())
    assert qrels[questions[0]["id"]] == questions[0]["relevant"]


def test_the_course_itself_has_no_problems():
    assert coursebook.check_questions(REPO) == []


def copy_course(tmp_path):
    """The book's files, _toc.yml and the question set, in a fresh folder."""
    for path in coursebook.book_files(REPO):
        target = tmp_path / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    (tmp_path / "notebooks").mkdir(exist_ok=True)
    shutil.copyfile(REPO / "_toc.yml", tmp_path / "_toc.yml")
    (tmp_path / "data").mkdir()
    shutil.copyfile(REPO / coursebook.QUESTIONS_FILE, tmp_path / coursebook.QUESTIONS_FILE)
    return tmp_path


def test_renaming_a_judged_label_is_reported_for_exactly_the_questions_that_judge_it(tmp_path, questions):
    root = copy_course(tmp_path)
    assert coursebook.check_questions(root) == []
    # a label written above a heading (not a page's implicit one, such as ch01) that one question judges
    judged_by = Counter(sid for q in questions for sid in q["relevant"])
    texts = {p: p.read_text(encoding="utf-8") for p in coursebook.book_files(root)}
    label = sorted(sid for sid, n in judged_by.items() if n == 1 and any(f"({sid})=" in t for t in texts.values()))[0]
    qid = next(q["id"] for q in questions if label in q["relevant"])
    files = [p for p, t in texts.items() if f"({label})=" in t]
    assert len(files) == 1, (label, files)
    files[0].write_text(files[0].read_text(encoding="utf-8").replace(f"({label})=", f"({label}-renamed)="),
                        encoding="utf-8")
    problems = coursebook.check_questions(root)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{qid}: ") and repr(label) in problems[0]
    assert "Restore the label" in problems[0] and "update the judgment" in problems[0]
    assert f"did you mean {label + '-renamed'!r}" in problems[0]


def test_duplicates_and_missing_grade_2_are_reported(tmp_path):
    root = copy_course(tmp_path)
    path = root / coursebook.QUESTIONS_FILE
    lines = path.read_text(encoding="utf-8").splitlines()
    first, second = json.loads(lines[0]), json.loads(lines[1])
    second["id"] = first["id"]  # a duplicate id
    first["relevant"] = {sid: 1 for sid in first["relevant"]}  # no grade 2 any more
    third = dict(json.loads(lines[2]), id="q-copy")  # the same question under another id
    path.write_text("\n".join([json.dumps(first), json.dumps(second), lines[2], json.dumps(third), ""]),
                    encoding="utf-8")
    problems = coursebook.check_questions(root)
    assert len(problems) == 3, problems
    assert any("no section has grade 2" in p and p.startswith(first["id"]) for p in problems)
    assert any("used by more than one question" in p for p in problems)
    assert any(p.startswith("q-copy: the same question as") for p in problems)


@pytest.mark.parametrize("bad, message", [
    ('{"id": "q2", "question": "Why?", "answer": "Because."', "not valid JSON"),
    ('["q2"]', "expected a JSON object"),
    ('{"id": "q2", "question": "Why?", "answer": "Because.", "kind": "keyword"}', r"missing key\(s\) \['relevant'\]"),
    ('{"id": "q2", "question": "Why?", "answer": "Because.", "relevent": {"ch01": 2}, "kind": "keyword"}',
     "unknown key"),
    ('{"id": "q2", "question": " ", "answer": "Because.", "relevant": {"ch01": 2}, "kind": "keyword"}',
     "'question' must be a non-empty string"),
    ('{"id": "q2", "question": "Why?", "answer": "Because.", "relevant": {"ch01": 2}, "kind": "fuzzy"}',
     "'kind' must be one of"),
    ('{"id": "q2", "question": "Why?", "answer": "Because.", "relevant": {}, "kind": "keyword"}',
     "'relevant' must be a non-empty object"),
    ('{"id": "q2", "question": "Why?", "answer": "Because.", "relevant": {"ch01": 3}, "kind": "keyword"}',
     "the grade of 'ch01' must be an integer"),
    ('{"id": "q2", "question": "Why?", "answer": "Because.", "relevant": {"ch01": "2"}, "kind": "keyword"}',
     "the grade of 'ch01' must be an integer"),
    ('{"id": "q2", "question": "Why?", "answer": "Because.", "relevant": {"ch01": 2.0}, "kind": "keyword"}',
     "the grade of 'ch01' must be an integer"),
])
def test_a_malformed_line_is_named_by_its_line_number(tmp_path, bad, message):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (tmp_path / "data").mkdir()
    good = '{"id": "q1", "question": "What?", "answer": "That.", "relevant": {"ch01": 2}, "kind": "mixed"}'
    (tmp_path / coursebook.QUESTIONS_FILE).write_text(f"{good}\n\n{bad}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"data/questions.jsonl:3: .*{message}"):
        coursebook.questions(tmp_path)
    # check_questions reports it instead of raising, so a learner sees every kind of problem the same way
    (tmp_path / "intro.md").write_text("# Intro\n\nHello.\n")
    assert len(coursebook.check_questions(tmp_path)) == 1
    assert coursebook.check_questions(tmp_path)[0].startswith("data/questions.jsonl:3: ")


def test_a_missing_question_file_says_where_it_belongs(tmp_path):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    with pytest.raises(FileNotFoundError, match="questions.jsonl does not exist"):
        coursebook.questions(tmp_path)


def test_every_judged_section_is_in_the_frozen_collection():
    assert coursebook.check_collection(REPO) == []


def test_a_judged_section_missing_from_the_frozen_collection_is_reported(tmp_path, questions):
    root = copy_course(tmp_path)
    shutil.copyfile(REPO / coursebook.COLLECTION_FILE, root / coursebook.COLLECTION_FILE)
    label = sorted(questions[0]["relevant"])[0]
    path = root / coursebook.COLLECTION_FILE
    kept = [ln for ln in path.read_text(encoding="utf-8").splitlines() if json.loads(ln)["id"] != label]
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    problems = coursebook.check_collection(root)
    assert problems and all(repr(label) in p and "attnedu.coursebook freeze" in p for p in problems)
    assert any(p.startswith(f"{questions[0]['id']}: ") for p in problems)
    (root / coursebook.COLLECTION_FILE).unlink()
    assert "does not exist" in coursebook.check_collection(root)[0]
