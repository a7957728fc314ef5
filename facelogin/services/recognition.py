"""The one bridge from Django settings to pipeline objects, held once per process."""

from __future__ import annotations

import threading
from pathlib import Path

from django.conf import settings

_lock = threading.Lock()


def face_settings() -> dict:
    return settings.FACELOGIN


def model_name() -> str:
    return face_settings()["MODEL"]


def prepare_embedding_weights() -> Path:
    from facelogin.pipeline.weights import prepare_weights

    config = face_settings()
    path = Path(config["MODEL_PATH"]) if config["MODEL_PATH"] else None
    return prepare_weights(config["MODEL"], Path(config["MODEL_DIR"]), path=path)
