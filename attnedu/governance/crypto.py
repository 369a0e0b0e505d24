"""Encryption at rest of single fields: the database stores ciphertext, the key lives elsewhere.

:class:`FieldCipher` uses AES-256 in GCM mode from the ``cryptography`` package: each value
gets a fresh random 12-byte nonce, and the stored bytes are ``nonce || ciphertext || tag``.
GCM is *authenticated*: a wrong key, a changed byte, or a value moved to another row (when
the row's id is passed as ``context``, bound to the ciphertext as associated data) makes
:meth:`FieldCipher.decrypt` fail instead of returning garbage.

The key must not be stored with the data it protects: whoever copies the database file (a
backup, a stolen laptop) then gets only ciphertext. Here it comes from an environment
variable (:func:`key_from_env`); in production, from a key-management service. Losing the
key loses the data, and the database can no longer search, sort or filter on the field.

**Envelope encryption** (:func:`envelope_encrypt`, :func:`envelope_decrypt`, :func:`rewrap`,
:func:`rotate_key`)
is how key-management services are used at scale: each value is encrypted with its own
random *data key*, and the data key is stored beside it *wrapped* (encrypted) with a
*key-encryption key* (KEK) that never leaves the key service. A record is
``{"wrapped_key": nonce || AES-GCM(KEK, data key), "ciphertext": nonce || AES-GCM(data key,
text, context)}``. Rotating the KEK re-wraps the 32-byte data keys and leaves the
ciphertexts, however large, as they are.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["FieldCipher", "generate_key", "key_from_env", "KEY_ENV", "envelope_encrypt", "envelope_decrypt", "rewrap",
           "rotate_key"]

KEY_ENV = "ATTNEDU_FIELD_KEY"
NONCE_BYTES = 12


def generate_key() -> bytes:
    """32 random bytes: a new AES-256 key."""
    return AESGCM.generate_key(bit_length=256)


def key_from_env(name: str = KEY_ENV) -> bytes:
    """The key in environment variable ``name``, base64-encoded (as ``base64.b64encode(generate_key())``)."""
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"environment variable {name} is not set: export {name}=$(python -c "
                         "\"import base64, os; print(base64.b64encode(os.urandom(32)).decode())\")")
    try:
        key = base64.b64decode(value, validate=True)
    except ValueError:
        raise ValueError(f"{name} is not valid base64: it should hold 32 random bytes, base64-encoded") from None
    return key


def _context(context) -> bytes:
    if isinstance(context, str):
        return context.encode("utf-8")
    if isinstance(context, (bytes, bytearray)):
        return bytes(context)
    raise ValueError(f"context must be a str or bytes (e.g. 'messages:42'), got {type(context).__name__}")


class FieldCipher:
    """Encrypt and decrypt one field at a time with AES-256-GCM.

    >>> cipher = FieldCipher(generate_key())
    >>> blob = cipher.encrypt("call me on 020 7946 0958", context="contacts:1")
    >>> cipher.decrypt(blob, context="contacts:1")
    'call me on 020 7946 0958'
    """

    def __init__(self, key: bytes):
        if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
            raise ValueError("key must be 32 bytes (AES-256): use generate_key() or key_from_env(), got "
                             f"{type(key).__name__} of length {len(key) if hasattr(key, '__len__') else '?'}")
        self._aead = AESGCM(bytes(key))

    def encrypt(self, plaintext: str, *, context: str | bytes = b"") -> bytes:
        """``nonce (12) || ciphertext || tag (16)``: 28 bytes more than the UTF-8 text."""
        if not isinstance(plaintext, str):
            raise ValueError(f"plaintext must be a string, got {type(plaintext).__name__}")
        nonce = os.urandom(NONCE_BYTES)  # never reuse a nonce with the same key
        return nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), _context(context))

    def decrypt(self, blob: bytes, *, context: str | bytes = b"") -> str:
        """The text; ``ValueError`` when the key or the context is wrong or a byte was changed."""
        if isinstance(blob, memoryview):
            blob = blob.tobytes()
        if not isinstance(blob, (bytes, bytearray)) or len(blob) < NONCE_BYTES + 16:
            raise ValueError(f"blob must be bytes from encrypt() (at least {NONCE_BYTES + 16} long), got {blob!r:.60}")
        try:
            data = self._aead.decrypt(bytes(blob[:NONCE_BYTES]), bytes(blob[NONCE_BYTES:]), _context(context))
        except InvalidTag:
            raise ValueError("decryption failed: wrong key, wrong context, or the stored bytes were changed") from None
        return data.decode("utf-8")

    def __repr__(self) -> str:
        return "FieldCipher(AES-256-GCM, key hidden)"


# ----------------------------------------------------------------------- envelope encryption
def _key(value, name: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes (an AES-256 key from generate_key()), got "
                         f"{type(value).__name__} of length {len(value) if hasattr(value, '__len__') else '?'}")
    return bytes(value)


def _record(record) -> tuple[bytes, bytes]:
    if not isinstance(record, dict) or not all(isinstance(record.get(k), (bytes, bytearray, memoryview))
                                               for k in ("wrapped_key", "ciphertext")):
        raise ValueError("record must be a dict with the bytes 'wrapped_key' and 'ciphertext' (from envelope_encrypt)")
    return bytes(record["wrapped_key"]), bytes(record["ciphertext"])


def envelope_encrypt(plaintext: str, kek: bytes, data_key: bytes | None = None, nonces=None,
                     context: str | bytes = b"") -> dict:
    """Encrypt ``plaintext`` with a data key, and wrap the data key with the key-encryption key ``kek``.

    Returns ``{"wrapped_key": n1 || AES-GCM(kek, n1, data_key), "ciphertext": n2 || AES-GCM(data_key,
    n2, plaintext as UTF-8, associated data = context)}``: 60 bytes, and 28 more than the text.

    Args:
        plaintext: the text to protect.
        kek: the key-encryption key, 32 bytes (held by a key service, never stored with the data).
        data_key: 32 bytes; default a fresh random one (always, outside a test).
        nonces: ``(n1, n2)``, 12 bytes each; default fresh random ones. A nonce must never be
            used twice with the same key.
        context: bound to the ciphertext as associated data, e.g. ``"contacts:42"``: the
            ciphertext decrypts only with the same context (not after a move to another row).
    """
    if not isinstance(plaintext, str):
        raise ValueError(f"plaintext must be a string, got {type(plaintext).__name__}")
    kek = _key(kek, "kek")
    data_key = os.urandom(32) if data_key is None else _key(data_key, "data_key")
    n1, n2 = (os.urandom(NONCE_BYTES), os.urandom(NONCE_BYTES)) if nonces is None else tuple(nonces)
    if not all(isinstance(n, (bytes, bytearray)) and len(n) == NONCE_BYTES for n in (n1, n2)):
        raise ValueError(f"nonces must be two byte strings of {NONCE_BYTES} bytes each")
    wrapped = bytes(n1) + AESGCM(kek).encrypt(bytes(n1), data_key, None)
    ciphertext = bytes(n2) + AESGCM(data_key).encrypt(bytes(n2), plaintext.encode("utf-8"), _context(context))
    return {"wrapped_key": wrapped, "ciphertext": ciphertext}


def _unwrap(wrapped: bytes, kek: bytes) -> bytes:
    try:
        return AESGCM(kek).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], None)
    except InvalidTag:
        raise ValueError("unwrapping the data key failed: wrong key-encryption key, or the wrapped key was "
                         "changed") from None


def envelope_decrypt(record: dict, kek: bytes, context: str | bytes = b"") -> str:
    """The text of a record of :func:`envelope_encrypt`; ``ValueError`` when the KEK or the context
    is wrong or a byte of the record was changed (GCM authenticates both layers)."""
    wrapped, ciphertext = _record(record)
    data_key = _unwrap(wrapped, _key(kek, "kek"))
    try:
        text = AESGCM(data_key).decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], _context(context))
    except InvalidTag:
        raise ValueError("decryption failed: wrong context, or the ciphertext was changed") from None
    return text.decode("utf-8")


def rewrap(record: dict, old_kek: bytes, new_kek: bytes, nonce: bytes | None = None) -> dict:
    """Key rotation for one record: the same record with its data key unwrapped by ``old_kek`` and
    wrapped again by ``new_kek`` (with ``nonce``, default a fresh random one); the ciphertext is
    neither decrypted nor changed. ``ValueError`` when ``old_kek`` does not unwrap it."""
    wrapped, ciphertext = _record(record)
    data_key = _unwrap(wrapped, _key(old_kek, "old_kek"))
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    if not isinstance(nonce, (bytes, bytearray)) or len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes, got {nonce!r:.40}")
    return {**record, "wrapped_key": bytes(nonce) + AESGCM(_key(new_kek, "new_kek")).encrypt(bytes(nonce), data_key,
                                                                                              None),
            "ciphertext": ciphertext}


def rotate_key(records, old_kek: bytes, new_kek: bytes, nonces=None) -> list[dict]:
    """Key rotation for a table: :func:`rewrap` of every record, in order (``nonces``: one per
    record, default fresh random ones). Only the 60-byte wrapped keys change, whatever the size
    of the ciphertexts; a record that ``old_kek`` does not unwrap stops the rotation
    (``cryptography``'s ``InvalidTag``), so that no row is left behind unnoticed."""
    records = list(records)
    nonces = [None] * len(records) if nonces is None else list(nonces)
    if len(nonces) != len(records):
        raise ValueError(f"{len(records)} records but {len(nonces)} nonces: pass one nonce per record")
    out = []
    for record, nonce in zip(records, nonces):
        wrapped, _ = _record(record)
        AESGCM(_key(old_kek, "old_kek")).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], None)  # InvalidTag
        out.append(rewrap(record, old_kek, new_kek, nonce))
    return out
