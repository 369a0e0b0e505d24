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
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["FieldCipher", "generate_key", "key_from_env", "KEY_ENV"]

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
