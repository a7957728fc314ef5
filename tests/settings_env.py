"""Loaded with ``-p tests.settings_env`` (pytest.ini) before pytest-django imports the settings.

The test run needs a secret key but never a real one; ./portal.sh test provides one anyway.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-not-for-production-0123456789")
# A fixed test key for biometric data at rest (never used outside tests).
os.environ.setdefault("FACELOGIN_BIOMETRIC_KEYS", "dGVzdC1vbmx5LWJpb21ldHJpYy1rZXktMzItYnl0ZXM=")
