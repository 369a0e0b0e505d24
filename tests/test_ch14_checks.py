"""Chapter 14's checks: the library's versions pass them, typical mistakes get their sentence, predictions are
recorded and then graded, garbage gets a sentence instead of a crash, and grading starts no database server."""

from __future__ import annotations

import bisect
import subprocess
import sys
from functools import partial

import numpy as np
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from attnedu import governance as G
from attnedu.checks import CheckFailed
from attnedu.checks import ch14_databases_at_scale as ch14
from attnedu.store import quorum as Q
from attnedu.store import sharding as S
from conftest import REPO, assert_one_sentence, garbage, returns_text

NAMES = ["authorised_rows", "rotate_key", "ring_owner", "measure_movement"]  # graded on what they return
PREDICTIONS = {"predict_quorum": "sometimes", "predict_moved_share": "c"}


def test_the_library_passes_every_chapter_14_check_visible_and_hidden(capsys):
    for name, ex in ch14.EXERCISES.items():
        ch14.check(name, ex.reference)
        ch14.check(name, ex.reference, hidden=True)
    out = capsys.readouterr().out
    assert out.count("passes all") == 4 and out.count("is recorded") == 2


def test_the_references_are_the_library_modules():
    refs = {name: ex.reference for name, ex in ch14.EXERCISES.items() if ex.kind != "predict"}
    assert refs == {"authorised_rows": G.authorised_rows, "rotate_key": G.rotate_key, "ring_owner": S.ring_owner,
                    "measure_movement": S.measure_movement}


def test_the_chapter_asks_for_code_predictions_and_a_measurement():
    kinds = {name: ex.kind for name, ex in ch14.EXERCISES.items()}
    assert kinds == {"authorised_rows": "code", "rotate_key": "code", "predict_quorum": "predict",
                     "predict_moved_share": "predict", "ring_owner": "code", "measure_movement": "measure"}


def test_grading_starts_no_database_server():
    """Every check runs on plain values: running them all starts no server and loads no PostgreSQL driver."""
    script = (
        "import sys\n"
        "from attnedu.store import server\n"
        "def refuse(self):\n"
        "    raise RuntimeError('a check started a PostgreSQL server')\n"
        "server.PostgresServer.start = refuse\n"
        "from attnedu.checks import ch14_databases_at_scale as ch14\n"
        "for name, ex in ch14.EXERCISES.items():\n"
        "    ch14.check(name, ex.reference, hidden=True)\n"
        "loaded = [m for m in ('psycopg', 'attnedu.store.cluster', 'attnedu.store.postgres')\n"
        "          if m in sys.modules]\n"
        "print('LOADED', loaded)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "LOADED []" in result.stdout, result.stdout


# ------------------------------------------------------------------ solutions as a learner writes them
def authorised_rows(user, rows, policies):
    if user.get("superuser"):
        return list(rows)
    names = {"public", user["name"], *user.get("roles", [])}
    applying = [p for p in policies if names & set(p["to"])]
    return [row for row in rows if any(p["using"](user, row) for p in applying)]


def rotate_key(records, old_kek, new_kek, nonces):
    rotated = []
    for record, nonce in zip(records, nonces):
        wrapped = record["wrapped_key"]
        data_key = AESGCM(old_kek).decrypt(wrapped[:12], wrapped[12:], None)
        rotated.append({**record, "wrapped_key": nonce + AESGCM(new_kek).encrypt(nonce, data_key, None)})
    return rotated


def ring_owner(position, ring):
    for point, shard in ring:
        if point >= position:
            return shard
    return ring[0][1]


def ring_owner_by_bisection(position, ring):
    i = bisect.bisect_left([p for p, _ in ring], position)
    return ring[i % len(ring)][1]


def measure_movement(before, after):
    old = set(before.values())
    moved = [k for k in before if after[k] != before[k]]
    return len(moved) / len(before), sum(after[k] not in old for k in moved) / len(before)


@pytest.mark.parametrize("name, fn", [("authorised_rows", authorised_rows), ("rotate_key", rotate_key),
                                      ("ring_owner", ring_owner), ("ring_owner", ring_owner_by_bisection),
                                      ("measure_movement", measure_movement)])
def test_solutions_as_a_learner_writes_them_pass(name, fn, capsys):
    ch14.check(name, fn)
    ch14.check(name, fn, hidden=True)
    assert "passes all" in capsys.readouterr().out


# ------------------------------------------------------------------ typical mistakes, written as a learner would
def _rows_where(combine=any, empty_sees_all=False, superuser_bypasses=True, every_policy=False, own_name=True):
    def wrong(user, rows, policies):
        if superuser_bypasses and user.get("superuser"):
            return list(rows)
        names = {"public", *user.get("roles", [])} | ({user["name"]} if own_name else set())
        applying = policies if every_policy else [p for p in policies if names & set(p["to"])]
        if not applying:
            return list(rows) if empty_sees_all else []
        return [r for r in rows if combine(p["using"](user, r) for p in applying)]
    return wrong


def _rotate(wrap_with="new", unwrap=True, nonce_first=True):
    def wrong(records, old_kek, new_kek, nonces):
        out = []
        for record, nonce in zip(records, nonces):
            w = record["wrapped_key"]
            key = AESGCM(old_kek).decrypt(w[:12], w[12:], None) if unwrap else w
            wrapped = AESGCM(new_kek if wrap_with == "new" else old_kek).encrypt(nonce, key, None)
            out.append({**record, "wrapped_key": (nonce if nonce_first else b"") + wrapped})
        return out
    return wrong


def _owner_strict(position, ring):
    for point, shard in ring:
        if point > position:
            return shard
    return ring[0][1]


def _owner_before(position, ring):
    before = [shard for point, shard in ring if point <= position]
    return before[-1] if before else ring[-1][1]


def _owner_wraps_to_last(position, ring):
    for point, shard in ring:
        if point >= position:
            return shard
    return ring[-1][1]


def _owner_point(position, ring):
    for point, _ in ring:
        if point >= position:
            return point
    return ring[0][0]


def _movement_stayed(before, after):
    old = set(before.values())
    stayed = sum(after[k] == before[k] for k in before)
    return stayed / len(before), sum(after[k] != before[k] and after[k] not in old for k in before) / len(before)


def _movement_every_move_new(before, after):
    moved = sum(after[k] != before[k] for k in before) / len(before)
    return moved, moved


def _movement_of_moved(before, after):
    old = set(before.values())
    moved = [k for k in before if after[k] != before[k]]
    return len(moved) / len(before), (sum(after[k] not in old for k in moved) / len(moved)) if moved else 0.0


# the learner's version of each typical mistake, in the order of the exercise's `mistakes`
LEARNER_MISTAKES = {
    "authorised_rows": [_rows_where(combine=all), _rows_where(empty_sees_all=True),
                        _rows_where(superuser_bypasses=False), _rows_where(every_policy=True),
                        _rows_where(own_name=False)],
    "rotate_key": [_rotate(wrap_with="old"), _rotate(unwrap=False), _rotate(nonce_first=False)],
    "ring_owner": [_owner_strict, _owner_before, _owner_wraps_to_last, _owner_point],
    "measure_movement": [_movement_stayed, _movement_every_move_new, _movement_of_moved],
}


@pytest.mark.parametrize("name", NAMES)
def test_every_typical_mistake_gets_its_sentence(name):
    ex = ch14.EXERCISES[name]
    assert len(LEARNER_MISTAKES[name]) == len(ex.mistakes)
    for fn, (_, sentence) in zip(LEARNER_MISTAKES[name], ex.mistakes):
        for hidden in (False, True):
            with pytest.raises(CheckFailed) as info:
                ch14.check(name, fn, hidden=hidden)
            assert str(info.value).endswith("Likely cause: " + sentence), (hidden, str(info.value))
            assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_each_setting_of_the_wrong_variant_gets_its_own_sentence(name):
    ex = ch14.EXERCISES[name]
    for setting, sentence in ex.mistakes:
        with pytest.raises(CheckFailed) as info:
            ch14.check(name, partial(ex.wrong, **setting))
        assert str(info.value).endswith("Likely cause: " + sentence), (setting, str(info.value))


@pytest.mark.parametrize("fn, message", [
    (lambda u, rows, p: list(rows), r"shows the row with id 1, which bob may not read"),
    (lambda u, rows, p: [], r"hides the row with id 2, which bob may read"),
    (lambda u, rows, p: G.authorised_rows(u, rows, p) * 2, r"lists a row twice"),
    (lambda u, rows, p: [r["id"] for r in G.authorised_rows(u, rows, p)], r"returned 2 as a row; return the rows "
                                                                          r"themselves"),
    (lambda u, rows, p: tuple(G.authorised_rows(u, rows, p)), r"returned a tuple; expected a list of rows"),
])
def test_the_visible_rows_comparison_names_each_problem(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch14.check("authorised_rows", fn)


def test_rows_in_another_order_are_named():
    with pytest.raises(CheckFailed, match=r"right rows in another order: keep the order of `rows`"):
        ch14.check("authorised_rows", lambda u, rows, p: G.authorised_rows(u, rows, p)[::-1])


@pytest.mark.parametrize("fn, message", [
    (lambda recs, old, new, nonces: [{**r, "ciphertext": r["ciphertext"][:-1]}
                                     for r in rotate_key(recs, old, new, nonces)],
     r"changed the 'ciphertext' of record 0; a rotation changes only its wrapped key"),
    (lambda recs, old, new, nonces: [{"wrapped_key": r["wrapped_key"]} for r in rotate_key(recs, old, new, nonces)],
     r"as record 0; expected a dict with the keys \['ciphertext', 'wrapped_key'\]"),
    (lambda recs, old, new, nonces: [{**r, "wrapped_key": r["wrapped_key"].hex()} for r in
                                     rotate_key(recs, old, new, nonces)], r"'wrapped_key' as a str; expected bytes"),
    (lambda recs, old, new, nonces: rotate_key(recs, old, new, nonces)[:0], r"returned 0 record\(s\); expected 1"),
    (lambda recs, old, new, nonces: {"records": recs}, r"returned a dict; expected a list of records"),
])
def test_the_records_comparison_names_each_problem(fn, message):
    with pytest.raises(CheckFailed, match=message):
        ch14.check("rotate_key", fn)


def test_a_rotation_that_skips_a_record_it_cannot_unwrap_is_refused():
    def skips(records, old_kek, new_kek, nonces):
        out = []
        for record, nonce in zip(records, nonces):
            try:
                out += rotate_key([record], old_kek, new_kek, [nonce])
            except InvalidTag:
                out.append(record)  # left under its old key, silently
        return out

    with pytest.raises(CheckFailed, match=r"instead of raising InvalidTag: let the failed unwrap raise"):
        ch14.check("rotate_key", skips)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fn, message", garbage(r"returned .*(expected|as a row|a list)"))
def test_garbage_gets_a_sentence_not_a_crash(name, fn, message):
    if fn is returns_text and name == "ring_owner":
        message = r"returned '42'; expected 1"
    assert_one_sentence(partial(ch14.check, name), fn, message)


# ------------------------------------------------------------------ predictions
@pytest.mark.parametrize("name, right", PREDICTIONS.items())
def test_a_prediction_is_recorded_whatever_it_is_and_graded_when_hidden(name, right, capsys):
    ex = ch14.EXERCISES[name]
    [case] = ex.all_cases(hidden=True)
    for answer in ex.options["choices"]:
        ch14.check(name, lambda: answer)
        assert "is recorded" in capsys.readouterr().out
        if answer == right:
            ch14.check(name, lambda: answer, hidden=True)
            continue
        with pytest.raises(CheckFailed) as info:
            ch14.check(name, lambda: answer, hidden=True)
        assert str(info.value).endswith("Likely cause: " + dict(case.mistakes)[answer])


@pytest.mark.parametrize("name", PREDICTIONS)
def test_a_prediction_of_the_wrong_form_or_unwritten_gets_a_sentence(name):
    def stub():
        raise NotImplementedError()

    assert_one_sentence(partial(ch14.check, name), stub, "is not written yet")
    assert_one_sentence(partial(ch14.check, name), lambda: 0.75, "answer with one of")


@pytest.mark.parametrize("name", PREDICTIONS)
def test_reveal_prints_the_answer_and_why_and_never_raises(name, capsys):
    for answer in (lambda: PREDICTIONS[name], lambda: 1 / 0, None):
        ch14.reveal(name, answer)
        out = capsys.readouterr().out
        assert repr(PREDICTIONS[name]) in out and ch14.EXERCISES[name].explain[:30] in out


# ------------------------------------------------------------------ the library behind the exercises
def test_envelope_encryption_round_trips_and_refuses_a_wrong_key_context_or_byte():
    kek, other = G.generate_key(), G.generate_key()
    record = G.envelope_encrypt("call me on 020 7946 0958", kek, context="contacts:1")
    assert len(record["wrapped_key"]) == 60 and len(record["ciphertext"]) == 12 + 24 + 16
    assert G.envelope_decrypt(record, kek, context="contacts:1") == "call me on 020 7946 0958"
    changed = {**record, "ciphertext": record["ciphertext"][:-1] + bytes([record["ciphertext"][-1] ^ 1])}
    for args in [(record, other, "contacts:1"), (record, kek, "contacts:2"), (changed, kek, "contacts:1")]:
        with pytest.raises(ValueError, match="failed"):
            G.envelope_decrypt(*args)
    assert G.envelope_encrypt("x", kek)["ciphertext"] != G.envelope_encrypt("x", kek)["ciphertext"]  # fresh nonces


def test_rotation_rewraps_only_the_data_keys():
    old, new = G.generate_key(), G.generate_key()
    records = [G.envelope_encrypt(t, old, context=f"r:{i}") for i, t in enumerate(["a", "bb" * 1000])]
    rotated = G.rotate_key(records, old, new)
    assert [r["ciphertext"] for r in rotated] == [r["ciphertext"] for r in records]
    assert [G.envelope_decrypt(r, new, context=f"r:{i}") for i, r in enumerate(rotated)] == ["a", "bb" * 1000]
    with pytest.raises(ValueError, match="unwrapping"):
        G.envelope_decrypt(rotated[0], old, context="r:0")
    with pytest.raises(InvalidTag):
        G.rotate_key(rotated, old, new)


def test_row_level_security_rules():
    rows = [{"id": 1, "user_id": "alice"}, {"id": 2, "user_id": "bob"}]
    own = G.policy("own", "app_user", lambda u, r: r["user_id"] == u["name"])
    assert G.authorised_rows({"name": "bob", "roles": ["app_user"]}, rows, [own]) == rows[1:]
    assert G.authorised_rows({"name": "eve", "roles": []}, rows, [own]) == []
    assert G.authorised_rows({"name": "root", "superuser": True}, rows, []) == rows
    with pytest.raises(ValueError, match="user must be a dict"):
        G.authorised_rows("bob", rows, [own])


@pytest.mark.parametrize("n, w, r", [(3, 2, 2), (3, 3, 1), (5, 3, 3), (4, 2, 2), (3, 1, 1), (5, 2, 3)])
def test_a_read_sees_the_last_write_for_certain_exactly_when_r_plus_w_exceeds_n(n, w, r):
    share = Q.stale_read_share(n, w, r, trials=300)
    assert (share == 0) == (r + w > n)


def test_quorum_store_reads_the_newest_version_it_finds():
    db = Q.QuorumStore(n=3, w=3, r=1)
    db.write("x", "old")
    db.write("x", "new")
    assert db.read("x") == "new" and db.read("missing") is None
    with pytest.raises(ValueError, match="at most n"):
        Q.QuorumStore(n=2, w=3, r=1)


def test_adding_a_shard_moves_about_a_quarter_on_a_ring_and_three_quarters_with_modulo():
    keys = [f"user {i}" for i in range(3000)]
    ring3, ring4 = S.hash_ring(3), S.hash_ring(4)
    ring = S.measure_movement({k: S.ring_shard(k, ring3) for k in keys}, {k: S.ring_shard(k, ring4) for k in keys})
    mod = S.measure_movement({k: S.modulo_shard(k, 3) for k in keys}, {k: S.modulo_shard(k, 4) for k in keys})
    assert ring[0] == ring[1] and abs(ring[0] - 0.25) < 0.05
    assert abs(mod[0] - 0.75) < 0.03 and abs(mod[1] - 0.25) < 0.03
    assert S.stable_hash("alice") == int.from_bytes(__import__("hashlib").sha256(b"alice").digest()[:4], "big")
    assert np.bincount([S.ring_shard(k, ring4) for k in keys]).min() > 0.8 * len(keys) / 4
