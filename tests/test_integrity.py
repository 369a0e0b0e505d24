"""Academic-integrity flags (attnedu.integrity) and the instructors' table of exercises.

A solution that imports, binds or uses the library's version of the function it is asked to
write, or defines nothing of its own, is flagged `reference-import`; the source solutions, and
solutions that use unrelated helpers, are not. The submission is only parsed, never run."""

from __future__ import annotations

import copy
import json
import re

import pytest

import attnedu.nn
from attnedu import functional as F
from attnedu import integrity
from attnedu.coursebook import HEADING, LABEL
from attnedu.integrity import TABLE_COMMAND, explain, flags, reasons
from conftest import NOTEBOOKS
from conftest import REPO, load_notebook

CH01, CH02, CH12 = "01-weighted-sums", "02-scaled-dot-product", "12-rag"


def source_notebook(chapter: str) -> dict:
    return load_notebook(REPO / "notebooks" / chapter / f"{chapter}.ipynb")


def with_solution(chapter: str, grade_id: str, code: str) -> dict:
    """The source notebook of ``chapter`` with the solution cell ``grade_id`` replaced by ``code``."""
    nb = copy.deepcopy(source_notebook(chapter))
    cells = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id]
    assert len(cells) == 1, grade_id
    cells[0]["source"] = code
    return nb


# ------------------------------------------------------------------ clean work is clean
@pytest.mark.parametrize("chapter", [CH01, CH02, CH12])
def test_the_source_solutions_are_clean(chapter):
    assert flags(source_notebook(chapter), chapter) == []
    assert reasons(source_notebook(chapter), chapter) == []


def test_every_chapters_source_solutions_are_clean():
    from attnedu.grading import chapters

    for chapter in chapters(REPO):
        assert reasons(source_notebook(chapter), chapter) == [], chapter


OWN_SOFTMAX = '''def softmax(x, axis=-1):
    x = np.asarray(x, dtype=float)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)
'''

# ------------------------------------------------------------------ each way of taking the reference
CHEATS = {
    "from-import": "from attnedu.functional import softmax",
    "from-import-as-then-wrapped": "from attnedu.functional import softmax as ref\n\n"
                                   "def softmax(x, axis=-1):\n    return ref(x, axis)\n",
    "module-alias-bound": "import attnedu.functional as F\nsoftmax = F.softmax",
    "full-path-bound": "import attnedu.functional\nsoftmax = attnedu.functional.softmax",
    "from-package-import-module": "from attnedu import functional\nsoftmax = functional.softmax",
    "called-inside-own-def": "import attnedu.functional as F\n\ndef softmax(x, axis=-1):\n"
                             "    return F.softmax(x, axis=axis)\n",
    "getattr": "import attnedu.functional as F\n\ndef softmax(x, axis=-1):\n"
               "    return getattr(F, 'softmax')(x, axis)\n",
    "import-module-call": "import importlib\n\ndef softmax(x, axis=-1):\n"
                          "    return importlib.import_module('attnedu.functional').softmax(x, axis)\n",
    "sys-modules": "import sys\n\ndef softmax(x, axis=-1):\n"
                   "    return sys.modules['attnedu.functional'].softmax(x, axis)\n",
    "import-inside-the-function": "def softmax(x, axis=-1):\n    from attnedu.functional import softmax as s\n"
                                  "    return s(x, axis)\n",
    "star-import": "from attnedu.functional import *\n",
    "default-argument": "import attnedu.functional as F\n\ndef softmax(x, axis=-1, _f=F.softmax):\n"
                        "    return _f(x, axis)\n",
    "in-exec-string": "def softmax(x, axis=-1):\n    exec('from attnedu.functional import softmax as s')\n"
                      "    return 0\n",
    "behind-a-cell-magic": "%%capture\nfrom attnedu.functional import softmax as ref\n\n"
                           "def softmax(x, axis=-1):\n    return ref(x, axis)\n",
    "tuple-binding": "import attnedu.functional as F\nsoftmax, other = F.softmax, 1\n",
}


@pytest.mark.parametrize("code", CHEATS.values(), ids=CHEATS.keys())
def test_each_way_of_taking_the_reference_is_flagged(code):
    nb = with_solution(CH01, "softmax", code)
    assert flags(nb, CH01) == ["reference-import"]
    assert [(gid, flag) for gid, flag, _ in reasons(nb, CH01)] == [("softmax", "reference-import")]
    assert "uses the library's `attnedu.functional.softmax`" in reasons(nb, CH01)[0][2]


def test_the_reference_imported_in_a_cell_of_its_own_and_used_in_the_solution_is_flagged():
    nb = with_solution(CH01, "softmax", "def softmax(x, axis=-1):\n    return stable(x, axis)\n")
    i = next(i for i, c in enumerate(nb["cells"]) if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "softmax")
    nb["cells"].insert(i, {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                           "source": "from attnedu.functional import softmax as stable"})
    assert flags(nb, CH01) == ["reference-import"]


def test_a_re_export_through_another_attnedu_module_is_the_same_object(monkeypatch):
    # attnedu.rag re-exports attnedu.rag.grounding.cited_passages, the reference of a chapter 12 exercise
    nb = with_solution(CH12, "cited-passages", "from attnedu.rag import cited_passages\n")
    assert flags(nb, CH12) == ["reference-import"]
    nb = with_solution(CH12, "cited-passages", "import attnedu.rag as r\n\ndef cited_passages(answer, passages):\n"
                                                "    return r.cited_passages(answer, passages)\n")
    assert flags(nb, CH12) == ["reference-import"]
    # the same object under another name in another module
    monkeypatch.setattr(attnedu.nn, "integrity_test_alias_of_softmax", F.softmax, raising=False)
    nb = with_solution(CH01, "softmax", "from attnedu.nn import integrity_test_alias_of_softmax as s\n\n"
                                        "def softmax(x, axis=-1):\n    return s(x, axis)\n")
    assert flags(nb, CH01) == ["reference-import"]


def test_a_later_chapters_reference_is_flagged():
    nb = with_solution(CH02, "scaled-dot-product-attention",
                       "from attnedu.functional import scaled_dot_product_attention\n")
    assert flags(nb, CH02) == ["reference-import"]
    assert reasons(nb, CH02)[0][0] == "scaled-dot-product-attention"
    assert "attnedu.functional.scaled_dot_product_attention" in reasons(nb, CH02)[0][2]


# ------------------------------------------------------------------ defining nothing
@pytest.mark.parametrize("code", [
    "softmax = lambda x, axis=-1: np.exp(x) / np.exp(x).sum(axis, keepdims=True)",
    "import numpy as np",
    "",
    "# nothing here",
    "def soft_max(x, axis=-1):\n    return x\n",
    "def wrapper():\n    def softmax(x, axis=-1):\n        return x\n    return softmax\n",
], ids=["only-an-assignment", "only-an-import", "empty", "a-comment", "another-name", "nested-def"])
def test_a_cell_that_defines_nothing_of_its_own_is_flagged(code):
    nb = with_solution(CH01, "softmax", code)
    assert flags(nb, CH01) == ["reference-import"]
    assert "defines no `softmax`" in reasons(nb, CH01)[0][2]


# ------------------------------------------------------------------ unrelated helpers are fine
@pytest.mark.parametrize("chapter, grade_id, code", [
    (CH01, "softmax", "import numpy as np\nfrom numpy import exp\n\n" + OWN_SOFTMAX),
    (CH01, "softmax", "try:\n    " + OWN_SOFTMAX.replace("\n", "\n    ") + "\nexcept Exception:\n    pass\n"),
    (CH01, "attention-pool", "from attnedu.functional import softmax\nimport attnedu.functional as F\n\n"
                             "def attention_pool(queries, keys, values, width):\n"
                             "    w = F.softmax(-(queries[:, None] - keys[None, :]) ** 2 / (2 * width ** 2))\n"
                             "    return w @ values, w\n"),
    (CH02, "scaled-dot-product-attention",
     "from attnedu.functional import softmax, causal_mask\n\n"
     "def scaled_dot_product_attention(q, k, v, mask=None):\n"
     "    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])\n"
     "    if mask is not None:\n        s = np.where(mask, s, -np.inf)\n"
     "    w = softmax(s, axis=-1)\n    return w @ v, w\n"),
    (CH02, "additive-scores", "import attnedu.functional as F\n\ndef additive_scores(q, k, W_q, W_k, w):\n"
                              "    F.softmax  # a look, not the exercise's reference\n"
                              "    return np.tanh((q @ W_q.T)[:, None] + (k @ W_k.T)[None]) @ w\n"),
    (CH01, "predict-far-query", 'def predict_far_query():\n    return "a"\n'),
    (CH01, "softmax", "%time x = 1\n" + OWN_SOFTMAX),
])
def test_unrelated_helpers_and_predictions_are_not_flagged(chapter, grade_id, code):
    assert flags(with_solution(chapter, grade_id, code), chapter) == []


def test_the_learners_own_definition_replaces_an_earlier_binding():
    nb = with_solution(CH01, "softmax", "import attnedu.functional as F\nsoftmax = F.softmax\n" + OWN_SOFTMAX
                       + "\nresult = softmax([1.0, 2.0])\n")
    assert flags(nb, CH01) == ["reference-import"]  # the binding is in the cell: flagged
    nb = with_solution(CH01, "attention-pool", "def attention_pool(queries, keys, values, width):\n"
                                               "    w = softmax(-(queries[:, None] - keys[None]) ** 2)\n"
                                               "    return w @ values, w\n")
    assert flags(nb, CH01) == []  # `softmax` is the learner's (or the library's): not this exercise's reference


# ------------------------------------------------------------------ garbage
@pytest.mark.parametrize("notebook", [
    None, 42, "text", [], {}, {"cells": None}, {"cells": [None, 3, "x", {"cell_type": "code"}]},
    {"cells": [{"cell_type": "code", "source": ["def (", 3], "metadata": {"nbgrader": {"solution": True,
                                                                                         "grade_id": "softmax"}}}]},
    {"cells": [{"cell_type": "code", "source": "x", "metadata": {"nbgrader": "garbage"}}]},
    {"cells": [{"cell_type": "code", "source": "x", "metadata": []}]},
    {"cells": [{"cell_type": "code", "source": "x", "metadata": {"nbgrader": {"solution": True, "grade_id": ["x"]}}}]},
    {"cells": [{"cell_type": "code", "source": None, "metadata": {"nbgrader": {"solution": True, "grade_id": "softmax"}}}]},
], ids=["none", "int", "str", "list", "empty", "cells-none", "odd-cells", "syntax-error", "odd-nbgrader", "odd-meta",
        "unhashable-grade-id", "source-none"])
def test_garbage_is_not_a_crash(notebook):
    assert flags(notebook, CH01) == []


def test_a_solution_cell_that_does_not_parse_raises_no_flag_and_others_still_count():
    nb = with_solution(CH01, "softmax", "def softmax(x:\n    return ???\n")
    assert flags(nb, CH01) == []
    cell = next(c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "attention-pool")
    cell["source"] = "from attnedu.functional import attention_pool"
    assert [gid for gid, _, _ in reasons(nb, CH01)] == ["attention-pool"]


def test_deep_nesting_and_an_unknown_chapter_are_not_a_crash():
    nb = with_solution(CH01, "softmax", "x = " + "(" * 300 + "1" + ")" * 300 + "\n" + OWN_SOFTMAX)
    assert flags(nb, CH01) in ([], ["reference-import"])  # parsed or not, never an exception
    assert flags(source_notebook(CH01), "99-no-such-chapter") == []


def test_a_solution_cell_without_metadata_is_not_matched():
    nb = with_solution(CH01, "softmax", "from attnedu.functional import softmax")
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "softmax":
            del cell["metadata"]
    assert flags(nb, CH01) == []


def test_the_submission_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    nb = with_solution(CH01, "softmax", f"open({str(marker)!r}, 'w').write('x')\nimport os\nos._exit(3)\n"
                       + OWN_SOFTMAX)
    assert flags(nb, CH01) == ["tampering"]  # os._exit is found by reading, not by running
    assert not marker.exists()


# ------------------------------------------------------------------ flags explained
def test_every_flag_has_one_sentence():
    for flag in ("reference-import", "tests-restored", "tampering"):
        text = explain(flag)
        assert text.endswith(".") and len(text) > 40
    with pytest.raises(KeyError):
        explain("no-such-flag")


def test_the_command_line_prints_flags(tmp_path, capsys):
    path = tmp_path / "sub.ipynb"
    path.write_text(json.dumps(with_solution(CH01, "softmax", "from attnedu.functional import softmax")))
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    assert integrity.main(["flags", CH01, str(path), str(bad)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: reference-import" in out and f"{bad}: not read" in out


# ------------------------------------------------------------------ the instructors' table
def test_the_books_exercise_table_is_the_generated_one():
    page = REPO / "book" / "exercise-table.md"
    assert page.exists() and page.read_text(encoding="utf-8") == integrity.exercise_table(REPO), \
        f"book/exercise-table.md is out of date: run `{TABLE_COMMAND}` and commit the result"


def test_the_table_has_every_exercise_with_its_kind_and_points():
    from attnedu.checks import exercises_of
    from attnedu.grading import chapters

    rows = integrity.exercise_rows(REPO)
    records = [(ch, ex.grade_id, ex.name, ex.kind) for ch in chapters(REPO) for ex in exercises_of(ch).values()]
    assert sorted((r["chapter"], r["grade_id"], r["name"], r["kind"]) for r in rows) == sorted(records)
    assert all(r["check"] == 1 and r["hidden"] >= 2 for r in rows)
    table = integrity.exercise_table(REPO)
    assert "| `softmax` | code | `softmax` | 1 | 2 | 3 |" in table
    assert "| `causal-self-attention` | code | `CausalSelfAttention` | 1 | 3 | 4 |" in table


def test_the_instructors_page_includes_the_table_and_the_changelog():
    page = (REPO / "book" / "for-instructors.md").read_text(encoding="utf-8")
    assert re.search(r"^```\{include\} exercise-table\.md\n```$", page, re.M)
    assert re.search(r"^```\{include\} changelog\.md\n```$", page, re.M)


@pytest.mark.parametrize("name", ["exercise-table.md", "changelog.md"])
def test_every_heading_of_the_included_pages_has_a_label(name):
    lines = (REPO / "book" / name).read_text(encoding="utf-8").splitlines()
    in_fence = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        if not in_fence and HEADING.match(line):
            assert line.startswith("###"), f"{name}: {line!r} would be a section of its own in the page"
            assert i and LABEL.match(lines[i - 1]), f"{name}: {line!r} needs a label line above it"


def test_the_changelog_names_every_exercise_added_since_the_previous_version():
    text = (REPO / "book" / "changelog.md").read_text(encoding="utf-8")
    for grade_id in ["cross-attention", "decoder-block", "causal-self-attention", "kv-cache-step", "attention-mask",
                     "authorised-rows", "measure-movement"]:
        assert f"`{grade_id}`" in text, grade_id
    for removed in ["causal-mask", "padding-mask", "merge-heads", "layer-norm", "normalise-for-hash"]:
        assert f"`{removed}`" in text, removed


# ------------------------------------------------------------------ tampering
def _one_cell(text, solution=True, grade_id="softmax"):
    meta = {"nbgrader": {"solution": True, "grade_id": grade_id}} if solution else {}
    return {"cells": [{"cell_type": "code", "source": text, "metadata": meta}]}


@pytest.mark.parametrize("text, said", [
    ("import attnedu.checks\nattnedu.checks.check = lambda *a, **k: None", "writes `attnedu.checks.check`"),
    ("from attnedu.checks import engine\nengine.judge = print", "writes `attnedu.checks.engine.judge`"),
    ("import numpy as np\nnp.testing.assert_allclose = print", "writes `numpy.testing.assert_allclose`"),
    ("import sys\nsys.modules['attnedu.checks'] = None", "writes into `sys.modules`"),
    ("import sys\ndel sys.modules['numpy']", "writes into `sys.modules`"),
    ("import sys\nsys.modules.pop('numpy')", "calls `sys.modules.pop`"),
    ("import builtins\nbuiltins.print = len", "writes `builtins.print`"),
    ("__builtins__ = {}", "replaces `__builtins__`"),
    ("from attnedu import checks\nsetattr(checks, 'check', None)", "calls `setattr` on `attnedu.checks`"),
    ("import os\nos._exit(0)", "calls `os._exit`"),
    ("import sys\nsys.exit()", "calls `sys.exit`"),
    ("exit()", "calls `exit`"),
    ("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)", "calls `signal.signal`"),
])
def test_tampering_is_found_by_reading_the_cell(text, said):
    found = integrity.tampering(_one_cell(text), "01-weighted-sums")
    assert any(said in f for f in found), found
    assert "tampering" in integrity.flags(_one_cell(text), "01-weighted-sums")
    added = integrity.tampering(_one_cell(text, solution=False), "01-weighted-sums")  # a cell the learner added
    assert any(said in f and "added" in f for f in added), added


@pytest.mark.parametrize("text", [
    "import numpy as np\nnp.random.seed(0)\nrng = np.random.default_rng(1)",
    "import torch\ntorch.manual_seed(0)\ntorch.set_num_threads(1)",
    "class A:\n    pass\na = A()\na.x = 1",
    "import numpy as np\ndef softmax(x, axis=-1):\n    e = np.exp(x - x.max(axis=axis, keepdims=True))\n    "
    "return e / e.sum(axis=axis, keepdims=True)",
])
def test_seeding_threads_and_own_objects_are_not_tampering(text):
    assert integrity.tampering(_one_cell(text), "01-weighted-sums") == []


def test_the_chapters_own_cells_are_not_tampering():
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text(encoding="utf-8"))
        assert integrity.tampering(nb, path.parent.name) == [], path.parent.name
