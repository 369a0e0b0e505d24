"""Chapter 14's exercises, *The database in safety and at scale*, as records (see :mod:`attnedu.checks`). Rows a
role may read and envelope-encrypted records have comparisons of their own, registered here: ``"visible"`` and
``"records"``. No exercise needs a database server: access control, key rotation, quorums and shards are graded on
plain Python values."""

import bisect

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .. import governance as G
from ..store import quorum as Q
from ..store import sharding as S
from . import REFERENCE as REF, Case, CheckFailed, Exercise, ExerciseSet, register
from .compare import _fail, short
from .engine import with_article

def _table(rows):  # cases from rows (args, expected, about, hint)
    return [Case(args, expected=expected, about=about, hint=hint) for args, expected, about, hint in rows]

# ------------------------------------------------------------------ 1. authorised_rows: row-level security
def _ids(got, lead):  # the ids of the returned rows, or a CheckFailed
    if not isinstance(got, list):
        _fail(f"{lead} returned {with_article(type(got).__name__)}; expected a list of rows (the dicts of `rows`).")
    for r in got:
        if not isinstance(r, dict) or "id" not in r:
            _fail(f"{lead} returned {short(r, 40)} as a row; return the rows themselves, the dicts of `rows`.")
    return [r["id"] for r in got]
def _compare_visible(got, case, lead, ex):
    ids, expected, who = _ids(got, lead), [r["id"] for r in case.expected], case.args[0].get("name")
    extra, missing = [i for i in ids if i not in expected], [i for i in expected if i not in ids]
    if extra:
        raise CheckFailed(f"{lead} shows the row with id {extra[0]}, which {who} may not read.")
    if missing:
        raise CheckFailed(f"{lead} hides the row with id {missing[0]}, which {who} may read.")
    if len(ids) != len(set(ids)):
        raise CheckFailed(f"{lead} lists a row twice: return each visible row once.")
    if ids != expected:
        raise CheckFailed(f"{lead} returned the right rows in another order: keep the order of `rows`.")
register("visible", _compare_visible, lambda a, b, ex=None: isinstance(a, list) and isinstance(b, list) and all(
    isinstance(r, dict) and "id" in r for r in a) and [r["id"] for r in a] == [r["id"] for r in b])
def _authorised_with(user, rows, policies, *, combine=any, default_allow=False, bypass=True, check_roles=True,
                     own_name=True):
    if bypass and user.get("superuser"):
        return list(rows)
    names = {"public", *user.get("roles", ()), *([user["name"]] if own_name else [])}
    mine = [p for p in policies if not check_roles or names & set(p["to"])]
    if not mine:
        return list(rows) if default_allow else []
    return [r for r in rows if combine(p["using"](user, r) for p in mine)]
_MESSAGES = [{"id": 1, "user_id": "alice", "text": "What does the softmax do?"},
             {"id": 2, "user_id": "bob", "text": "Why divide by sqrt(d_k)?"},
             {"id": 3, "user_id": "alice", "text": "And the causal mask?"},
             {"id": 4, "user_id": "carol", "text": "How many heads?"},
             {"id": 5, "user_id": "system", "text": "The store is read-only tonight."}]
def _own(user, row):
    return row["user_id"] == user["name"]
def _everything(user, row):
    return True
def _recent(user, row):
    return row["id"] >= 3
def _announcement(user, row):
    return row["user_id"] == "system"
_BASIC = [G.policy("own_messages", ["app_user"], _own), G.policy("analyst_reads", ["analyst"], _everything)]
_MORE = _BASIC + [G.policy("support_reads_recent", ["support"], _recent),
                  G.policy("auditor_reads", ["auditor"], _everything)]
def _user(name, *roles, superuser=False):
    return {"name": name, "roles": list(roles), "superuser": superuser}
_AUTHORISED = _table([
    ((_user("bob", "app_user"), _MESSAGES, _BASIC), REF, "bob (app_user) and the policies own_messages, "
     "analyst_reads", "by hand: own_messages applies to bob through app_user and accepts his own row, id 2; "
     "analyst_reads is not for him: [row 2]."),
    ((_user("alice", "app_user"), _MESSAGES, _BASIC), REF, "alice (app_user)", None),
    ((_user("ann", "analyst"), _MESSAGES, _BASIC), REF, "ann (analyst)", "analyst_reads accepts every row."),
    ((_user("dan", "app_user", "support"), _MESSAGES[:4] + [{"id": 6, "user_id": "dan", "text": "Hi"}], _MORE), REF,
     "dan (app_user and support): two policies apply", "dan sees a row when own_messages OR support_reads_recent "
     "accepts it."),
    ((_user("eve"), _MESSAGES, _BASIC), [], "eve, a role that no policy names", "no policy applies to eve: with "
     "row-level security on, she sees no row."),
    ((_user("postgres", superuser=True), _MESSAGES, _BASIC), REF, "postgres, a superuser", "a superuser bypasses "
     "row-level security."),
    ((_user("auditor"), _MESSAGES, _MORE), REF, "auditor, a role that a policy names directly", "auditor_reads is TO "
     "auditor: a user's own name is a role too."),
    ((_user("bob", "app_user"), [], _BASIC), [], "an empty table", "no rows: return [].")])
def _authorised_hidden():
    rng, cases = np.random.default_rng(1401), []
    names = ["alice", "bob", "carol", "dan", "system"]
    pool = [("own", _own), ("all", _everything), ("recent", _recent), ("news", _announcement)]
    for trial in range(40):
        rows = [{"id": i + 1, "user_id": str(rng.choice(names))} for i in range(int(rng.integers(0, 9)))]
        roles = ["app_user", "analyst", "support", "public", "alice", "bob"]
        policies = [G.policy(f"p{k}", list(rng.choice(roles, size=int(rng.integers(1, 3)), replace=False)),
                             pool[int(rng.integers(len(pool)))][1]) for k in range(int(rng.integers(0, 4)))]
        user = _user(str(rng.choice(names[:4])), *rng.choice(["app_user", "analyst", "support"],
                                                           size=int(rng.integers(0, 3)), replace=False),
                     superuser=bool(rng.random() < 0.1))
        cases.append(Case((user, rows, policies), about=f"trial {trial}: {user['name']} {user['roles']}"))
    return cases
_AUTHORISED_EX = Exercise("authorised_rows", ["user", "rows", "policies"], G.authorised_rows, lambda: _AUTHORISED,
                          _authorised_hidden, compare="visible", wrong=_authorised_with, mistakes=[
    ({"combine": all}, "it keeps a row only when every policy that applies accepts it; permissive policies add up "
     "with OR: one that accepts the row is enough."),
    ({"default_allow": True}, "a role that no policy applies to sees every row; with row-level security on, no "
     "policy means no row (the default is to deny)."),
    ({"bypass": False}, "the superuser is held to the policies; a superuser bypasses row-level security and reads "
     "every row."),
    ({"check_roles": False}, "it applies every policy to every user; a policy applies only to the roles in its `to` "
     "(or to everyone with 'public')."),
    ({"own_name": False}, "a policy that names the user itself is left out; in PostgreSQL a user is a role, so `to` "
     "may name it.")])

# ------------------------------------------------------------------ 2. rotate_key: envelope encryption
def _compare_records(got, case, lead, ex):
    if not isinstance(got, list):
        _fail(f"{lead} returned {with_article(type(got).__name__)}; expected a list of records (dicts), one per "
              "record of `records`.")
    if len(got) != len(case.expected):
        _fail(f"{lead} returned {len(got)} record(s); expected {len(case.expected)}, one per record of `records`.")
    for i, (g, e) in enumerate(zip(got, case.expected)):
        if not isinstance(g, dict) or set(g) != set(e):
            _fail(f"{lead} returned {short(g, 50)} as record {i}; expected a dict with the keys {sorted(e)}.")
        for key in e:
            if not isinstance(g[key], (bytes, bytearray)) and isinstance(e[key], bytes):
                _fail(f"{lead} returned record {i} with {key!r} as {with_article(type(g[key]).__name__)}; "
                      "expected bytes.")
            if g[key] == e[key]:
                continue
            if key != "wrapped_key":
                raise CheckFailed(f"{lead} changed the {key!r} of record {i}; a rotation changes only its wrapped key.")
            if len(g[key]) != len(e[key]):
                raise CheckFailed(f"{lead} returned record {i} with a 'wrapped_key' of {len(g[key])} bytes, not "
                                  f"{len(e[key])}: the nonce (12), then the data key wrapped with its tag (32 + 16).")
            raise CheckFailed(f"{lead} returned record {i} with a 'wrapped_key' of the right length but other bytes.")
def _same_records(a, b, ex=None):
    return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
            and all(isinstance(x, dict) and x == y for x, y in zip(a, b)))
register("records", _compare_records, _same_records)
def _rotate_with(records, old_kek, new_kek, nonces, *, key="new", unwrap=True, nonce_in_front=True):
    out = []
    for record, nonce in zip(records, nonces):
        w = record["wrapped_key"]
        data_key = AESGCM(old_kek).decrypt(w[:12], w[12:], None) if unwrap else w
        wrapped = AESGCM(new_kek if key == "new" else old_kek).encrypt(nonce, data_key, None)
        out.append({**record, "wrapped_key": (nonce if nonce_in_front else b"") + wrapped})
    return out
def _keys(seed):
    rng = np.random.default_rng(seed)
    return [bytes(rng.integers(0, 256, size=n, dtype=np.uint8).tolist()) for n in (32, 32, 32, 12, 12, 12, 12)]
def _records(texts, kek, seed, contexts=None):
    rng = np.random.default_rng(seed)
    out = []
    for i, text in enumerate(texts):
        dk, n1, n2 = (bytes(rng.integers(0, 256, size=n, dtype=np.uint8).tolist()) for n in (32, 12, 12))
        out.append(G.envelope_encrypt(text, kek, dk, (n1, n2), (contexts or [f"contacts:{i}"] * len(texts))[i]))
    return out
def _rotate_cases():
    old, new, other, *nonces = _keys(1402)
    contacts = ["Alice Martin, +44 20 7946 0958", "Bob Okafor, bob@example.com"]
    one = _records(contacts[:1], old, 1)
    both = _records(contacts, old, 2)
    mixed = both[:1] + _records(["Carol, carol@example.org"], other, 3)  # the second was wrapped by another key
    long = _records(["x" * 5000], old, 4)
    return _table([
        ((one, old, new, nonces[:1]), REF, "one record of a contact", "by hand: unwrap the data key with old_kek, "
         "wrap it again with new_kek and nonces[0], and put that nonce in front; 'ciphertext' stays as it was."),
        ((both, old, new, nonces[:2]), REF, "two records, a nonce for each", None),
        ((long, old, new, nonces[:1]), REF, "a record of 5,000 characters", "whatever the text's size, only the "
         "60 bytes of the wrapped key change."),
        (([], old, new, []), [], "no records", "nothing to rotate: return [].")]) + [
        Case((mixed, old, new, nonces[:2]), raises=InvalidTag, about="a record whose data key old_kek does not unwrap",
             hint="let the failed unwrap raise (cryptography's InvalidTag), so that no record is left under the old "
                  "key unnoticed.")]
def _rotate_hidden():
    rng, cases = np.random.default_rng(1403), []
    for trial in range(12):
        old, new, _, *nonces = _keys(1500 + trial)
        n = int(rng.integers(1, 4))
        texts = ["".join(rng.choice(list("abcdéß 0123@.+"), size=int(rng.integers(0, 80)))) for _ in range(n)]
        recs = _records(texts, old, 1600 + trial)
        cases.append(Case((recs, old, new, nonces[:n]), about=f"trial {trial}: {n} record(s)"))
    old, new, other, *nonces = _keys(1404)
    bad = _records(["a"], old, 5) + _records(["b"], other, 6)
    return cases + [Case((bad[::-1], old, new, nonces[:2]), raises=InvalidTag, about="the first record under another "
                         "key", hint="a record that old_kek does not unwrap must stop the rotation.")]
_ROTATE = Exercise("rotate_key", ["records", "old_kek", "new_kek", "nonces"], G.rotate_key, _rotate_cases,
                   _rotate_hidden, compare="records", wrong=_rotate_with, mistakes=[
    ({"key": "old"}, "the data key is wrapped with old_kek again; wrap it with new_kek."),
    ({"unwrap": False}, "it wraps the wrapped key (60 bytes) a second time instead of the data key: unwrap it with "
     "old_kek first (decrypt), then wrap the 32 bytes you get with new_kek."),
    ({"nonce_in_front": False}, "the new nonce is not stored: put it in front of the new wrapped key, or nobody can "
     "unwrap it again.")])

# ------------------------------------------------------------------ 3. predict_quorum
def _quorum_answer():  # the chapter's experiment, smaller: reads right after writes on N = 4, W = 2, R = 2
    share = Q.stale_read_share(4, 2, 2, trials=300, seed=14)
    return "always" if share == 0 else "never" if share == 1 else "sometimes"
def _quorum_cases():
    return [Case(mistakes=[
        ("always", "R + W = 4 is not more than N = 4: the 2 replicas a read asks can be exactly the 2 that the write "
                   "has not reached yet."),
        ("never", "a read misses the write only when it asks none of the replicas that have it; most reads ask at "
                  "least one of them, and the newest version wins.")])]
_QUORUM = Exercise("predict_quorum", [], _quorum_answer, _quorum_cases, _quorum_cases, compare="choice",
                   options={"choices": ("always", "sometimes", "never")}, kind="predict", explain=(
    "Sometimes: about 1 read in 6. A read of 2 replicas misses both of the 2 that have the write when it picks "
    "exactly the other 2, 1 pair out of the C(4, 2) = 6 it could pick. Only when R + W > N does every read set share "
    "a replica with every write set; with N = 4 that takes W = 3 and R = 2, or W = 2 and R = 3."))

# ------------------------------------------------------------------ 4. predict_moved_share
_MOVED = {"a": 0.25, "b": 0.5, "c": 0.75}
def _moved_answer():  # the experiment: 4,000 keys, hash mod 3, then hash mod 4
    keys = [f"user {i}" for i in range(4000)]
    moved, _ = S.measure_movement({k: S.modulo_shard(k, 3) for k in keys}, {k: S.modulo_shard(k, 4) for k in keys})
    return min(_MOVED, key=lambda c: abs(_MOVED[c] - moved))
def _moved_cases():
    return [Case(mistakes=[
        ("a", "a quarter is what the new shard has to take over, and what consistent hashing moves; with hash mod n "
              "a key stays only where hash mod 3 = hash mod 4, which holds for 3 of the 12 remainders mod 12."),
        ("b", "a key stays only where hash mod 3 = hash mod 4: for 3 of the 12 remainders mod 12, a quarter of the "
              "keys, so three quarters move.")])]
_MOVED_EX = Exercise("predict_moved_share", [], _moved_answer, _moved_cases, _moved_cases, compare="choice",
                     options={"choices": ("a", "b", "c")}, kind="predict", explain=(
    "c, about three quarters. A key keeps its shard only when its hash leaves the same remainder divided by 3 and by "
    "4, which is true for 3 of every 12 hashes. The new shard needed only a quarter of the keys; the other half of "
    "the moves shuffle keys between the three old shards for nothing."))

# ------------------------------------------------------------------ 5. ring_owner: consistent hashing
def _owner_with(position, ring, *, strict=False, backwards=False, wrap_to=0, point=False):
    points = [p for p, _ in ring]
    if backwards:
        i = bisect.bisect_right(points, position) - 1
    else:
        i = (bisect.bisect_right if strict else bisect.bisect_left)(points, position)
        i = i if i < len(ring) else wrap_to
    return ring[i][0 if point else 1]
_RING = [(10, 0), (50, 1), (90, 2)]
_OWNER = _table([
    ((30, _RING), REF, "position 30 on the ring [(10, 0), (50, 1), (90, 2)]", "by hand: the first point at or after "
     "30 is 50, which belongs to shard 1."),
    ((50, _RING), REF, "position 50, exactly on a point", "a key exactly at a point belongs to that point's shard."),
    ((95, _RING), REF, "position 95, after the last point", "past the last point the ring goes on at its first point: "
     "shard 0."),
    ((5, _RING), REF, "position 5, before the first point", None),
    ((3, [(100, 7)]), REF, "a ring of one point", "one point owns the whole ring."),
    ((S.stable_hash("alice"), S.hash_ring(3, 8)), REF, "stable_hash('alice') on hash_ring(3, 8)", None)])
def _owner_hidden():
    rng, cases = np.random.default_rng(1405), []
    for trial in range(40):
        points = sorted(set(int(p) for p in rng.integers(0, 1000, size=int(rng.integers(1, 12)))))
        ring = [(p, int(rng.integers(0, 5))) for p in points]
        position = int(rng.choice([rng.integers(0, 1001), rng.choice(points), points[-1] + 1, points[0]]))
        cases.append(Case((position, ring), about=f"trial {trial}: position {position}, {len(ring)} points"))
    ring = S.hash_ring(4, 16)
    return cases + [Case((S.stable_hash(f"user {i}"), ring), about=f"'user {i}' on hash_ring(4, 16)")
                    for i in range(10)]
_OWNER_EX = Exercise("ring_owner", ["position", "ring"], S.ring_owner, lambda: _OWNER, _owner_hidden, compare="value",
                     wrong=_owner_with, mistakes=[
    ({"strict": True}, "a key exactly at a point is given to the next point; it belongs to that point itself: the "
     "first point at or after the key (>=, not >)."),
    ({"backwards": True}, "it takes the point before the key; a key belongs to the first point clockwise from it, at "
     "or after its position."),
    ({"wrap_to": -1}, "past the last point it goes back to the last point; the ring wraps around to its first point "
     "(position 0 follows 2**32 - 1)."),
    ({"point": True}, "it returns the point's position; return its shard, the second element of the pair.")])

# ------------------------------------------------------------------ 6. measure_movement
def _movement_with(before, after, *, stayed=False, new_is_moved=False, of_moved=False):
    old, keys = set(before.values()), list(before)
    moved = [k for k in keys if after[k] != before[k]]
    to_new = len(moved) if new_is_moved else sum(after[k] not in old for k in moved)
    first = (len(keys) - len(moved)) if stayed else len(moved)
    return first / len(keys), (to_new / len(moved) if moved else 0.0) if of_moved else to_new / len(keys)
def _assign(scheme, n, keys):
    ring = S.hash_ring(n, 32) if scheme == "ring" else None
    return {k: S.ring_shard(k, ring) if ring else S.modulo_shard(k, n) for k in keys}
def _movement_cases():
    keys = [f"user {i}" for i in range(200)]
    return _table([
        (({"a": 0, "b": 1, "c": 2, "d": 0}, {"a": 0, "b": 3, "c": 1, "d": 0}), REF, "4 keys, b moved to the new "
         "shard 3 and c to shard 1", "by hand: b and c moved, 2 of 4 keys (0.5); only b went to a shard that held "
         "no key before (0.25)."),
        (({"a": 0, "b": 1}, {"a": 0, "b": 1}), (0.0, 0.0), "nothing moved", None),
        (({"a": 0, "b": 0, "c": 1}, {"a": 2, "b": 2, "c": 2}), REF, "every key to the new shard 2", None),
        ((_assign("mod", 3, keys), _assign("mod", 4, keys)), REF, "200 keys, hash mod 3, then mod 4", None),
        ((_assign("ring", 3, keys), _assign("ring", 4, keys)), REF, "200 keys on a ring of 3 shards, then 4", None),
        ((_assign("ring", 4, keys), _assign("ring", 3, keys)), REF, "200 keys on a ring of 4 shards, then 3 (a shard "
         "removed)", "with a shard removed no key goes to a new shard.")])
def _movement_hidden():
    rng, cases = np.random.default_rng(1406), []
    for trial in range(12):
        keys = [f"key {trial}-{i}" for i in range(int(rng.integers(1, 400)))]
        n = int(rng.integers(1, 9))
        scheme = str(rng.choice(["mod", "ring"]))
        cases.append(Case((_assign(scheme, n, keys), _assign(scheme, n + int(rng.integers(-1, 3)) or 1, keys)),
                          about=f"trial {trial}: {len(keys)} keys, {scheme}, from {n} shards"))
    return cases
_MOVEMENT = Exercise("measure_movement", ["before", "after"], S.measure_movement, _movement_cases, _movement_hidden,
                     compare="value", outputs=("moved", "to_new"), kind="measure", wrong=_movement_with, mistakes=[
    ({"stayed": True}, "the first share counts the keys that stayed; count those whose shard changed."),
    ({"new_is_moved": True}, "it counts every moved key as moved to a new shard; a new shard is one that held no key "
     "before (not among the values of `before`)."),
    ({"of_moved": True}, "the second share is of the moved keys; it is a share of all the keys, as the first is.")])

EXERCISES = ExerciseSet(_AUTHORISED_EX, _ROTATE, _QUORUM, _MOVED_EX, _OWNER_EX, _MOVEMENT)
check = EXERCISES.check
reveal = EXERCISES.reveal
