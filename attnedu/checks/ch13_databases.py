"""Chapter 13's exercises, *Data for generative AI*, as records (see :mod:`attnedu.checks`). Lists of pairs
(i, j) and of rows (name, hops) have comparisons of their own, registered here: ``"pairs"`` and ``"rows"``."""

import re
import unicodedata

import numpy as np

from .. import governance as G
from ..governance.graph import REACHABLE_SQL
from . import COMPARISONS, REFERENCE as REF, Case, CheckFailed, Exercise, ExerciseSet, register
from .compare import _fail
from .engine import with_article

def _table(rows):  # cases from rows (args, expected, about, hint)
    return [Case(args, expected=expected, about=about, hint=hint) for args, expected, about, hint in rows]
_INT = (int, np.integer)  # a bool is never one (see _items)
def _items(got, lead, what, types, bad):  # got as a list of 2-tuples of `types` (ints made int), or a CheckFailed
    if not isinstance(got, (list, tuple)):
        _fail(f"{lead} returned {with_article(type(got).__name__)}; expected a list of {what}.")
    for r in got:
        if not (isinstance(r, (list, tuple)) and len(r) == 2
                and all(isinstance(x, t) and not isinstance(x, bool) for x, t in zip(r, types))):
            _fail(f"{lead} returned {r!r} as {bad}")
    return [tuple(x if isinstance(x, str) else int(x) for x in r) for r in got]
def _diff(got, expected):  # missing, extra (sorted), and " (and n more)" for each
    d = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    return *d, *(f" (and {len(x) - 1} more)" if len(x) > 1 else "" for x in d)
def _first(lead, *problems):  # raise the first problem (a sentence; a false value where there is none)
    for problem in filter(None, problems):
        raise CheckFailed(f"{lead} {problem}")
def _compare_pairs(got, case, lead, ex):
    pairs = _items(got, lead, "(i, j) pairs", [_INT, _INT], "a pair; each pair must be two integers (i, j).")
    back, (missing, extra, more, other) = [p for p in pairs if p[0] >= p[1]], _diff(pairs, case.expected)
    _first(lead, back and f"returned the pair {back[0]}; list each pair once, as (i, j) with i < j (a vector is not "
                          "a duplicate of itself).",
           len(set(pairs)) != len(pairs) and "lists a pair twice.",
           missing and f"misses the pair {missing[0]}{more}.",
           extra and f"returns the pair {extra[0]}, whose cosine is below the threshold{other}.",
           pairs != sorted(pairs) and "returned the right pairs in the wrong order: return sorted(pairs).")
def _compare_rows(got, case, lead, ex):
    rows = _items(got, lead, "(name, hops) pairs", [str, _INT], "a row; each row must be (name, hops): a string and an "
                                                                "integer, e.g. ('softmax', 2).")
    names, hops = [n for n, _ in rows], dict(case.expected)
    twice, (missing, extra, more, _) = sorted({n for n in names if names.count(n) > 1}), _diff(names, hops)
    wrong = [(n, h) for n, h in rows if n in hops and hops[n] != h]
    _first(lead, twice and f"lists {twice[0]!r} {names.count(twice[0])} times: keep each concept once, with its "
                           "fewest hops (GROUP BY name with min(hops)).",
           missing and f"misses {missing[0]!r}{more}.",
           extra and f"returns {extra[0]!r}, which the concept does not require.",
           wrong and f"gives {wrong[0][0]!r} {wrong[0][1]} hop(s); the fewest `requires` edges that lead to it are "
                     f"{hops[wrong[0][0]]}.",
           rows != list(case.expected) and "returned the right rows in the wrong order: sort by hops, then by name "
                                           "(ORDER BY hops, name).")
register("pairs", _compare_pairs, COMPARISONS["value"].same)
register("rows", _compare_rows, COMPARISONS["value"].same)
def _normalise_with(text, *, nfkc=True, fold=str.casefold, pattern=r"[\W_]+", strip=True):
    text = re.sub(pattern, " ", fold(unicodedata.normalize("NFKC", text) if nfkc else text))
    return text.strip() if strip else text
def _groups_with(texts, *, singletons=False, by_text=False, **normalise):  # the wrong-on-purpose variant
    groups = {}
    for i, t in enumerate(texts):
        groups.setdefault(_normalise_with(t, **normalise), []).append(i)
    kept = [(k, g) for k, g in groups.items() if singletons or len(g) > 1]
    return [g for _, g in (sorted(kept) if by_text else kept)]
_GROUPS = _table([((texts,), REF, about, hint) for texts, about, hint in [
    (["Why divide by sqrt(d_k)?", "What is attention?", "why divide by SQRT(d_k)", "what is  ATTENTION",
      "WHAT IS ATTENTION!", "How many heads?"], "6 questions, two of them asked again",
     "by hand: 'What is attention?' (1) is asked again as 3 and 4, 'Why divide by sqrt(d_k)?' (0) as 2; "
     "'How many heads?' has no copy: [[0, 2], [1, 3, 4]]."),
    (["Straße", "STRASSE", "strasse"], "the German sharp s", "'SS' lower-cases to 'ss', and so should 'ß'."),
    (["the ﬁrst ＧＰＴ-２", "The first GPT 2", "the first gpt-2!"], "a ligature and full-width letters and digits",
     "'ﬁ' is one character, and full-width 'Ｇ' and '２' are other characters than 'G' and '2', until Unicode's "
     "NFKC normalisation turns them into the plain ones."),
    (["snake_case -- and...   dots", "snake case and dots", "Snake-Case, and dots."], "underscores, dashes and "
     "runs of punctuation", "every run of characters that are not letters or digits counts as one space."),
    ((["attention", "softmax", "heads"]), "three different texts", "no text has a copy: return []."),
    (([]), "no text at all", "an empty list has no duplicates: return [].")]])
_DUP_BASES = ["What is attention?", "Why divide by sqrt(d_k)?", "Straße und Maß", "STRASSE UND MASS",
              "the ﬁrst ＧＰＴ-２ model", "the first GPT-2 model", "snake_case names", "KV cache -- why?", "café",
              "cafe\u0301", "Ⅻ heads", "XII heads"]  # pairs that only NFKC or casefold make equal
def _dup_variant(rng, text):  # the same text as people retype it
    for change in rng.permutation(5)[:int(rng.integers(0, 4))]:
        text = [text.upper(), text.lower(), "  " + text.replace(" ", "   ") + " ", text + "?!",
                text.replace(" ", "_")][change]
    return text
def _groups_hidden():
    rng, cases = np.random.default_rng(1301), []
    for trial in range(30):
        picks = rng.choice(len(_DUP_BASES), size=int(rng.integers(1, 12)))
        texts = [_dup_variant(rng, _DUP_BASES[i]) for i in picks]
        cases.append(Case((texts,), about=f"trial {trial}: {len(texts)} texts"))
    return cases
_EXACT = Exercise("exact_duplicate_groups", ["texts"], G.exact_duplicate_groups, lambda: _GROUPS, _groups_hidden,
                  compare="value", wrong=_groups_with, mistakes=[
    ({"fold": str.lower}, "it uses str.lower(), which leaves 'ß' as it is; str.casefold() turns it into 'ss', as 'SS' "
     "lower-cases to."),
    ({"nfkc": False}, "it skips unicodedata.normalize('NFKC', text): the ligature 'ﬁ' and full-width letters and "
     "digits stay different characters from 'fi', 'G' and '2'."),
    ({"pattern": r"\s+"}, "punctuation is kept: replace every run of characters that are not letters or digits by one "
     "space."),
    ({"pattern": r"\W+"}, "the underscore is kept: \\W does not match '_', so use [\\W_]+ for 'not a letter or a "
     "digit'."),
    ({"strip": False}, "the spaces at the ends are kept: finish with .strip()."),
    ({"pattern": r"[\W_]"}, "each character is replaced by its own space, so runs of them leave several spaces: use a "
     "run, [\\W_]+."),
    ({"singletons": True}, "it returns texts without a copy as groups of one: keep only groups of two or more."),
    ({"by_text": True}, "the groups are sorted by their text; order them by their first position.")])
def _pairs_with(vectors, threshold, *, score="cosine", strict=False):
    x = np.asarray(vectors, dtype=float)
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = {"cosine": u @ u.T, "dot": x @ x.T, "distance": -np.linalg.norm(x[:, None] - x[None], axis=-1)}[score]
    keep = np.triu(s > threshold if strict else s >= threshold - 1e-9, k=1)  # (n, n), i < j
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(keep))]
def _pairs_cases():
    rng, hand = np.random.default_rng(1302), np.array([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [0.6, 0.8]])  # (4, 2)
    exact = np.array([[3.0, 4.0], [0.6, 0.8], [4.0, 3.0]])  # cos(0, 1) = 1, cos(0, 2) = 0.96 exactly
    base = rng.normal(size=(6, 16))  # many: (9, 16), 3 noisy copies
    many = np.concatenate([base, base[[0, 2, 2]] + rng.normal(scale=0.05, size=(3, 16))])
    return _table([
        ((hand, 0.99), REF, "4 vectors in 2-D, threshold 0.99", "by hand: [1, 0] and [2, 0.1] point almost the same "
         "way (cosine 0.9988), although one is twice as long; no other pair comes close."),
        ((hand, 0.5), REF, "the same 4 vectors, threshold 0.5", "[0.6, 0.8] has cosine 0.6 with [1, 0] and 0.8 with "
         "[0, 1]."),
        ((exact, 0.96), REF, "cosines of exactly 1 and 0.96, threshold 0.96", "a pair exactly at the threshold counts: "
         "cosine >= threshold."),
        ((many, 0.9), REF, "9 vectors in 16-D, 3 of them noisy copies, threshold 0.9", None),
        ((hand[:1], 0.5), [], "a single vector", "one vector has no pair: return [].")])
def _pairs_hidden():
    rng, cases = np.random.default_rng(1302), []
    for trial in range(12):
        n, d = int(rng.integers(2, 30)), int(rng.integers(2, 40))
        x = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, size=(n, 1))
        copies = rng.integers(0, n, size=int(rng.integers(0, 5)))
        x = np.concatenate([x, x[copies] * 3 + rng.normal(scale=0.02, size=(len(copies), d))])
        cases.append(Case((x, float(rng.choice([0.0, 0.5, 0.9, 0.99, 0.999]))), about=f"trial {trial}"))
    return cases + [Case((np.ones((3, 4)), 1.0), expected=[(0, 1), (0, 2), (1, 2)], about="three equal vectors")]
_PAIRS = Exercise("near_duplicate_pairs", ["vectors", "threshold"], G.near_duplicate_index_pairs, _pairs_cases,
                  _pairs_hidden, compare="pairs", wrong=_pairs_with, mistakes=[
    ({"score": "dot"}, "it compares dot products, not cosines: divide each vector by its length first "
     "(np.linalg.norm(..., axis=1, keepdims=True))."),
    ({"strict": True}, "it keeps cos > threshold; a pair exactly at the threshold counts too (>=)."),
    ({"score": "distance"}, "it uses the Euclidean distance, not the cosine similarity.")])
def _pr_with(predicted, gold, *, swapped=False, once=True, empty=1.0, key=slice(None)):
    p, g = list(predicted), list(gold)
    tp = len({s[key] for s in p} & {s[key] for s in g})
    pr = tuple(tp / n if n else empty for n in ([len(set(p)), len(set(g))] if once else [len(p), len(g)]))
    return pr[::-1] if swapped else pr
_GOLD = [(0, 5, "name"), (10, 27, "email"), (30, 42, "phone")]
_PRED = [(0, 5, "name"), (10, 27, "email"), (44, 48, "name")]
_PR = _table([
    ((_PRED, _GOLD), REF, "2 of 3 predicted spans right, 2 of 3 gold spans found", "by hand: 2 true positives; "
     "precision = 2 / 3 predicted, recall = 2 / 3 gold."),
    ((_PRED[:1], _GOLD), REF, "1 span predicted, right; 3 gold spans", "precision = 1 / 1, recall = 1 / 3."),
    (([(0, 5, "phone")], [(0, 5, "name")]), (0.0, 0.0), "the right place with the wrong kind", "a span is right only "
     "when start, end and kind all match."),
    ((_PRED + _PRED[:1], _GOLD), REF, "a predicted span listed twice", "count each span once: use sets."),
    (([], _GOLD), (1.0, 0.0), "nothing predicted", "no prediction: precision is 1.0 by convention (nothing wrong was "
     "claimed), recall is 0."),
    (([(3, 9, "email")], []), (0.0, 1.0), "a text without personal data, one false alarm", "nothing to find: recall is "
     "1.0 by convention; precision 0 / 1.")])
def _pr_hidden():
    rng, cases = np.random.default_rng(1303), []
    for trial in range(25):
        pool = [(int(rng.integers(0, 6)), int(a), int(a) + int(rng.integers(1, 4)),
                 str(rng.choice(["email", "phone", "name"]))) for a in rng.integers(0, 30, size=12)]
        gold, pred = ([pool[i] for i in rng.choice(12, size=int(rng.integers(0, 8)), replace=False)] for _ in "gp")
        cases.append(Case((pred + pred[: int(rng.integers(0, 2))], gold), about=f"trial {trial}"))  # a span twice
    return cases + [Case(([], []), expected=(1.0, 1.0), about="nothing predicted, nothing to find")]
_PRECISION = Exercise("precision_recall", ["predicted", "gold"], G.span_precision_recall, lambda: _PR, _pr_hidden,
                      compare="value", outputs=("precision", "recall"), wrong=_pr_with, mistakes=[
    ({"swapped": True}, "precision and recall are swapped: precision divides by what was predicted, recall by what was "
     "there to find."),
    ({"once": False}, "a span listed twice is counted twice: turn both lists into sets first."),
    ({"empty": 0.0}, "with nothing to count it returns 0; here an empty prediction has precision 1.0 (it claimed "
     "nothing wrong) and an empty gold set recall 1.0 (nothing was missed)."),
    ({"key": slice(2)}, "it compares positions only: a span is right only if its kind is right too.")])
def _labelled_pii():  # the chapter's labelled set: (predicted spans, gold spans), each (text, start, end, kind)
    from .. import coursebook
    import json
    rows = [json.loads(line) for line in (coursebook.course_root() / "data" / "pii.jsonl").read_text(
        encoding="utf-8").splitlines()]
    gold = [(i, s["start"], s["end"], s["kind"]) for i, r in enumerate(rows) for s in r["spans"]]
    return [(i, s.start, s.end, s.kind) for i, r in enumerate(rows) for s in G.find_pii(r["text"])], gold
def _weakest_kind():  # the experiment of the chapter: the kind with the lowest recall on the labelled set
    scores = G.span_scores(*_labelled_pii())
    return min(G.PII_KINDS, key=lambda kind: scores[kind]["recall"])
def _weakest_cases():
    return [Case(mistakes=[
        ("email", "an email address has a syntax (a name, an @, a domain) that a regular expression follows closely; "
                  "only a form it was not written for, such as 'carla at example dot com', gets past it."),
        ("phone", "phone numbers come in many formats, but each is digits in groups that rules can list; they find "
                  "every phone number of this set (and flag a few other numbers).")])]
_WEAKEST = Exercise("predict_weakest_kind", [], _weakest_kind, _weakest_cases, _weakest_cases, compare="choice",
                    options={"choices": ("email", "phone", "name")}, kind="predict", explain=(
    "Names: the rules find fewer than half of them. Emails and phone numbers have a syntax that a regular expression "
    "can follow; names have none, and a list of given names misses every name that is not on it while flagging "
    "ordinary words that are also names ('Will', 'Mark'). Where rules cannot describe the thing, a statistical "
    "recogniser is needed, measured in the same way."))
def _prerequisites_with(graph, concept, *, depth=50, agg="min", rel="r.rel = ?", itself=False):
    sql = REACHABLE_SQL.format(frm="src", to="dst").replace("min(", f"{agg}(").replace("r.rel = ?", rel)
    rows = [(n, int(h)) for n, h in graph.query(sql, [concept, "requires", "requires", depth])]
    return [(concept, 0)] * bool(itself and graph.query("SELECT 1 FROM entities WHERE name = ?", [concept])) + rows
def _prerequisites_cases():
    g = G.example_graph()
    return _table([
        ((g, "scaled dot-product attention"), REF, "'scaled dot-product attention' in the example graph", "by hand: it "
         "requires softmax and dot product (1 hop), and softmax requires exponential (2 hops)."),
        ((g, "multi-head attention"), REF, "'multi-head attention' (3 hops deep)", "follow `requires` edges again from "
         "every concept found: WITH RECURSIVE."),
        ((g, "transformer"), REF, "'transformer': softmax is 1 hop away directly and 3 hops through attention", "keep "
         "the fewest hops of each concept (GROUP BY name, min(hops)); follow only `requires`."),
        ((g, "exponential"), [], "'exponential', which requires nothing", "a concept without prerequisites gives []."),
        ((g, "no such concept"), [], "a concept that is not in the graph", "an unknown concept gives [].")])
def _prerequisites_hidden():
    rng, cases = np.random.default_rng(1304), []
    for trial in range(4):
        names = [f"concept {chr(97 + i)}{trial}" for i in range(int(rng.integers(4, 14)))]
        edges = [(a, str(rng.choice(["requires", "requires", "related_to"])), b)
                 for i, a in enumerate(names) for b in names[i + 1:] if rng.random() < 0.3]  # a DAG
        graph = G.example_graph(edges or [(names[0], "requires", names[1])])
        cases += [Case((graph, c), about=f"graph {trial}, {c!r}") for c in names]
    course = G.example_graph([(src, "requires", dst) for src, dst in G.COURSE_REQUIRES])  # the chapter's graph
    return cases + [Case((course, c), about=c) for c in ("GPT", "KV cache", "hybrid search")]
_PREREQUISITES = Exercise("prerequisites", ["graph", "concept"], G.prerequisites, _prerequisites_cases,
                          _prerequisites_hidden, compare="rows", wrong=_prerequisites_with, copy_args=False,
                          timeout_hint=" (or a recursive query without a limit)", mistakes=[
    ({"depth": 1}, "it returns the direct prerequisites only: a recursive query (WITH RECURSIVE) follows the edges "
     "again from every concept found."),
    ({"itself": True}, "it lists the concept itself with 0 hops: return only what it requires."),
    ({"agg": "max"}, "it keeps the largest number of hops: a concept reached by two routes gets the shorter, "
     "min(hops)."),
    ({"rel": "? IS NOT NULL"}, "it follows every relation: keep only edges with rel = 'requires' (in both parts of the "
     "recursive query).")])

EXERCISES = ExerciseSet(_EXACT, _PAIRS, _PRECISION, _WEAKEST, _PREREQUISITES)
check = EXERCISES.check
reveal = EXERCISES.reveal
