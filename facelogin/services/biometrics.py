"""Biometric data at rest: authenticated encryption (AES-256-GCM) with keys from the environment.

``FACELOGIN_BIOMETRIC_KEYS`` is a comma-separated list of urlsafe-base64 32-byte keys; the first
encrypts, every one decrypts, so keys can be rotated (``manage.py rotate_biometric_key``). Each
sealed value records which key sealed it. Embeddings, face crops, uploaded originals and trained
classifiers all pass through here; none is ever logged.
"""

from __future__ import annotations

import base64
import hashlib
import os
from functools import lru_cache

import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured

from portal.env import env_list

MAGIC = b"FLB1"
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
SEAL_OVERHEAD = len(MAGIC) + KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES  # sealed size = plaintext + this


class SealError(Exception):
    """A sealed value that no configured key opens (wrong key, or tampered with)."""


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"facelogin-key-id:" + key).digest()[:KEY_ID_BYTES]


def parse_keys(values: list[str]) -> list[bytes]:
    keys = []
    for value in values:
        try:
            key = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (ValueError, TypeError):
            key = b""
        if len(key) != 32:
            raise ImproperlyConfigured("each FACELOGIN_BIOMETRIC_KEYS entry must be 32 bytes in urlsafe base64")
        keys.append(key)
    return keys


@lru_cache(maxsize=4)
def _keys(raw: tuple[str, ...]) -> tuple[bytes, ...]:
    keys = parse_keys(list(raw))
    if not keys:
        raise ImproperlyConfigured(
            "FACELOGIN_BIOMETRIC_KEYS (or FACELOGIN_BIOMETRIC_KEYS_FILE) must hold at least one key; "
            "`./portal.sh serve` generates a local one under data/."
        )
    return tuple(keys)


def configured_keys() -> tuple[bytes, ...]:
    # Read on use (not at import) so rotation tests and management commands see the current value.
    return _keys(tuple(env_list("FACELOGIN_BIOMETRIC_KEYS", "")))


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def seal(plaintext: bytes, *, context: bytes = b"", keys: tuple[bytes, ...] | None = None) -> bytes:
    """Encrypt with the current key. ``context`` (e.g. the row's purpose) is authenticated, not stored."""
    key = (keys or configured_keys())[0]
    nonce = os.urandom(NONCE_BYTES)
    return MAGIC + _key_id(key) + nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def unseal(sealed: bytes, *, context: bytes = b"", keys: tuple[bytes, ...] | None = None) -> bytes:
    sealed = memoryview(sealed)  # slices without copies: a classifier part is tens of MB
    if bytes(sealed[: len(MAGIC)]) != MAGIC:
        raise SealError("not a sealed value")
    key_id = bytes(sealed[len(MAGIC) : len(MAGIC) + KEY_ID_BYTES])
    nonce_at = len(MAGIC) + KEY_ID_BYTES
    nonce, ciphertext = bytes(sealed[nonce_at : nonce_at + NONCE_BYTES]), sealed[nonce_at + NONCE_BYTES :]
    for key in keys or configured_keys():
        if _key_id(key) == key_id:
            try:
                return AESGCM(key).decrypt(nonce, ciphertext, context)
            except Exception as exc:  # cryptography's InvalidTag: tampered or wrong context
                raise SealError("sealed value failed authentication") from exc
    raise SealError("no configured key opens this value (was a key removed too early?)")


def sealed_key_id(sealed: bytes) -> bytes:
    return bytes(sealed)[len(MAGIC) : len(MAGIC) + KEY_ID_BYTES]


def current_key_id() -> bytes:
    return _key_id(configured_keys()[0])


def seal_embedding(vector: np.ndarray) -> bytes:
    return seal(np.asarray(vector, dtype="<f4").tobytes(), context=b"embedding")


def unseal_embedding(sealed: bytes) -> np.ndarray:
    return np.frombuffer(unseal(sealed, context=b"embedding"), dtype="<f4").copy()
