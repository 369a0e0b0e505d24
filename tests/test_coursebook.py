"""attnedu.coursebook: the book's sections as passages with stable labels."""

import json

import pytest

from attnedu import coursebook
from conftest import REPO


def write_course(tmp_path, page_md: str, cells: list[str]):
    (tmp_path / "notebooks" / "01-demo").mkdir(parents=True)
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: P\n    chapters:\n"
        "      - file: notebooks/01-demo/01-demo\n")
    (tmp_path / "intro.md").write_text(page_md)
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": c.splitlines(keepends=True)} for c in cells]
          + [{"cell_type": "code", "metadata": {}, "source": ["# not a heading\n"], "outputs": [],
              "execution_count": None}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "notebooks" / "01-demo" / "01-demo.ipynb").write_text(json.dumps(nb, indent=1) + "\n")
    return tmp_path


def test_slugify_keeps_words_and_drops_maths_and_roles():
    assert coursebook.slugify("Softmax: from scores to weights") == "softmax-from-scores-to-weights"
    assert coursebook.slugify("Why divide by $\\sqrt{d_k}$?") == "why-divide-by"
    assert coursebook.slugify("The {term}`KV cache <kv cache>` at work") == "the-kv-cache-at-work"
    assert coursebook.slugify("One two three four five six seven") == "one-two-three-four-five-six"


def test_label_then_read_sections_in_order_ignoring_code_fences(tmp_path):
    root = write_course(tmp_path, "# Intro\n\nHello.\n\n```bash\n# a comment, not a heading\n```\n",
                        ["# Demo chapter\n\nFirst words.", "## Part one\n\nAlpha.\n\n## Part one\n\nBeta."])
    with pytest.raises(ValueError, match="has no label.*python -m attnedu.coursebook label"):
        coursebook.sections(root)
    assert coursebook.main(["label", "--root", str(root)]) == 0
    sections = coursebook.sections(root)
    assert [s.id for s in sections] == ["intro", "ch01", "ch01-part-one", "ch01-part-one-2"]
    assert sections[0].text.startswith("Hello.") and "# a comment" in sections[0].text
    assert sections[2].text == "Alpha." and sections[3].text == "Beta."
    assert sections[1].page == "notebooks/01-demo/01-demo"
    # Labelling again changes nothing, and a renamed heading keeps its label.
    before = (root / "notebooks" / "01-demo" / "01-demo.ipynb").read_text()
    assert coursebook.main(["label", "--root", str(root)]) == 0
    assert (root / "notebooks" / "01-demo" / "01-demo.ipynb").read_text() == before
    nb_path = root / "notebooks" / "01-demo" / "01-demo.ipynb"
    nb = json.loads(before)
    cell = next(c for c in nb["cells"] if "Alpha.\n" in c["source"])
    cell["source"][cell["source"].index("## Part one\n")] = "## The first part\n"
    nb_path.write_text(json.dumps(nb))
    renamed = coursebook.sections(root)
    assert renamed[2].id == "ch01-part-one" and renamed[2].title == "The first part"


def test_the_course_itself_has_sections_with_text():
    sections = coursebook.sections(REPO, min_chars=200)
    ids = {s.id for s in sections}
    assert {"ch01", "ch01-softmax-from-scores-to-weights", "how-to-use-run-it-on-your-computer"} <= ids
    assert all(len(s.text) >= 200 for s in sections)


def test_outside_a_clone_the_error_says_where_to_run(tmp_path, monkeypatch):
    monkeypatch.setattr(coursebook, "__file__", str(tmp_path / "x" / "coursebook.py"))
    with pytest.raises(FileNotFoundError, match="run from inside the clone"):
        coursebook.course_root(tmp_path)


def test_freeze_then_collection_gives_the_same_sections_and_stays_put_while_the_book_changes(tmp_path):
    root = write_course(tmp_path, "# Intro\n\nHello.\n", ["# Demo chapter\n\nFirst words.",
                                                           "(ch01-part)=\n## Part\n\nAlpha, with \u00e9 and \"quotes\"."])
    with pytest.raises(FileNotFoundError, match="python -m attnedu.coursebook freeze"):
        coursebook.collection(root)
    assert coursebook.main(["freeze", "--root", str(root)]) == 0
    frozen = coursebook.collection(root)
    assert frozen == coursebook.sections(root) and len(frozen) == 3
    assert [s.id for s in coursebook.collection(root, min_chars=13)] == ["ch01-part"]  # "First words." has 12
    nb_path = root / "notebooks" / "01-demo" / "01-demo.ipynb"
    nb_path.write_text(nb_path.read_text().replace("Alpha", "Beta"))  # the book changes ...
    assert coursebook.collection(root) == frozen  # ... the frozen collection does not
    assert coursebook.collection(root) != coursebook.sections(root)


def test_a_malformed_collection_line_names_the_line_and_the_fix(tmp_path):
    root = write_course(tmp_path, "# Intro\n\nHello.\n", ["# Demo chapter\n\nFirst words."])
    coursebook.freeze(root)
    path = root / coursebook.COLLECTION_FILE
    path.write_text(path.read_text() + '{"id": "x", "page": "p"}\n')
    with pytest.raises(ValueError, match=r"collection\.jsonl:3: not a section.*freeze"):
        coursebook.collection(root)


def test_the_course_reads_its_frozen_collection():
    frozen = coursebook.collection(REPO)
    assert {"ch01", "ch11-a-test-collection-about-this", "how-to-use-run-it-on-your-computer"} <= {s.id for s in frozen}
    assert len({s.id for s in frozen}) == len(frozen)
