"""The embedded run's secrets and database: in FACELOGIN_DATA_DIR, readable by the owner only."""

from __future__ import annotations

import re
import stat
import subprocess
import sys

from tests.conftest import REPO
from tests.live import portal_env


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _local_secrets_function() -> str:
    script = (REPO / "portal.sh").read_text()
    return re.search(r"^local_secrets\(\) \{\n.*?^\}\n", script, re.S | re.M).group(0)


def test_portal_sh_keeps_its_secrets_in_the_data_dir_owner_only(tmp_path):
    checkout, data = tmp_path / "checkout", tmp_path / "elsewhere" / "data"
    checkout.mkdir()
    script = _local_secrets_function() + 'local_secrets\necho "$DJANGO_SECRET_KEY_FILE"\necho "$FACELOGIN_BIOMETRIC_KEYS_FILE"\n'
    env = {"PATH": "/usr/bin:/bin", "ROOT": str(checkout), "PY": sys.executable, "FACELOGIN_DATA_DIR": str(data)}
    result = subprocess.run(["bash", "-euc", script], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == [str(data / "secret_key"), str(data / "biometric_key")]
    assert not (checkout / "data").exists()  # not the checkout's data/
    assert _mode(data) == 0o700
    assert _mode(data / "secret_key") == _mode(data / "biometric_key") == 0o600
    first = (data / "secret_key").read_text()
    subprocess.run(["bash", "-euc", script], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert (data / "secret_key").read_text() == first  # kept, not regenerated


def test_a_new_sqlite_database_is_created_owner_only(tmp_path):
    data = tmp_path / "new-data-dir"  # not there yet: the portal creates it
    env = portal_env(tmp_path / "unused") | {"FACELOGIN_DATA_DIR": str(data), "PYTHONPATH": str(REPO)}
    code = "import django; django.setup(); from django.db import connection; connection.ensure_connection(); connection.close()"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=120, capture_output=True)
    assert _mode(data) == 0o700
    files = sorted(data.glob("portal.sqlite3*"))
    assert files and all(_mode(path) & 0o077 == 0 for path in files), {p.name: oct(_mode(p)) for p in files}
