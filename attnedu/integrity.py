"""Academic-integrity flags of a submission, and the table of the course's graded exercises.

:func:`flags` reads a submitted notebook (never runs it) and returns the flags that the
grades' CSV shows beside its score:

``reference-import``
    a solution cell imports, binds or uses the library's version of the function it asks the
    learner to write (the names in the exercise record's ``Exercise.library``), or defines
    nothing of its own (no ``def``/``class`` of the exercise's name: only an assignment, an
    import, ...). Names are resolved as Python would: ``from attnedu.functional import
    softmax``, ``import attnedu.functional as F; softmax = F.softmax``, ``getattr(F,
    "softmax")`` and a re-export of the same object through another ``attnedu`` module are
    all the reference; an unrelated helper (``numpy``, or the library's ``softmax`` in an
    exercise that is not softmax) is not. A prediction (``kind="predict"``) is a function
    returning a value: no flag.

:func:`explain` gives one sentence per flag, also the grading's own ``tests-restored`` and
``tampering``; :func:`reasons` says which exercise raised a flag, and why.

:func:`exercise_table` writes ``book/exercise-table.md``, every chapter's exercises with their
kinds and points, from the notebooks and the exercise records; ``tests/test_integrity.py``
keeps the book's copy equal to it. Regenerate it with::

    .venv/bin/python -m attnedu.integrity table
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable

__all__ = ["FLAGS", "explain", "flags", "reasons", "tampering", "without_tampering", "exercise_rows", "exercise_table", "write_exercise_table"]

#: Every flag the grades' CSV can show, with the sentence that explains it.
FLAGS = {
    "reference-import": (
        "A solution cell imports, binds or calls the library's own version of the function the exercise asks "
        "for (the exercise record's `library` names), or defines nothing of its own (no `def` or `class` of "
        "the exercise's name); the submission is graded as it is, and the flag asks a person to look."),
    "tests-restored": (
        "Test cells of the chapter were missing from the submission and were restored from the source "
        "notebook before grading, so the score is what the untouched notebook would have earned."),
    "tampering": (
        "A solution cell wrote attributes of modules the learner did not define, `sys.modules` or `builtins`, "
        "or exited the kernel or took over a signal handler (found by reading the notebook); the submission is "
        "graded without those statements, its results judged in another process, so it scores what the "
        "code would earn without the tampering."),
}

#: The command that regenerates the book's exercise table.
TABLE_COMMAND = ".venv/bin/python -m attnedu.integrity table"

REPO = Path(__file__).resolve().parent.parent


def explain(flag: str) -> str:
    """One sentence about ``flag``, for the instructors' page and the CSV's documentation."""
    if flag not in FLAGS:
        raise KeyError(f"no flag called {flag!r}; the flags are {', '.join(FLAGS)}")
    return FLAGS[flag]


# ------------------------------------------------------------------ reading a notebook safely
def _source(cell: Any) -> str | None:
    """A cell's text, or None when its source is not text (garbage: no flag from that cell)."""
    text = cell.get("source", "") if isinstance(cell, dict) else None
    if isinstance(text, list):
        text = "".join(t for t in text if isinstance(t, str)) if all(isinstance(t, str) for t in text) else None
    return text if isinstance(text, str) else None


def _nbgrader(cell: Any) -> dict:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


_MAGIC = re.compile(r"^(\s*)[%!]")


def _parse(text: str) -> ast.Module | None:
    """The cell as Python (IPython's ``%magic`` and ``!shell`` lines become ``pass``; a ``%%``
    first line is dropped), or None when it is not Python."""
    lines = text.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        lines = lines[1:]
    lines = [(_MAGIC.match(ln).group(1) + "pass") if _MAGIC.match(ln) else ln for ln in lines]
    try:
        return ast.parse("\n".join(lines))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


# ------------------------------------------------------------------ resolving attnedu names
_MISSING = object()


def _resolve(dotted: str, _cache: dict = {}) -> Any:  # noqa: B006 (a cache on purpose)
    """The object an ``attnedu`` dotted name stands for (importing our own modules, never the
    submission's), or ``_MISSING``."""
    if dotted in _cache:
        return _cache[dotted]
    parts = dotted.split(".")
    obj: Any = _MISSING
    if parts[0] == "attnedu" and all(p.isidentifier() for p in parts):
        try:
            obj = importlib.import_module("attnedu")
            for i, part in enumerate(parts[1:], start=2):
                if hasattr(obj, part):
                    obj = getattr(obj, part)
                elif isinstance(obj, type(sys)):
                    obj = importlib.import_module(".".join(parts[:i]))
                else:
                    obj = _MISSING
                    break
        except Exception:  # noqa: BLE001 (a name that does not import is no reference)
            obj = _MISSING
    _cache[dotted] = obj
    return obj


def _star_names(module: str) -> list[str]:
    """The names ``from module import *`` binds."""
    mod = _resolve(module)
    if mod is _MISSING or not isinstance(mod, type(sys)):
        return []
    names = getattr(mod, "__all__", None)
    if not isinstance(names, (list, tuple)):
        names = [n for n in vars(mod) if not n.startswith("_")]
    return [n for n in names if isinstance(n, str)]


class _Scan(ast.NodeVisitor):
    """Walks a cell in source order, keeping which names stand for ``attnedu`` objects
    (one flat namespace: the cell's functions are called after it ran), and records every
    dotted name an expression resolves to."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.seen: list[str] = []

    # ---- expressions
    def dotted(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.env.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute)):
            fname = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            consts = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if fname == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                    and isinstance(node.args[1].value, str):
                base = self.dotted(node.args[0])
                return f"{base}.{node.args[1].value}" if base else None
            if fname == "import_module" and consts and consts[0].startswith("attnedu"):
                return consts[0]
            if fname == "__import__" and consts and consts[0].startswith("attnedu"):
                fromlist = any(k.arg == "fromlist" for k in node.keywords) or len(node.args) >= 4
                return consts[0] if fromlist else consts[0].split(".")[0]
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                and isinstance(node.slice.value, str):
            key, value = node.slice.value, node.value
            if isinstance(value, ast.Attribute) and value.attr == "modules" and key.startswith("attnedu"):
                return key  # sys.modules["attnedu.functional"]
            if isinstance(value, ast.Attribute) and value.attr == "__dict__":
                base = self.dotted(value.value)
                return f"{base}.{key}" if base else None
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "vars" \
                    and value.args:
                base = self.dotted(value.args[0])
                return f"{base}.{key}" if base else None
        return None

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load) and node.id in self.env:
            self.seen.append(self.env[node.id])

    def _use(self, node, found: str | None) -> None:
        if found:
            self.seen.append(found)
        self.generic_visit(node)

    def visit_Attribute(self, node):
        self._use(node, self.dotted(node) if isinstance(node.ctx, ast.Load) else None)  # writing one is not using it

    def visit_Call(self, node):
        self._use(node, self.dotted(node))
        if isinstance(node.func, ast.Name) and node.func.id in ("exec", "eval") and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            inner = _parse(node.args[0].value)  # code in a string is still code
            if inner is not None:
                self.visit(inner)

    def visit_Subscript(self, node):
        self._use(node, self.dotted(node))

    # ---- bindings
    def bind(self, target: ast.AST, value: str | None) -> None:
        if isinstance(target, ast.Name):
            if value:
                self.env[target.id] = value
            else:
                self.env.pop(target.id, None)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self.bind(t, None)
        elif isinstance(target, ast.Starred):
            self.bind(target.value, None)

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name.split(".")[0] != "attnedu":
                self.env.pop((alias.asname or alias.name).split(".")[0], None)
                continue
            self.seen.append(alias.name)
            if alias.asname:
                self.env[alias.asname] = alias.name
            else:
                self.env["attnedu"] = "attnedu"

    def visit_ImportFrom(self, node):
        module = node.module or ""
        ours = node.level == 0 and module.split(".")[0] == "attnedu"
        for alias in node.names:
            if alias.name == "*":
                for name in _star_names(module) if ours else []:
                    self.env[name] = f"{module}.{name}"
                    self.seen.append(f"{module}.{name}")
                continue
            name = alias.asname or alias.name
            if ours:
                self.env[name] = f"{module}.{alias.name}"
                self.seen.append(f"{module}.{alias.name}")
            else:
                self.env.pop(name, None)

    def visit_Assign(self, node):
        self.visit(node.value)
        value = self.dotted(node.value)
        for target in node.targets:
            if isinstance(target, (ast.Tuple, ast.List)) and isinstance(node.value, (ast.Tuple, ast.List)) \
                    and len(target.elts) == len(node.value.elts):
                for t, v in zip(target.elts, node.value.elts):
                    self.bind(t, self.dotted(v))
            else:
                self.bind(target, value)
            if not isinstance(target, ast.Name):
                self.visit(target)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)
            self.bind(node.target, self.dotted(node.value))

    def visit_NamedExpr(self, node):
        self.visit(node.value)
        self.bind(node.target, self.dotted(node.value))

    def _define(self, node):
        for dec in node.decorator_list:
            self.visit(dec)
        if isinstance(node, ast.ClassDef):
            for base in list(node.bases) + [k.value for k in node.keywords]:
                self.visit(base)
        else:
            self.visit(node.args)
            if node.returns:
                self.visit(node.returns)
        self.env.pop(node.name, None)  # the learner's own definition
        for stmt in node.body:
            self.visit(stmt)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _define


def _defines(tree: ast.Module, name: str) -> bool:
    """Whether the cell defines ``name`` with ``def`` or ``class`` at its top level (also inside
    ``if``/``try``/``with`` blocks there, not inside another function or class)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name == name:
                return True
            continue
        for field in ("body", "orelse", "finalbody", "handlers"):
            todo += [n for n in getattr(node, field, []) or [] if isinstance(n, ast.AST)]
    return False


def _library_objects(exercise) -> tuple[set[str], list[Any]]:
    names = {str(n) for n in exercise.library}
    objects = [o for o in (_resolve(n) for n in names) if o is not _MISSING]
    return names, objects


def _is_reference(dotted: str, names: set[str], objects: list[Any]) -> bool:
    if dotted in names:
        return True
    obj = _resolve(dotted)
    return obj is not _MISSING and any(obj is o for o in objects)


def reasons(notebook: Any, chapter: str) -> list[tuple[str, str, str]]:
    """``(grade_id, flag, why)`` for every flag a submitted notebook of ``chapter`` raises,
    in notebook order; ``why`` is one sentence for the instructor. The notebook is only
    parsed; a cell that is not Python, or has no nbgrader metadata, raises nothing."""
    from .checks import exercises_of

    try:
        records = {ex.grade_id: ex for ex in exercises_of(chapter).values()}
    except Exception:  # noqa: BLE001 (no records: nothing to compare with)
        return []
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        return []
    found: list[tuple[str, str, str]] = []
    env: dict[str, str] = {}  # names that earlier cells bound to attnedu objects
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        text = _source(cell)
        tree = _parse(text) if text is not None else None
        if tree is None:
            continue
        meta = _nbgrader(cell)
        grade_id = meta.get("grade_id")
        exercise = records.get(grade_id) if meta.get("solution") is True and isinstance(grade_id, str) else None
        scan = _Scan(env)
        try:
            scan.visit(tree)
        except RecursionError:
            continue
        if exercise is None:
            continue
        names, objects = _library_objects(exercise)
        used = next((d for d in scan.seen if _is_reference(d, names, objects)), None)
        if used:
            found.append((exercise.grade_id, "reference-import", f"The solution cell `{exercise.grade_id}` uses "
                          f"the library's `{used}`, the exercise's reference."))
        elif not _defines(tree, exercise.name):
            found.append((exercise.grade_id, "reference-import", f"The solution cell `{exercise.grade_id}` defines "
                          f"no `{exercise.name}` of its own (no def or class)."))
    return found


# ------------------------------------------------------------------ tampering
#: Calls that end the kernel or take the checks' timer away.
_EXITS = {"os._exit", "sys.exit", "exit", "quit", "os.kill", "os.abort", "os.killpg", "signal.signal",
          "signal.setitimer", "signal.alarm"}
#: Objects whose contents decide which code runs: writing into them is tampering.
_GUARDED = {"sys.modules", "builtins", "__builtins__", "builtins.__dict__", "sys.meta_path", "sys.path_hooks"}


class _Tampering(ast.NodeVisitor):
    """Finds, in one cell, writes to attributes of imported modules (``np.testing.assert_allclose
    = ...``, ``setattr(checks, ...)``), writes into ``sys.modules`` or ``builtins``, and calls that
    exit the kernel or replace the timer's signal handler. ``modules``: names bound to modules."""

    def __init__(self, modules: dict[str, str]):
        self.modules = modules
        self.found: list[str] = []

    def _dotted(self, node) -> str | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        root = self.modules.get(node.id, node.id)
        return ".".join([root, *reversed(parts)])

    def visit_Import(self, node):
        for alias in node.names:
            self.modules[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                alias.name.split(".")[0]

    def visit_ImportFrom(self, node):
        if node.module and not node.level:
            for alias in node.names:
                if alias.name != "*":
                    self.modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def _store(self, target):
        if isinstance(target, (ast.Tuple, ast.List)):
            for t in target.elts:
                self._store(t)
        elif isinstance(target, ast.Attribute):
            base = target.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in self.modules:
                self.found.append(f"writes `{self._dotted(target)}`")
        elif isinstance(target, ast.Subscript):
            dotted = self._dotted(target.value)
            if dotted in _GUARDED:
                self.found.append(f"writes into `{dotted}`")
        elif isinstance(target, ast.Name) and target.id == "__builtins__":
            self.found.append("replaces `__builtins__`")

    def visit_Assign(self, node):
        for t in node.targets:
            self._store(t)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._store(node.target)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        self._store(node.target)
        self.generic_visit(node)

    def visit_Delete(self, node):
        for t in node.targets:
            self._store(t)

    def visit_Call(self, node):
        dotted = self._dotted(node.func)
        if dotted in _EXITS:
            self.found.append(f"calls `{dotted}`")
        elif dotted in ("setattr", "delattr") and node.args:
            obj, base = self._dotted(node.args[0]), node.args[0]
            while isinstance(base, ast.Attribute):
                base = base.value
            if obj and ((isinstance(base, ast.Name) and base.id in self.modules) or obj in _GUARDED):
                self.found.append(f"calls `{dotted}` on `{obj}`")
        elif dotted and "." in dotted and dotted.rsplit(".", 1)[0] in _GUARDED and \
                dotted.rsplit(".", 1)[1] in ("update", "pop", "clear", "setdefault", "__setitem__", "__delitem__",
                                             "popitem", "insert", "append"):
            self.found.append(f"calls `{dotted}`")
        self.generic_visit(node)


def _source_cells(chapter: str) -> set[str]:
    """The text of every cell of the chapter's source notebook (cells the learner did not write)."""
    path = REPO / "notebooks" / chapter / f"{chapter}.ipynb"
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {(_source(c) or "").strip() for c in nb.get("cells", []) if not _nbgrader(c).get("solution")}


def without_tampering(notebook: Any, chapter: str) -> tuple[Any, list[str]]:
    """The notebook with every top-level statement that tampers removed from the learner's cells
    (its solution cells and the cells they added or changed), and the sentences of
    :func:`tampering`: grading the result gives the score the code would earn without the
    tampering. A statement that hides tampering inside (a ``def`` whose body exits the kernel)
    goes as a whole. An unchanged notebook when nothing tampers or the notebook is garbage."""
    import copy

    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        return notebook, []
    given = _source_cells(chapter)
    out, modules, found = copy.deepcopy(notebook), {}, []
    for cell in out["cells"]:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        text = _source(cell)
        tree = _parse(text) if text is not None else None
        if tree is None:
            continue
        mine = _nbgrader(cell).get("solution") is True or text.strip() not in given
        lines, drop = text.splitlines(keepends=True), set()
        for statement in tree.body:
            scan = _Tampering(modules)
            try:
                scan.visit(statement)
            except RecursionError:
                continue
            if mine and scan.found:
                where = _nbgrader(cell).get("grade_id") or "a cell the learner added or changed"
                found += [f"{where} {what}" for what in scan.found]
                drop.update(range(statement.lineno - 1, (statement.end_lineno or statement.lineno)))
        if drop:
            cell["source"] = "".join(ln for i, ln in enumerate(lines) if i not in drop)
    return (out, found) if found else (notebook, [])


def tampering(notebook: Any, chapter: str) -> list[str]:
    """Sentences about the tampering in a submitted notebook of ``chapter``: in its solution
    cells and in cells the learner added or changed, writes to attributes of modules the learner
    did not define, into ``sys.modules`` or ``builtins``, and calls that exit the kernel or
    replace a signal handler (the checks' time limit). Seeding generators and setting thread
    counts are calls, not writes: never flagged. Never runs the code; garbage finds nothing."""
    return without_tampering(notebook, chapter)[1]


def flags(notebook: Any, chapter: str) -> list[str]:
    """The academic-integrity flags of a submitted notebook (an nbformat dict) of ``chapter``
    (its folder name, ``"01-weighted-sums"``): ``[]`` when clean, else ``["reference-import"]``
    (see :func:`reasons` for which exercise and why). Never runs the submission's code."""
    out: list[str] = []
    for _, flag, _ in reasons(notebook, chapter):
        if flag not in out:
            out.append(flag)
    if tampering(notebook, chapter):
        out.append("tampering")
    return out


# ------------------------------------------------------------------ the table of exercises
def _chapters(root: Path) -> list[str]:
    source = root / "notebooks"
    return sorted(d.name for d in source.iterdir() if d.is_dir() and (d / f"{d.name}.ipynb").is_file())


def exercise_rows(root: Path | str = REPO) -> list[dict]:
    """One row per graded exercise of every chapter, in notebook order: ``chapter``,
    ``grade_id``, ``name`` (what the learner writes), ``kind``, ``check`` and ``hidden`` (the
    points of the two test cells)."""
    from .checks import exercises_of

    root = Path(root)
    rows = []
    for chapter in _chapters(root):
        records = {ex.grade_id: ex for ex in exercises_of(chapter).values()}
        nb = json.loads((root / "notebooks" / chapter / f"{chapter}.ipynb").read_text(encoding="utf-8"))
        points = {m["grade_id"]: m.get("points", 0) for m in map(_nbgrader, nb["cells"]) if m.get("grade_id")}
        for meta in map(_nbgrader, nb["cells"]):
            ex = records.get(meta.get("grade_id")) if meta.get("solution") else None
            if ex is None:
                continue
            rows.append({"chapter": chapter, "grade_id": ex.grade_id, "name": ex.name, "kind": ex.kind,
                         "check": points.get(f"{ex.grade_id}-check", 0),
                         "hidden": points.get(f"{ex.grade_id}-hidden", 0)})
    return rows


def _points(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def exercise_table(root: Path | str = REPO) -> str:
    """The Markdown of ``book/exercise-table.md``: every chapter's exercises, kinds and points."""
    rows = exercise_rows(root)
    kinds = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    total = sum(r["check"] + r["hidden"] for r in rows)
    lines = [
        f"% Generated by `{TABLE_COMMAND}` from the notebooks and the exercise records: do not edit.",
        "",
        "(for-instructors-every-chapters-exercises)=",
        "### Every chapter's exercises",
        "",
        f"The course has {len(rows)} graded exercises worth {_points(total)} points in all ("
        + ", ".join(f"{n} `{k}`" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])) + "). "
        "*Writes* is the name the learner defines; *check* and *hidden* are the points of the visible "
        "check cell (`<grade id>-check`) and of the hidden-tests cell (`<grade id>-hidden`).",
        "",
    ]
    for chapter in dict.fromkeys(r["chapter"] for r in rows):
        mine = [r for r in rows if r["chapter"] == chapter]
        points = sum(r["check"] + r["hidden"] for r in mine)
        lines += [f"**{chapter}** ({len(mine)} exercises, {_points(points)} points)", "",
                  "| Grade id | Kind | Writes | Check | Hidden | Total |", "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| `{r['grade_id']}` | {r['kind']} | `{r['name']}` | {_points(r['check'])} | "
                  f"{_points(r['hidden'])} | {_points(r['check'] + r['hidden'])} |" for r in mine]
        lines.append("")
    return "\n".join(lines)


def write_exercise_table(root: Path | str = REPO) -> Path:
    """Write ``book/exercise-table.md`` from the notebooks and records; return its path."""
    path = Path(root) / "book" / "exercise-table.md"
    path.write_text(exercise_table(root), encoding="utf-8")
    return path


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m attnedu.integrity", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="write book/exercise-table.md from the notebooks and records")
    table.add_argument("--root", default=str(REPO), help="the top of the attnedu repository")
    check = sub.add_parser("flags", help="print the flags of submitted notebooks, with the reasons")
    check.add_argument("chapter", help='the chapter\'s folder name, e.g. "01-weighted-sums"')
    check.add_argument("notebooks", nargs="+")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.command == "table":
        print(f"wrote {write_exercise_table(args.root)}")
        return 0
    for path in args.notebooks:
        try:
            nb = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"{path}: not read ({exc.__class__.__name__})")
            continue
        found = reasons(nb, args.chapter)
        print(f"{path}: {';'.join(flags(nb, args.chapter)) or 'clean'}")
        for grade_id, flag, why in found:
            print(f"  {flag}: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
