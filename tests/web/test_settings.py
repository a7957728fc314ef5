"""Settings are read in a fresh interpreter here: the test process has its own already loaded."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO


def _run_django(args: list[str], **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=clean, capture_output=True, text=True, timeout=120
    )


def test_settings_refuse_to_start_without_a_secret_key_outside_debug():
    result = _run_django(["check"])
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_debug_may_run_without_a_secret_key():
    result = _run_django(["check"], DJANGO_DEBUG="1")
    assert result.returncode == 0, result.stderr


def test_a_secret_key_may_come_from_a_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("x" * 60)
    result = _run_django(["check"], DJANGO_SECRET_KEY_FILE=str(key_file))
    assert result.returncode == 0, result.stderr


def test_a_malformed_boolean_is_refused_loudly():
    result = _run_django(["check"], DJANGO_SECRET_KEY="x" * 60, DJANGO_DEBUG="maybe")
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be true or false" in result.stderr


def test_check_deploy_is_clean_with_production_settings():
    result = _run_django(
        ["check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_SECRET_KEY="kq3-" + "v9Zp2LmQ8rT4wX7yB1nC6dF0gH5jK" * 2,
        DJANGO_HTTPS="1",
        DJANGO_ALLOWED_HOSTS="portal.example.ac.kr",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_without_https():
    result = _run_django(["check", "--deploy", "--fail-level", "WARNING"], DJANGO_SECRET_KEY="kq3-" + "v9Zp2LmQ8rT4" * 5)
    assert result.returncode != 0


def test_a_mode_or_backend_outside_the_choices_is_refused_by_name():
    for name, value in (("FACELOGIN_MODE", "identfy"), ("FACELOGIN_EMBEDDER", "tensorrt"), ("FACELOGIN_MODEL", "sfcae")):
        result = _run_django(["check"], DJANGO_SECRET_KEY="x" * 60, **{name: value})
        assert result.returncode != 0 and name in result.stderr and value in result.stderr
    assert _run_django(["check"], DJANGO_SECRET_KEY="x" * 60, FACELOGIN_MODE="Verify").returncode == 0


def test_the_face_engine_runs_torch_with_the_configured_threads():
    """MTCNN runs on torch even with the ONNX embedder; torch's default (a thread per core) made each
    frame 6-20x slower on a busy machine, so the engine sets it explicitly."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    script = (
        "import torch\n"
        "from facelogin.services.recognition import engine\n"
        "engine()\n"
        "print('THREADS', torch.get_num_threads())\n"
    )
    for threads in ("1", "2"):
        env = {**clean, "DJANGO_DEBUG": "1", "FACELOGIN_EMBEDDER": "onnx", "FACELOGIN_TORCH_THREADS": threads, "FACELOGIN_WARM_UP": "0"}
        result = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        assert f"THREADS {threads}" in result.stdout, result.stderr[-2000:]


def test_numba_keeps_its_kernels_with_the_data_when_the_code_is_read_only(tmp_path, monkeypatch):
    from pathlib import Path

    from portal.env import numba_cache_default

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    code = Path(REPO) / "facelogin" / "pipeline"
    assert numba_cache_default(code, tmp_path) is None  # a writable checkout: numba's own place, beside the code
    # A directory we may not write to (as root every existing path is writable, so one that is not there).
    assert numba_cache_default(tmp_path / "read-only" / "pipeline", tmp_path) == str(tmp_path / "numba-cache")
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/elsewhere")
    assert numba_cache_default(tmp_path / "read-only" / "pipeline", tmp_path) is None  # the operator's choice wins


def test_the_detector_kernels_are_cached_where_numba_cache_dir_says(tmp_path):
    script = (
        "import numpy as np\n"
        "from facelogin.pipeline.detect import FaceDetector\n"
        "print(FaceDetector().detect(np.full((120, 160, 3), 128, dtype=np.uint8)).count)\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
    assert list((tmp_path / "cache").rglob("*.nbi")), "numba wrote no cache index where it was told"


def test_a_short_metrics_token_is_refused_and_a_long_one_may_come_from_a_file(tmp_path):
    result = _run_django(["check"], DJANGO_SECRET_KEY="x" * 60, FACELOGIN_METRICS_TOKEN="guessable")
    assert result.returncode != 0 and "FACELOGIN_METRICS_TOKEN must be at least 24 characters" in result.stderr
    token_file = tmp_path / "metrics-token"
    token_file.write_text("m" * 32 + "\n")
    assert _run_django(["check"], DJANGO_SECRET_KEY="x" * 60, FACELOGIN_METRICS_TOKEN_FILE=str(token_file)).returncode == 0
