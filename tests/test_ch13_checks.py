"""Chapter 13's checks: the references are right, typical mistakes get their sentence, and
garbage gets a sentence instead of a crash."""

from __future__ import annotations

import numpy as np
import pytest

from attnedu.checks import CheckFailed
from attnedu.checks import ch13_databases as ch13
from attnedu.governance import normalise_text
from conftest import assert_one_sentence, garbage, returns_text

CHECKS = [ch13.check_normalise_for_hash, ch13.check_near_duplicate_pairs, ch13.check_precision_recall,
          ch13.check_prerequisites]


def test_the_references_pass_their_own_checks(capsys):
    ch13.check_normalise_for_hash(normalise_text)
    ch13.check_near_duplicate_pairs(ch13.near_duplicate_pairs_reference)
    ch13.check_precision_recall(ch13.precision_recall_reference)
    ch13.check_prerequisites(ch13.prerequisites_reference)
    assert capsys.readouterr().out.count("passes all") == 4


def test_solutions_as_a_learner_writes_them_pass(capsys):
    import re
    import unicodedata

    def normalise_for_hash(text):
        text = unicodedata.normalize("NFKC", text).casefold()
        return re.sub(r"[\W_]+", " ", text).strip()

    def near_duplicate_pairs(vectors, threshold):
        x = np.asarray(vectors, dtype=float)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = x @ x.T
        n = len(x)
        return [(i, j) for i in range(n) for j in range(i + 1, n) if sim[i, j] >= threshold - 1e-9]

    def precision_recall(predicted, gold):
        p, g = set(predicted), set(gold)
        tp = len(p & g)
        return (tp / len(p) if p else 1.0), (tp / len(g) if g else 1.0)

    def prerequisites(graph, concept):
        rows = graph.query("""
            WITH RECURSIVE needs (id, hops) AS (
                SELECT r.dst, 1 FROM relations AS r JOIN entities AS e ON e.id = r.src
                WHERE e.name = ? AND r.rel = 'requires'
              UNION
                SELECT r.dst, needs.hops + 1 FROM relations AS r JOIN needs ON r.src = needs.id
                WHERE r.rel = 'requires' AND needs.hops < 20)
            SELECT e.name, min(needs.hops) AS hops FROM needs JOIN entities AS e ON e.id = needs.id
            GROUP BY e.name ORDER BY hops, e.name""", [concept])
        return [(name, hops) for name, hops in rows]

    ch13.check_normalise_for_hash(normalise_for_hash)
    ch13.check_near_duplicate_pairs(near_duplicate_pairs)
    ch13.check_precision_recall(precision_recall)
    ch13.check_prerequisites(prerequisites)
    assert capsys.readouterr().out.count("passes all") == 4


@pytest.mark.parametrize("fn, explanation", ch13._NORMALISE_MISTAKES)
def test_normalise_mistakes_are_named(fn, explanation):
    with pytest.raises(CheckFailed, match="Likely cause: " + explanation[:30].replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.").replace("[", r"\[").replace("\\W", r"\\W")):
        ch13.check_normalise_for_hash(fn)


@pytest.mark.parametrize("check, mistakes", [(ch13.check_near_duplicate_pairs, ch13._PAIRS_MISTAKES),
                                             (ch13.check_precision_recall, ch13._PR_MISTAKES),
                                             (ch13.check_prerequisites, ch13._PREREQ_MISTAKES)])
def test_every_typical_mistake_gets_its_sentence(check, mistakes):
    for fn, explanation in mistakes:
        with pytest.raises(CheckFailed) as info:
            check(fn)
        assert str(info.value).endswith("Likely cause: " + explanation), fn
        assert "\n" not in str(info.value)


def test_pairs_listed_both_ways_or_with_themselves_are_named():
    def both_ways(vectors, threshold):
        pairs = ch13.near_duplicate_pairs_reference(vectors, threshold)
        return pairs + [(j, i) for i, j in pairs]

    with pytest.raises(CheckFailed, match=r"list each pair once, as \(i, j\) with i < j"):
        ch13.check_near_duplicate_pairs(both_ways)


def test_a_prerequisite_listed_twice_is_named():
    def union_all(graph, concept):
        return [(n, h) for n, h in graph.query("""
            WITH RECURSIVE needs (id, hops) AS (
                SELECT r.dst, 1 FROM relations AS r JOIN entities AS e ON e.id = r.src
                WHERE e.name = ? AND r.rel = 'requires'
              UNION ALL
                SELECT r.dst, needs.hops + 1 FROM relations AS r JOIN needs ON r.src = needs.id
                WHERE r.rel = 'requires')
            SELECT e.name, needs.hops FROM needs JOIN entities AS e ON e.id = needs.id
            ORDER BY needs.hops, e.name""", [concept])]

    with pytest.raises(CheckFailed, match=r"lists 'exponential' 2 times: keep each concept once.*min\(hops\)"):
        ch13.check_prerequisites(union_all)


def test_broken_sql_gets_the_database_error_and_the_hint():
    def broken(graph, concept):
        return graph.query("WITH RECURSIVE oops SELECT", [concept])

    with pytest.raises(CheckFailed, match=r"raised OperationalError.*Hint: by hand"):
        ch13.check_prerequisites(broken)


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("fn, message", garbage(r"returned .*(expected|a str)"))
def test_garbage_gets_a_sentence_not_a_crash(check, fn, message):
    if check is ch13.check_normalise_for_hash and fn is returns_text:
        message = r"returned '42'; expected 'what is attention'"
    assert_one_sentence(check, fn, message)


def test_a_query_that_never_ends_is_stopped():
    from attnedu.checks import Case

    def loops(graph, concept):
        while True:
            pass

    graph = ch13.example_graph()
    with pytest.raises(CheckFailed, match="ran for more than 0.2 s"):
        ch13.check_value_function(loops, "loops", [Case((graph, "softmax"), [])], compare=ch13._compare_reached,
                                  time_limit=0.2)
