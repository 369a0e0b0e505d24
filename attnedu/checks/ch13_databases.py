"""Visible checks for chapter 13, *Databases for generative AI*.

Each ``check_*`` takes the learner's function, runs it on a few cases (the first small
enough to check by hand) and either prints one line of success or raises
:class:`~attnedu.checks.core.CheckFailed` explaining the first problem found; a result
equal to a typical wrong implementation is named (``Likely cause: ...``).

The ``*_reference`` functions are what the chapter switches to after each exercise:

* :func:`normalise_for_hash_reference`: :func:`attnedu.governance.normalise_text`;
* :func:`near_duplicate_pairs_reference`: the pairs of
  :func:`attnedu.governance.near_duplicate_pairs`, without their similarities;
* :func:`precision_recall_reference`: the ``"all"`` line of
  :func:`attnedu.governance.span_scores`;
* :func:`prerequisites_reference`: :meth:`attnedu.governance.KnowledgeGraph.reachable`
  along ``requires`` edges, one recursive SQL query.

These functions return strings, lists and tuples rather than arrays, so their checks
use :func:`check_value_function`, which compares values exactly (numbers within a
tolerance) and never deep-copies the arguments (a graph holds a database connection).
"""

from __future__ import annotations

import math
import numbers
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from ..governance import KnowledgeGraph, near_duplicate_pairs, normalise_text, span_scores
from .core import with_article as _a
from .core import DEFAULT_TIME_LIMIT, Case, CheckFailed, check_each

__all__ = [
    "normalise_for_hash_reference",
    "near_duplicate_pairs_reference",
    "precision_recall_reference",
    "prerequisites_reference",
    "check_value_function",
    "check_normalise_for_hash",
    "check_near_duplicate_pairs",
    "check_precision_recall",
    "check_prerequisites",
    "example_graph",
]


# ------------------------------------------------------------------- references
def normalise_for_hash_reference(text: str) -> str:
    """NFKC, casefold, runs of non-letters/digits -> one space, stripped."""
    return normalise_text(text)


def near_duplicate_pairs_reference(vectors, threshold: float) -> list[tuple[int, int]]:
    """``[(i, j), ...]`` with ``i < j`` and cosine(vectors[i], vectors[j]) >= threshold, sorted."""
    return sorted((i, j) for i, j, _ in near_duplicate_pairs(vectors, threshold))


def precision_recall_reference(predicted, gold) -> tuple[float, float]:
    """``(precision, recall)`` of predicted spans against gold spans, each span counted once;
    precision is 1.0 when nothing is predicted, recall 1.0 when there is nothing to find."""
    scores = span_scores(predicted, gold, kinds=())["all"]
    return scores["precision"], scores["recall"]


def prerequisites_reference(graph: KnowledgeGraph, concept: str) -> list[tuple[str, int]]:
    """``[(name, hops), ...]``: everything ``concept`` requires, directly or not, each with the
    fewest ``requires`` edges that lead to it, sorted by hops, then name."""
    return graph.reachable(concept, "requires", max_depth=50)


# ------------------------------------------------------------ comparing values
def _close(a, b) -> bool:
    """Equal values; numbers within 1e-9 (relative) and never bool for a number."""
    if isinstance(b, float):
        return (isinstance(a, numbers.Real) and not isinstance(a, (bool, np.bool_))
                and math.isclose(float(a), b, rel_tol=1e-9, abs_tol=1e-12))
    if isinstance(b, (list, tuple)):
        return isinstance(a, (list, tuple)) and len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(b, int) and not isinstance(b, bool):
        return isinstance(a, numbers.Integral) and not isinstance(a, (bool, np.bool_)) and int(a) == b
    return type(a) is type(b) and a == b


def check_value_function(fn, name: str, cases: Sequence[Case], *, compare, params: Sequence[str] = (),
                         mistakes=(), time_limit: float | None = DEFAULT_TIME_LIMIT, quiet: bool = False) -> None:
    """:func:`~attnedu.checks.core.check_each` with ``compare(got, expected, lead)`` raising a
    :class:`CheckFailed` naming the first difference. The arguments are passed as they are,
    not copied: a graph holds a database connection. Typical mistakes are named when ``got``
    equals theirs."""
    check_each(fn, name, cases, lambda got, case, lead: compare(got, case.expected, lead), same=_close,
               params=params, mistakes=mistakes, time_limit=time_limit, quiet=quiet, copy_args=False,
               timeout_hint=" (or a recursive query without a limit)")


def _compare_text(got, expected: str, lead: str) -> None:
    if not isinstance(got, str):
        raise CheckFailed(f"{lead} returned {_a(type(got).__name__)}; expected a string.", about_values=False)
    if got != expected:
        raise CheckFailed(f"{lead} returned {got!r}; expected {expected!r}.")


def _compare_pairs(got, expected: list, lead: str) -> None:
    if not isinstance(got, (list, tuple)):
        raise CheckFailed(f"{lead} returned {_a(type(got).__name__)}; expected a list of (i, j) pairs.",
                          about_values=False)
    pairs = []
    for p in got:
        if not isinstance(p, (list, tuple)) or len(p) != 2 or not all(
                isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in p):
            raise CheckFailed(f"{lead} returned {p!r} as a pair; each pair must be two integers (i, j).",
                              about_values=False)
        pairs.append((int(p[0]), int(p[1])))
    if any(i >= j for i, j in pairs):
        bad = next(p for p in pairs if p[0] >= p[1])
        raise CheckFailed(f"{lead} returned the pair {bad}; list each pair once, as (i, j) with i < j "
                          "(a vector is not a duplicate of itself).")
    if len(set(pairs)) != len(pairs):
        raise CheckFailed(f"{lead} lists a pair twice.")
    missing, extra = sorted(set(expected) - set(pairs)), sorted(set(pairs) - set(expected))
    if missing:
        raise CheckFailed(f"{lead} misses the pair {missing[0]}" + (f" (and {len(missing) - 1} more)" if
                                                                    len(missing) > 1 else "") + ".")
    if extra:
        raise CheckFailed(f"{lead} returns the pair {extra[0]}, whose cosine is below the threshold"
                          + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "") + ".")
    if pairs != sorted(pairs):
        raise CheckFailed(f"{lead} returned the right pairs in the wrong order: return sorted(pairs).")


def _compare_pr(got, expected: tuple, lead: str) -> None:
    if not isinstance(got, tuple) or len(got) != 2:
        n = len(got) if isinstance(got, (tuple, list)) else 1
        raise CheckFailed(f"{lead} returned {n} value(s) as {_a(type(got).__name__)}; expected a tuple of 2: "
                          "`return precision, recall`.", about_values=False)
    for value, label, exp in zip(got, ("precision", "recall"), expected):
        if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
            raise CheckFailed(f"{lead} returned {value!r} as the {label}; expected a number.", about_values=False)
        if not math.isclose(float(value), exp, rel_tol=1e-9, abs_tol=1e-12):
            raise CheckFailed(f"{lead} returned a {label} of {float(value):.4g}; expected {exp:.4g}.")


def _compare_reached(got, expected: list, lead: str) -> None:
    if not isinstance(got, (list, tuple)):
        raise CheckFailed(f"{lead} returned {_a(type(got).__name__)}; expected a list of (name, hops) pairs.",
                          about_values=False)
    rows = []
    for r in got:
        if not isinstance(r, (list, tuple)) or len(r) != 2 or not isinstance(r[0], str) \
                or not isinstance(r[1], numbers.Integral) or isinstance(r[1], bool):
            raise CheckFailed(f"{lead} returned {r!r} as a row; each row must be (name, hops): a string and an "
                              "integer, e.g. ('softmax', 2).", about_values=False)
        rows.append((r[0], int(r[1])))
    names = [n for n, _ in rows]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CheckFailed(f"{lead} lists {twice[0]!r} {names.count(twice[0])} times: keep each concept once, with "
                          "its fewest hops (GROUP BY name with min(hops)).")
    exp_names = {n for n, _ in expected}
    missing, extra = sorted(exp_names - set(names)), sorted(set(names) - exp_names)
    if missing:
        raise CheckFailed(f"{lead} misses {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1
                                                              else "") + ".")
    if extra:
        raise CheckFailed(f"{lead} returns {extra[0]!r}, which the concept does not require.")
    hops = dict(expected)
    wrong = [(n, h) for n, h in rows if hops[n] != h]
    if wrong:
        n, h = wrong[0]
        raise CheckFailed(f"{lead} gives {n!r} {h} hop(s); the fewest `requires` edges that lead to it are {hops[n]}.")
    if rows != list(expected):
        raise CheckFailed(f"{lead} returned the right rows in the wrong order: sort by hops, then by name "
                          "(ORDER BY hops, name).")


# ------------------------------------------------------------------- typical mistakes
_NORMALISE_MISTAKES = [
    (lambda t: " ".join(re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", t).lower()).split()),
     "it uses str.lower(), which leaves 'ß' as it is; str.casefold() turns it into 'ss', as 'SS' lower-cases to."),
    (lambda t: re.sub(r"[\W_]+", " ", t.casefold()).strip(),
     "it skips unicodedata.normalize('NFKC', text): the ligature 'ﬁ' and full-width digits stay different "
     "characters from 'fi' and '1'."),
    (lambda t: " ".join(unicodedata.normalize("NFKC", t).casefold().split()),
     "punctuation is kept: replace every run of characters that are not letters or digits by one space."),
    (lambda t: re.sub(r"\W+", " ", unicodedata.normalize("NFKC", t).casefold()).strip(),
     "the underscore is kept: \\W does not match '_', so use [\\W_]+ for 'not a letter or a digit'."),
    (lambda t: re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", t).casefold()),
     "the spaces at the ends are kept: finish with .strip()."),
    (lambda t: re.sub(r"[\W_]", " ", unicodedata.normalize("NFKC", t).casefold()).strip(),
     "each character is replaced by its own space, so runs of them leave several spaces: use a run, [\\W_]+."),
]


def _pairs_with(score, strict: bool = False):
    def wrong(vectors, threshold):
        x = np.asarray(vectors, dtype=float)
        s = score(x)
        n = len(x)
        return sorted((i, j) for i in range(n) for j in range(i + 1, n)
                      if (s[i, j] > threshold if strict else s[i, j] >= threshold - 1e-9))
    return wrong


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


_PAIRS_MISTAKES = [
    (_pairs_with(lambda x: x @ x.T),
     "it compares dot products, not cosines: divide each vector by its length first (np.linalg.norm(..., axis=1, "
     "keepdims=True))."),
    (_pairs_with(lambda x: _unit(x) @ _unit(x).T, strict=True),
     "it keeps cos > threshold; a pair exactly at the threshold counts too (>=)."),
    (_pairs_with(lambda x: -np.linalg.norm(x[:, None] - x[None], axis=-1)),
     "it uses the Euclidean distance, not the cosine similarity."),
]


def _pr_with(fn):
    def wrong(predicted, gold):
        return fn(list(predicted), list(gold))
    return wrong


def _tp(p, g):
    return len(set(p) & set(g))


_PR_MISTAKES = [
    (_pr_with(lambda p, g: (_tp(p, g) / len(set(g)) if g else 1.0, _tp(p, g) / len(set(p)) if p else 1.0)),
     "precision and recall are swapped: precision divides by what was predicted, recall by what was there to "
     "find."),
    (_pr_with(lambda p, g: (_tp(p, g) / len(p) if p else 1.0, _tp(p, g) / len(g) if g else 1.0)),
     "a span listed twice is counted twice: turn both lists into sets first."),
    (_pr_with(lambda p, g: (_tp(p, g) / len(set(p)) if p else 0.0, _tp(p, g) / len(set(g)) if g else 0.0)),
     "with nothing to count it returns 0; here an empty prediction has precision 1.0 (it claimed nothing wrong) "
     "and an empty gold set recall 1.0 (nothing was missed)."),
    (_pr_with(lambda p, g: (len({s[:2] for s in set(p)} & {s[:2] for s in set(g)}) / len(set(p)) if p else 1.0,
                            len({s[:2] for s in set(p)} & {s[:2] for s in set(g)}) / len(set(g)) if g else 1.0)),
     "it compares positions only: a span is right only if its kind is right too."),
]


def _one_hop(graph, concept):
    return graph.reachable(concept, "requires", max_depth=1)


def _with_self(graph, concept):
    rows = graph.reachable(concept, "requires", max_depth=50)
    return [(concept, 0)] + rows if graph.query("SELECT 1 FROM entities WHERE name = ?", [concept]) else rows


def _max_hops(graph, concept):
    rows = graph.query("""
        WITH RECURSIVE reach (id, hops) AS (
            SELECT r.dst, 1 FROM relations AS r JOIN entities AS e ON e.id = r.src
            WHERE e.name = ? AND r.rel = 'requires'
          UNION
            SELECT r.dst, reach.hops + 1 FROM relations AS r JOIN reach ON r.src = reach.id
            WHERE r.rel = 'requires' AND reach.hops < 50)
        SELECT e.name, max(hops) FROM reach JOIN entities AS e ON e.id = reach.id
        GROUP BY e.name ORDER BY 2, 1""", [concept])
    return [(n, int(h)) for n, h in rows]


def _any_relation(graph, concept):
    rows = graph.query("""
        WITH RECURSIVE reach (id, hops) AS (
            SELECT r.dst, 1 FROM relations AS r JOIN entities AS e ON e.id = r.src WHERE e.name = ?
          UNION
            SELECT r.dst, reach.hops + 1 FROM relations AS r JOIN reach ON r.src = reach.id
            WHERE reach.hops < 50)
        SELECT e.name, min(hops) FROM reach JOIN entities AS e ON e.id = reach.id
        GROUP BY e.name ORDER BY 2, 1""", [concept])
    return [(n, int(h)) for n, h in rows]


_PREREQ_MISTAKES = [
    (_one_hop, "it returns the direct prerequisites only: a recursive query (WITH RECURSIVE) follows the edges "
               "again from every concept found."),
    (_with_self, "it lists the concept itself with 0 hops: return only what it requires."),
    (_max_hops, "it keeps the largest number of hops: a concept reached by two routes gets the shorter, min(hops)."),
    (_any_relation, "it follows every relation: keep only edges with rel = 'requires' (in both parts of the "
                    "recursive query)."),
]


# ------------------------------------------------------------------- the graph for the checks
EXAMPLE_EDGES = [  # (src, rel, dst): a small course, checkable by hand
    ("multi-head attention", "requires", "scaled dot-product attention"),
    ("scaled dot-product attention", "requires", "softmax"),
    ("scaled dot-product attention", "requires", "dot product"),
    ("softmax", "requires", "exponential"),
    ("transformer", "requires", "multi-head attention"),
    ("transformer", "requires", "layer normalisation"),
    ("transformer", "requires", "softmax"),  # a second, shorter route to softmax
    ("layer normalisation", "requires", "mean and variance"),
    ("softmax", "introduced_in", "chapter 1"),
    ("transformer", "introduced_in", "chapter 5"),
    ("chapter 5", "requires", "chapter 4"),  # not a concept's prerequisite: another relation's edge
]


def example_graph(edges=EXAMPLE_EDGES) -> KnowledgeGraph:
    """A :class:`KnowledgeGraph` in a new in-memory SQLite store, with ``edges``."""
    from ..store import open_store

    graph = KnowledgeGraph(open_store("sqlite://", dim=1))
    for src, rel, dst in edges:
        graph.relate(src, rel, dst)
    return graph


# ------------------------------------------------------------------- checks
def check_normalise_for_hash(normalise_for_hash) -> None:
    """Check ``normalise_for_hash(text) -> str``."""
    ref = normalise_for_hash_reference
    texts = [
        ("  What IS attention? ", "spaces, case and a question mark"),
        ("What is attention?!", "the same question with other punctuation"),
        ("STRASSE and Straße", "the German sharp s"),
        ("the ﬁrst ＧＰＴ-２ model", "a ligature and full-width letters and digits"),
        ("snake_case -- and...   dots", "underscores, dashes and runs of punctuation"),
        ("", "the empty string"),
    ]
    cases = [Case((t,), ref(t), about=f"{t!r} ({what})",
                  hint="by hand: '  What IS attention? ' becomes 'what is attention'.") if i == 0 else
             Case((t,), ref(t), about=f"{t!r} ({what})") for i, (t, what) in enumerate(texts)]
    check_value_function(normalise_for_hash, "normalise_for_hash", cases, compare=_compare_text,
                         params=["text"], mistakes=_NORMALISE_MISTAKES)


def check_near_duplicate_pairs(near_duplicate_pairs) -> None:
    """Check ``near_duplicate_pairs(vectors, threshold) -> [(i, j), ...]``."""
    ref = near_duplicate_pairs_reference
    hand = np.array([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [0.6, 0.8]])  # (4, 2)
    rng = np.random.default_rng(1302)
    base = rng.normal(size=(6, 16))
    many = np.concatenate([base, base[[0, 2, 2]] + rng.normal(scale=0.05, size=(3, 16))])  # (9, 16)
    exact = np.array([[3.0, 4.0], [0.6, 0.8], [4.0, 3.0]])  # cos(0, 1) = 1, cos(0, 2) = 0.96 exactly
    cases = [
        Case((hand, 0.99), ref(hand, 0.99), about="4 vectors in 2-D, threshold 0.99",
             hint="by hand: [1, 0] and [2, 0.1] point almost the same way (cosine 0.9988), although one is twice "
                  "as long; no other pair comes close."),
        Case((hand, 0.5), ref(hand, 0.5), about="the same 4 vectors, threshold 0.5",
             hint="[0.6, 0.8] has cosine 0.6 with [1, 0] and 0.8 with [0, 1]."),
        Case((exact, 0.96), ref(exact, 0.96), about="cosines of exactly 1 and 0.96, threshold 0.96",
             hint="a pair exactly at the threshold counts: cosine >= threshold."),
        Case((many, 0.9), ref(many, 0.9), about="9 vectors in 16-D, 3 of them noisy copies, threshold 0.9"),
        Case((hand[:1], 0.5), [], about="a single vector", hint="one vector has no pair: return []."),
    ]
    check_value_function(near_duplicate_pairs, "near_duplicate_pairs", cases, compare=_compare_pairs,
                         params=["vectors", "threshold"], mistakes=_PAIRS_MISTAKES)


def check_precision_recall(precision_recall) -> None:
    """Check ``precision_recall(predicted, gold) -> (precision, recall)``."""
    ref = precision_recall_reference
    gold = [(0, 5, "name"), (10, 27, "email"), (30, 42, "phone")]
    pred = [(0, 5, "name"), (10, 27, "email"), (44, 48, "name")]
    cases = [
        Case((pred, gold), ref(pred, gold), about="2 of 3 predicted spans right, 2 of 3 gold spans found",
             hint="by hand: 2 true positives; precision = 2 / 3 predicted, recall = 2 / 3 gold."),
        Case((pred[:1], gold), ref(pred[:1], gold), about="1 span predicted, right; 3 gold spans",
             hint="precision = 1 / 1, recall = 1 / 3."),
        Case(([(0, 5, "phone")], [(0, 5, "name")]), (0.0, 0.0), about="the right place with the wrong kind",
             hint="a span is right only when start, end and kind all match."),
        Case((pred + pred[:1], gold), ref(pred, gold), about="a predicted span listed twice",
             hint="count each span once: use sets."),
        Case(([], gold), (1.0, 0.0), about="nothing predicted",
             hint="no prediction: precision is 1.0 by convention (nothing wrong was claimed), recall is 0."),
        Case(([(3, 9, "email")], []), (0.0, 1.0), about="a text without personal data, one false alarm",
             hint="nothing to find: recall is 1.0 by convention; precision 0 / 1."),
    ]
    check_value_function(precision_recall, "precision_recall", cases, compare=_compare_pr,
                         params=["predicted", "gold"], mistakes=_PR_MISTAKES)


def check_prerequisites(prerequisites) -> None:
    """Check ``prerequisites(graph, concept) -> [(name, hops), ...]`` on :func:`example_graph`."""
    graph = example_graph()
    ref = prerequisites_reference
    try:
        cases = [
            Case((graph, "scaled dot-product attention"), ref(graph, "scaled dot-product attention"),
                 about="'scaled dot-product attention' in the example graph",
                 hint="by hand: it requires softmax and dot product (1 hop), and softmax requires exponential "
                      "(2 hops)."),
            Case((graph, "multi-head attention"), ref(graph, "multi-head attention"),
                 about="'multi-head attention' (3 hops deep)",
                 hint="follow `requires` edges again from every concept found: WITH RECURSIVE."),
            Case((graph, "transformer"), ref(graph, "transformer"),
                 about="'transformer': softmax is 1 hop away directly and 3 hops through attention",
                 hint="keep the fewest hops of each concept (GROUP BY name, min(hops)); follow only `requires`."),
            Case((graph, "exponential"), [], about="'exponential', which requires nothing",
                 hint="a concept without prerequisites gives []."),
            Case((graph, "no such concept"), [], about="a concept that is not in the graph",
                 hint="an unknown concept gives []."),
        ]
        check_value_function(prerequisites, "prerequisites", cases, compare=_compare_reached,
                             params=["graph", "concept"], mistakes=_PREREQ_MISTAKES)
    finally:
        graph.store.close()
