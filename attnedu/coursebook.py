"""The course's own text as a collection of passages: one passage per labelled section.

Chapters 11 and 12 search this course with the methods they teach, and measure the search on
questions whose answers are sections of the book. A question's relevance judgments name
sections by their **labels**, MyST targets written on the line above each heading::

    (ch01-softmax-from-scores-to-weights)=
    ## Softmax: from scores to weights

A page's title (its one ``#`` heading) needs no label: its section is named after the page,
``ch01`` for chapter 1, ``how-to-use`` for ``book/how-to-use.md``. A label is chosen once and then kept when the heading's wording changes, so judgments survive
edits to the text; ``tests/test_hygiene.py`` fails when a heading has no label or when two
sections share one, and ``tests/test_questions.py`` when a judged label no longer exists.

The question set is ``data/questions.jsonl``: questions a learner or an instructor would ask,
each with a short reference answer, graded judgments (2: the section answers it, 1: related)
and a ``kind`` (``keyword``, ``paraphrase`` or ``mixed``: how much it reuses the text's own
rare words, which tends to decide whether keyword or dense search finds it). :func:`questions` reads
and validates it, :func:`qrels` gives the judgments in pytrec_eval's format, and
:func:`check_questions` lists what is wrong with the set (a judged label that disappeared, a
duplicate, a question with no section of grade 2)::

    from attnedu import coursebook
    qrels = coursebook.qrels()              # {"q001": {"index-what-you-will-build": 2, ...}, ...}
    assert coursebook.check_questions() == []

``python -m attnedu.coursebook label`` gives every heading without a label one made from its
words (run it after adding a section); ``python -m attnedu.coursebook list`` prints them.

**The frozen collection.** Chapters 10 to 14 search the course's text and say what they find
("fusion hurts more keyword questions than it helps"), and their cells check those sentences. If
they read the live book, every edit to any chapter, their own prose included, would move the
numbers under the sentences. So they read :func:`collection`: every section as it was when the
collection was last frozen, stored in ``data/collection.jsonl`` (one JSON object per line, with
``id``, ``page``, ``title`` and ``text``). Test collections such as TREC's are frozen for the same
reason. Refresh it on purpose, with ``python -m attnedu.coursebook freeze``, then run ``make test``
to see whether chapters 10 to 14 still say what they find; :func:`check_collection` (and
``tests/test_questions.py``) fails when a judged section is missing from it::

    sections = coursebook.collection()       # the frozen sections, as Section objects

The book's files come from ``_toc.yml`` in the course's folder: :func:`course_root` finds it
from the working folder or from this package's location (an editable install in a clone).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Section", "course_root", "book_files", "sections", "slugify", "label_headings", "COLLECTION_FILE",
           "collection", "freeze"]

COLLECTION_FILE = "data/collection.jsonl"

LABEL = re.compile(r"^\(([A-Za-z0-9_.:-]+)\)=\s*$")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Section:
    """One passage: the text under one heading, up to the next heading.

    ``id`` is the section's label; ``page`` the book file it is in (relative to the course
    folder, without suffix); ``title`` the heading's text; ``text`` the prose (Markdown, code
    fences included, labels and the heading itself left out).
    """

    id: str
    page: str
    title: str
    text: str

    def __str__(self) -> str:
        return f"{self.title}\n\n{self.text}"


def course_root(start: str | Path | None = None) -> Path:
    """The folder that holds the course's ``_toc.yml``.

    Looks in ``start`` (default: the working folder) and its parents, then beside this
    package (a clone with ``pip install -e .``). Raises ``FileNotFoundError`` naming the fix.
    """
    candidates = [Path(start or Path.cwd()).resolve(), Path(__file__).resolve().parent]
    for base in candidates:
        for folder in (base, *base.parents):
            if (folder / "_toc.yml").is_file() and (folder / "notebooks").is_dir():
                return folder
    raise FileNotFoundError(
        "Could not find the course's _toc.yml above "
        f"{candidates[0]} or beside the attnedu package. The course's text is read from a clone "
        "of the repository: run from inside the clone, or pass its folder as `root`."
    )


def book_files(root: str | Path | None = None) -> list[Path]:
    """The book's pages in reading order (``_toc.yml``'s root, then every chapter)."""
    import yaml

    root = course_root(root)
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    names = [toc["root"]]
    for part in toc.get("parts", []):
        names += [chapter["file"] for chapter in part.get("chapters", [])]
    files = []
    for name in names:
        for suffix in (".ipynb", ".md"):
            if (root / (name + suffix)).is_file():
                files.append(root / (name + suffix))
                break
        else:
            raise FileNotFoundError(f"_toc.yml names {name!r}, but neither {name}.ipynb nor {name}.md exists")
    return files


def _markdown_chunks(path: Path) -> list[str]:
    """The Markdown of a page: the whole file, or each Markdown cell of a notebook."""
    text = path.read_text(encoding="utf-8")
    if path.suffix != ".ipynb":
        return [text]
    cells = json.loads(text)["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


def _lines_outside_fences(markdown: str):
    """Yield (line, inside_fence) so that `# comments` in code blocks are not headings."""
    fence = None
    for line in markdown.splitlines():
        match = FENCE.match(line)
        if match:
            marker = match.group(1)
            if fence is None:
                fence = marker
            elif marker == fence:
                fence = None
            yield line, True
            continue
        yield line, fence is not None


def sections(root: str | Path | None = None, min_chars: int = 0) -> list[Section]:
    """Every labelled section of the book, in reading order.

    A heading without a label raises ``ValueError`` (run ``python -m attnedu.coursebook
    label``). ``min_chars`` drops sections whose text is shorter (e.g. a heading directly
    followed by a sub-heading).
    """
    root = course_root(root)
    out: list[Section] = []
    for path in book_files(root):
        page = path.relative_to(root).with_suffix("").as_posix()
        current: dict | None = None
        pending_label = None
        for chunk in _markdown_chunks(path):
            for line, in_fence in _lines_outside_fences(chunk):
                label = None if in_fence else LABEL.match(line)
                heading = None if in_fence else HEADING.match(line)
                if label:
                    pending_label = label.group(1)
                    continue
                if heading:
                    if pending_label is None and len(heading.group(1)) == 1:
                        pending_label = _prefix(path)  # a page's title: (ch01), (how-to-use)
                    if pending_label is None:
                        raise ValueError(
                            f"{page}: the heading {line!r} has no label on the line above it. "
                            "Run `python -m attnedu.coursebook label` to add one."
                        )
                    if current:
                        out.append(current)
                    current = {"id": pending_label, "page": page, "title": heading.group(2), "lines": []}
                    pending_label = None
                    continue
                if current is not None:
                    current["lines"].append(line)
            if current is not None:
                current["lines"].append("")  # a cell boundary is a paragraph break
        if current:
            out.append(current)
    result = []
    for s in out:
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(s["lines"])).strip()
        if len(text) >= min_chars:
            result.append(Section(s["id"], s["page"], s["title"], text))
    return result


def collection(root: str | Path | None = None, min_chars: int = 0) -> list[Section]:
    """The frozen collection: every section of the book as it was at the last :func:`freeze`.

    Reads ``data/collection.jsonl`` in the course folder; ``min_chars`` drops sections whose
    text is shorter, as in :func:`sections`. A missing or malformed file raises an error that
    names the command to run.
    """
    path = course_root(root) / COLLECTION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run `python -m attnedu.coursebook freeze` in the course "
                                "folder to freeze the book's sections there")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            section = Section(**{k: record[k] for k in ("id", "page", "title", "text")})
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{COLLECTION_FILE}:{n}: not a section ({type(e).__name__}: {e}); each line is "
                             '{"id", "page", "title", "text"}; `python -m attnedu.coursebook freeze` rewrites '
                             "the file from the book") from None
        if len(section.text) >= min_chars:
            out.append(section)
    return out


def freeze(root: str | Path | None = None) -> tuple[Path, int]:
    """Write every section of the live book to ``data/collection.jsonl``; return (path, sections)."""
    root = course_root(root)
    found = sections(root)
    path = root / COLLECTION_FILE
    path.parent.mkdir(exist_ok=True)
    lines = [json.dumps({"id": s.id, "page": s.page, "title": s.title, "text": s.text}, ensure_ascii=False)
             for s in found]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, len(found)


def slugify(text: str, max_words: int = 6) -> str:
    """``"Softmax: from scores to weights"`` -> ``"softmax-from-scores-to-weights"``."""
    text = re.sub(r"\$[^$]*\$", " ", text)  # drop inline maths
    text = re.sub(r"\{[a-z:]+\}`([^`<]*)[^`]*`", r"\1", text)  # {term}`x <y>` -> x
    words = re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))
    return "-".join(words[:max_words]) or "section"


def _prefix(page: Path) -> str:
    """``ch01`` for chapter 1's notebook, the file's stem (``how-to-use``) for other pages."""
    match = re.match(r"(\d\d)-", page.stem)
    return f"ch{match.group(1)}" if match else page.stem


def label_headings(path: Path, taken: set[str]) -> int:
    """Give every heading in ``path`` without a label one; return how many were added."""
    prefix = _prefix(path)

    def fix(markdown: str) -> tuple[str, int]:
        lines, added, previous = [], 0, ""
        for line, in_fence in _lines_outside_fences(markdown):
            heading = None if in_fence else HEADING.match(line)
            # A page's title needs no label: its section is named by the prefix alone.
            if heading and len(heading.group(1)) > 1 and not LABEL.match(previous):
                base = f"{prefix}-{slugify(heading.group(2))}"
                label, n = base, 2
                while label in taken:
                    label, n = f"{base}-{n}", n + 1
                taken.add(label)
                lines.append(f"({label})=")
                added += 1
            lines.append(line)
            if line.strip():
                previous = line
        trailing = "\n" if markdown.endswith("\n") else ""
        return "\n".join(lines) + trailing, added

    if path.suffix != ".ipynb":
        text, added = fix(path.read_text(encoding="utf-8"))
        if added:
            path.write_text(text, encoding="utf-8")
        return added
    raw = path.read_text(encoding="utf-8")
    nb = json.loads(raw)
    total = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text, added = fix("".join(cell["source"]))
        if added:
            cell["source"] = text.splitlines(keepends=True)
            total += added
    if total:
        indent = 1 if raw.startswith("{\n \"") else 2
        path.write_text(json.dumps(nb, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")
    return total


def _existing_labels(root: Path) -> set[str]:
    taken = set()
    for path in book_files(root):
        for chunk in _markdown_chunks(path):
            for line, in_fence in _lines_outside_fences(chunk):
                match = None if in_fence else LABEL.match(line)
                if match:
                    taken.add(match.group(1))
    return taken


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnedu.coursebook", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["label", "list", "freeze"],
                        help="label: add missing labels; list: print the sections; freeze: write "
                             f"{COLLECTION_FILE}, the collection chapters 10 to 14 search")
    parser.add_argument("--root", default=None, help="the course folder (default: found from here)")
    args = parser.parse_args(argv)
    root = course_root(args.root)
    if args.command == "label":
        taken = _existing_labels(root)
        for path in book_files(root):
            n = label_headings(path, taken)
            if n:
                print(f"{path.relative_to(root)}: {n} label(s) added")
        return 0
    if args.command == "freeze":
        path, n = freeze(root)
        print(f"froze {n} sections into {path}; now run `make test` to see whether chapters 10 to 14 "
              "still say what they find")
        return 0
    for s in sections(root):
        print(f"{s.id:55s} {len(s.text):6d} chars  {s.title}")
    return 0


# --------------------------------------------------------------------------- the question set
# Chapter 11's labelled collection: questions about this course, judged against its sections.

QUESTIONS_FILE = "data/questions.jsonl"
QUESTION_KINDS = ("keyword", "paraphrase", "mixed")
RELEVANCE_GRADES = (0, 1, 2)  # 2: answers the question; 1: related, partly useful; 0: judged not relevant
_QUESTION_KEYS = ("id", "question", "answer", "relevant", "kind")

__all__ += ["QUESTIONS_FILE", "QUESTION_KINDS", "questions", "qrels", "check_questions", "check_collection"]


def _check_question(record, where: str) -> dict:
    """One line of the question set, checked; ``where`` (``file:line``) starts every error."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object {{...}}, got {type(record).__name__}")
    missing = [k for k in _QUESTION_KEYS if k not in record]
    unknown = sorted(set(record) - set(_QUESTION_KEYS))
    if missing or unknown:
        parts = [f"missing key(s) {missing}"] if missing else []
        parts += [f"unknown key(s) {unknown} (a typo?)"] if unknown else []
        raise ValueError(f"{where}: {'; '.join(parts)}; every line has exactly the keys {list(_QUESTION_KEYS)}")
    for key in ("id", "question", "answer"):
        if not isinstance(record[key], str) or not record[key].strip():
            raise ValueError(f"{where}: {key!r} must be a non-empty string, got {record[key]!r}")
    if record["kind"] not in QUESTION_KINDS:
        raise ValueError(f"{where}: 'kind' must be one of {list(QUESTION_KINDS)}, got {record['kind']!r}")
    relevant = record["relevant"]
    if not isinstance(relevant, dict) or not relevant:
        raise ValueError(
            f"{where}: 'relevant' must be a non-empty object {{section_id: grade}}, got {relevant!r}")
    for section_id, grade in relevant.items():
        if not section_id.strip():
            raise ValueError(f"{where}: 'relevant' has an empty section id")
        if isinstance(grade, bool) or not isinstance(grade, int) or grade not in RELEVANCE_GRADES:
            raise ValueError(
                f"{where}: the grade of {section_id!r} must be an integer in {list(RELEVANCE_GRADES)} "
                f"(2: answers the question, 1: related), got {grade!r}")
    return record


def questions(root: str | Path | None = None) -> list[dict]:
    """Chapter 11's question set, ``data/questions.jsonl`` in the course folder, one dict per line.

    Each line is a JSON object::

        {"id": "q001", "question": "...", "answer": "a short reference answer",
         "relevant": {"ch02-why-divide-by": 2, "ch02-summary": 1}, "kind": "keyword"}

    ``relevant`` names sections by their labels (:func:`sections`) with a grade: 2 when the
    section answers the question, 1 when it is related and partly useful (0, judged not
    relevant, is allowed). ``kind`` says how the question is worded: ``"keyword"`` reuses the
    rare exact terms of the text, ``"paraphrase"`` asks the same in everyday words, and
    ``"mixed"`` does a bit of both. Blank lines are skipped.

    A malformed line raises ``ValueError`` naming the file, the line number and what is wrong.
    This checks each line alone; :func:`check_questions` checks the set against the book.
    """
    path = course_root(root) / QUESTIONS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the question set of chapter 11 lives there")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{QUESTIONS_FILE}:{n}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        out.append(_check_question(record, where))
    return out


def qrels(root: str | Path | None = None) -> dict[str, dict[str, int]]:
    """The judgments in pytrec_eval's format: ``{question_id: {section_id: grade}}``."""
    return {q["id"]: dict(q["relevant"]) for q in questions(root)}


def check_questions(root: str | Path | None = None) -> list[str]:
    """Problems of the question set, one sentence each; an empty list means all is well.

    Reports a malformed line (and stops there), judged section ids that no longer exist in the
    book (a label was renamed or removed), question ids or question texts used twice, and
    questions without a section of grade 2. ``tests/test_questions.py`` fails on any of them.
    """
    import difflib

    try:
        qs = questions(root)
    except ValueError as e:
        return [str(e)]
    labels = [s.id for s in sections(root)]
    known = set(labels)
    problems = []
    seen_ids: dict[str, int] = {}
    seen_texts: dict[str, str] = {}
    for q in qs:
        qid = q["id"]
        if qid in seen_ids:
            problems.append(f"{qid}: the id is used by more than one question; give each its own id")
        seen_ids[qid] = 1
        text = " ".join(q["question"].lower().split())
        if text in seen_texts:
            problems.append(f"{qid}: the same question as {seen_texts[text]}; remove one or reword it")
        else:
            seen_texts[text] = qid
        for section_id in q["relevant"]:
            if section_id not in known:
                close = difflib.get_close_matches(section_id, labels, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(
                    f"{qid}: judges the section {section_id!r}, which no longer exists in the book{hint}. "
                    f"Restore the label ({section_id})= above its heading, or update the judgment in "
                    f"{QUESTIONS_FILE}; `python -m attnedu.coursebook list` prints the labels.")
        if 2 not in q["relevant"].values():
            problems.append(f"{qid}: no section has grade 2; judge the section that answers the question")
    return problems


def check_collection(root: str | Path | None = None) -> list[str]:
    """Problems of the frozen collection against the question set, one sentence each.

    A missing or malformed ``data/collection.jsonl``, a label used twice in it, or a judged section
    that is not in it (the book gained the section after the last freeze): each names the fix.
    """
    try:
        frozen = collection(root)
        qs = questions(root)
    except (FileNotFoundError, ValueError) as e:
        return [str(e)]
    ids = [s.id for s in frozen]
    problems = [f"{COLLECTION_FILE}: the label {i!r} is used by more than one section; run "
                "`python -m attnedu.coursebook freeze` again" for i in sorted({i for i in ids if ids.count(i) > 1})]
    known = set(ids)
    for q in qs:
        for section_id in q["relevant"]:
            if section_id not in known:
                problems.append(f"{q['id']}: judges the section {section_id!r}, which is not in the frozen collection "
                                f"{COLLECTION_FILE}; run `python -m attnedu.coursebook freeze` to refreeze the book")
    return problems


if __name__ == "__main__":
    sys.exit(main())
