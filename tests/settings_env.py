"""Loaded with ``-p tests.settings_env`` (pytest.ini) before pytest-django imports the settings.

The test run needs a secret key but never a real one; ./portal.sh test provides one anyway.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-production-0123456789")
# A fixed test key for biometric data at rest (never used outside tests).
os.environ.setdefault("FACELOGIN_BIOMETRIC_KEYS", "dGVzdC1vbmx5LWJpb21ldHJpYy1rZXktMzItYnl0ZXM=")
# Face sign-ins in the tests are about recognition, tickets and campus apps, not where they happen: they
# may sign in alone from any browser. The tests of device binding (tests/web/test_devices.py, the
# liveness portal in tests/e2e) set the production default, "known", themselves.
os.environ.setdefault("FACELOGIN_DEVICE_POLICY", "any")


def _test_signing_key() -> None:
    """Single sign-on needs an RSA signing key: a fresh throw-away one per test run (none in git).

    Set in the environment, so the live portals tests start (tests/live.py) sign with it too."""
    if os.environ.get("FACELOGIN_OIDC_KEY") or os.environ.get("FACELOGIN_OIDC_KEY_FILE"):
        return
    import atexit
    import tempfile

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    handle, path = tempfile.mkstemp(prefix="test-oidc-", suffix=".pem")
    with os.fdopen(handle, "wb") as file:
        file.write(pem)
    os.environ["FACELOGIN_OIDC_KEY_FILE"] = path
    atexit.register(lambda: os.path.exists(path) and os.remove(path))


_test_signing_key()
