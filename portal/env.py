"""Loud helpers for reading settings from the environment (after healthchecks' hc/settings.py).

Every variable may also be given as ``NAME_FILE`` pointing at a file that holds the value, so secrets
can come from a mounted file instead of the process environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env(name: str, default: str | None = None) -> str | None:
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_name} cannot be read: {exc}") from exc
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = env(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    return number


def env_float(name: str, default: float) -> float:
    value = env(name)
    if value is None or value.strip() == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def env_list(name: str, default: str) -> list[str]:
    value = env(name, default) or ""
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env(name) or "").strip().lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def numba_cache_default(code_dir: Path, data_dir: Path) -> str | None:
    """Where numba should keep the compiled kernels (MTCNN's resampling, the large gallery's scans) when
    NUMBA_CACHE_DIR is not set: None (beside the code, numba's default) while ``code_dir`` is writable,
    else a folder of the data directory. numba's own fallback, the user's home cache, may be missing or
    read-only for a service account, and then it refuses to import the kernels at all."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    cache = code_dir / "__pycache__"
    if os.access(cache if cache.exists() else code_dir, os.W_OK):
        return None
    return str(data_dir / "numba-cache")
