"""The portal's OpenID Connect signing keys, read from settings text (PEM).

Read once by portal/settings.py: a key that cannot be used stops the portal at start with a clear
message, instead of failing at the first sign-in of a campus app. Only ``cryptography`` is imported,
so settings stay importable before Django's apps are ready.
"""

from __future__ import annotations

import re

from django.core.exceptions import ImproperlyConfigured

MIN_RSA_BITS = 2048
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.DOTALL)


def pem_blocks(text: str) -> list[str]:
    """Every PEM block in ``text`` (keys one after another, in one variable or file)."""
    return [match.group(0).strip() + "\n" for match in _PEM_BLOCK.finditer(text or "")]


def signing_key(name: str, text: str) -> str:
    """The one RSA private key in ``text`` (PEM), checked; ImproperlyConfigured otherwise."""
    blocks = pem_blocks(text)
    if len(blocks) != 1:
        raise ImproperlyConfigured(f"{name} must hold exactly one PEM private key, found {len(blocks)}")
    _check_rsa(name, blocks[0], private=True)
    return blocks[0]


def published_keys(name: str, text: str) -> list[str]:
    """RSA keys (private or public PEM) published in the JWKS beside the signing key."""
    blocks = pem_blocks(text)
    if (text or "").strip() and not blocks:
        raise ImproperlyConfigured(f"{name} holds no PEM key")
    for block in blocks:
        _check_rsa(name, block, private=False)
    return blocks


def _check_rsa(name: str, pem: str, *, private: bool) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    data = pem.encode()
    try:
        if "PRIVATE KEY" in pem:
            key = serialization.load_pem_private_key(data, password=None)
        elif private:
            raise ValueError("a public key cannot sign")
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{name}: not a usable unencrypted PEM key ({exc})") from None
    if not isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        raise ImproperlyConfigured(f"{name}: ID tokens are signed with RS256, which needs an RSA key")
    if key.key_size < MIN_RSA_BITS:
        raise ImproperlyConfigured(f"{name}: an RSA key of at least {MIN_RSA_BITS} bits is needed, not {key.key_size}")


def generate_pem(bits: int = 3072) -> str:
    """A new RSA private key (PKCS#8 PEM), as ``./portal.sh`` and ``manage.py sso_generate_key`` make."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
