"""Helpers for tests that run the real portal as separate processes (daphne, manage.py, workers).

Nothing here imports Django: the portal under test runs in its own processes, configured only through
environment variables, exactly as in production. Typical use::

    env = portal_env(tmp_path, FACELOGIN_LIVENESS="0")
    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput")
    with DaphneProcess(env) as portal:
        urllib.request.urlopen(portal.url + "/healthz/")

The same helpers serve the browser tests (tests/e2e), bench/screenshots.py and the Redis / Celery /
PostgreSQL integration tests (pass ``REDIS_URL=...`` or ``DATABASE_URL=...`` as overrides).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
# Converted FaceNet weights are shared with the repository (./portal.sh test prepares them); the same
# FACELOGIN_MODEL_DIR override as tests/pipeline/conftest.py.
MODEL_DIR = Path(os.environ.get("FACELOGIN_MODEL_DIR") or REPO / "data" / "models").resolve()

# Fixed, test-only secrets: never used outside tests (the same values as tests/settings_env.py).
TEST_SECRET_KEY = "test-only-secret-key-not-for-production-0123456789"
TEST_BIOMETRIC_KEY = "dGVzdC1vbmx5LWJpb21ldHJpYy1rZXktMzItYnl0ZXM="

# Variables the portal reads that must not leak from the developer's shell into a test portal. A
# ``NAME_FILE`` variant wins over ``NAME`` in portal/env.py, so both spellings are dropped.
_DROPPED = ("DATABASE_URL", "REDIS_URL", "DJANGO_DEBUG", "DJANGO_SECRET_KEY", "FACELOGIN_BIOMETRIC_KEYS")

T = TypeVar("T")


class CommandFailed(RuntimeError):
    """A portal subprocess failed; the message carries its output."""


def python_executable() -> str:
    """The repository's virtualenv Python when there is one, else the running interpreter."""
    candidate = VENV_BIN / "python"
    return str(candidate) if candidate.exists() else sys.executable


def venv_script(name: str) -> str:
    """A console script (daphne, celery) from the virtualenv, beside the interpreter, or on PATH."""
    for folder in (VENV_BIN, Path(sys.executable).parent):
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found in {VENV_BIN}, beside {sys.executable} or on PATH")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def portal_env(data_dir: Path, **overrides: str | int | float | bool | os.PathLike | None) -> dict[str, str]:
    """Environment for a portal process with its own data directory and fixed test secrets.

    A copy of ``os.environ`` without DATABASE_URL / REDIS_URL / DJANGO_DEBUG (and their ``_FILE``
    variants), so the portal runs in its embedded mode (SQLite under ``data_dir``, in-memory channel
    layer, in-process tasks) unless an override says otherwise. FaceNet weights are shared with the
    repository's ``data/models`` (``./portal.sh test`` prepares them). ``overrides`` win; a value of
    ``None`` removes the variable; booleans become ``1`` / ``0``.
    """
    env = dict(os.environ)
    for name in _DROPPED:
        env.pop(name, None)
        env.pop(f"{name}_FILE", None)
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env.update(
        DJANGO_SECRET_KEY=TEST_SECRET_KEY,
        FACELOGIN_BIOMETRIC_KEYS=TEST_BIOMETRIC_KEY,
        FACELOGIN_DATA_DIR=str(data_dir),
        FACELOGIN_MODEL_DIR=str(MODEL_DIR),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_SETTINGS_MODULE="portal.settings",
        PYTHONUNBUFFERED="1",
    )
    for name, value in overrides.items():
        env.pop(f"{name}_FILE", None)
        if value is None:
            env.pop(name, None)
        elif isinstance(value, bool):
            env[name] = "1" if value else "0"
        else:
            env[name] = str(value)
    return env


def _show(output: str | bytes | None, limit: int = 6000) -> str:
    if output is None:
        return ""
    if isinstance(output, bytes):
        output = output.decode("utf-8", "replace")
    return output if len(output) <= limit else "…" + output[-limit:]


def manage(env: dict[str, str], *args: str | os.PathLike, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python manage.py ARGS`` in the repository; raise CommandFailed with its output on failure."""
    command = [python_executable(), "manage.py", *map(str, args)]
    try:
        return subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=True
        )
    except subprocess.CalledProcessError as exc:
        raise CommandFailed(
            f"`manage.py {' '.join(map(str, args))}` exited with {exc.returncode}\n"
            f"--- stdout ---\n{_show(exc.stdout)}\n--- stderr ---\n{_show(exc.stderr)}"
        ) from None
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(
            f"`manage.py {' '.join(map(str, args))}` did not finish within {timeout} s\n"
            f"--- stdout ---\n{_show(exc.stdout)}\n--- stderr ---\n{_show(exc.stderr)}"
        ) from None


class BackgroundManage:
    """``python manage.py ARGS`` started now and collected later with ``result()`` (output captured).

    For set-up steps that may overlap, e.g. ``collectstatic`` while ``migrate`` runs.
    """

    def __init__(self, env: dict[str, str], *args: str | os.PathLike) -> None:
        self.args = [str(a) for a in args]
        self.process = subprocess.Popen(
            [python_executable(), "manage.py", *self.args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def result(self, timeout: float = 600) -> subprocess.CompletedProcess:
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, stderr = self.process.communicate()
            raise CommandFailed(
                f"`manage.py {' '.join(self.args)}` did not finish within {timeout} s\n"
                f"--- stdout ---\n{_show(stdout)}\n--- stderr ---\n{_show(stderr)}"
            ) from None
        if self.process.returncode != 0:
            raise CommandFailed(
                f"`manage.py {' '.join(self.args)}` exited with {self.process.returncode}\n"
                f"--- stdout ---\n{_show(stdout)}\n--- stderr ---\n{_show(stderr)}"
            )
        return subprocess.CompletedProcess(self.process.args, 0, stdout, stderr)


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.2, message: str = "") -> T:
    """Call ``predicate`` until it returns something truthy and return that; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(message or f"condition not met within {timeout} s: {predicate!r}")
        time.sleep(interval)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status code of GET ``url``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local test URLs only
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def parse_metrics(text: str) -> dict[tuple[str, tuple], float]:
    """/metrics/'s text, parsed by prometheus_client: {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape_metrics(base_url: str, token: str, timeout: float = 10.0) -> dict[tuple[str, tuple], float]:
    """A daphne process's /metrics/, parsed (``parse_metrics``)."""
    request = urllib.request.Request(f"{base_url}/metrics/", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - local test URLs only
        return parse_metrics(response.read().decode())


# The Prometheus files an operator installs (docs/deployment.md, "Monitoring").
MONITORING = REPO / "docs" / "monitoring"


def alert_names() -> list[str]:
    """The alerts docs/monitoring/alerts.yml defines, in its order."""
    return re.findall(r"^\s*- alert: (\S+)$", (MONITORING / "alerts.yml").read_text(), flags=re.MULTILINE)


class ProcessFailed(RuntimeError):
    """A long-running portal process died or never became ready; the message carries its log tail."""


class DaphneProcess:
    """``daphne -b 127.0.0.1 -p PORT portal.asgi:application`` as a context manager.

    Entering starts daphne (output to ``log_path``) and waits until ``GET /healthz/`` answers 200;
    leaving stops it with SIGTERM, then SIGKILL after ``stop_timeout`` s. When daphne dies or never
    gets ready, or the ``with`` block raises, the tail of its log is printed (pytest shows it with
    the failure). ``url`` is ``http://127.0.0.1:PORT`` without a trailing slash.
    """

    def __init__(
        self,
        env: dict[str, str],
        *,
        port: int | None = None,
        log_path: Path | None = None,
        app: str = "portal.asgi:application",
        extra_args: Sequence[str] = (),
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.env = env
        self.port = port or free_port()
        data_dir = Path(env.get("FACELOGIN_DATA_DIR") or REPO / "data")
        self.log_path = Path(log_path) if log_path else data_dir / f"daphne-{self.port}.log"
        self.app = app
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def print_log_tail(self, lines: int = 60, why: str = "") -> None:
        print(f"\n--- daphne on port {self.port}{': ' + why if why else ''}; last {lines} lines of {self.log_path} ---")
        print(self.log_tail(lines))
        print("--- end of daphne log ---")

    def start(self) -> DaphneProcess:
        command = [venv_script("daphne"), "-b", "127.0.0.1", "-p", str(self.port), *self.extra_args, self.app]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_until(self._ready, timeout=self.startup_timeout, interval=0.2)
        except (TimeoutError, ProcessFailed) as exc:
            code = self.process.poll()
            self.stop()
            state = f"exited with {code}" if code is not None else f"not healthy within {self.startup_timeout} s"
            raise ProcessFailed(f"daphne {state} ({exc})\n--- {self.log_path} ---\n{self.log_tail()}") from None
        return self

    def _ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise ProcessFailed("daphne exited during start-up")
        return http_status(f"{self.url}/healthz/") == 200

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        """Wait until ``text`` appears in daphne's log (TimeoutError; ProcessFailed if daphne died)."""

        def seen() -> bool:
            if not self.alive():
                raise ProcessFailed(f"daphne exited while waiting for {text!r}\n{self.log_tail()}")
            return text in self.log_text()

        wait_until(seen, timeout=timeout, interval=0.25, message=f"{text!r} not in {self.log_path} after {timeout} s")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """Stop daphne (SIGTERM, then SIGKILL); return its exit code."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=self.stop_timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return process.returncode

    def __enter__(self) -> DaphneProcess:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        # GeneratorExit / KeyboardInterrupt are a generator's or a person's way to stop, not a failure.
        if exc_type is not None and issubclass(exc_type, Exception):
            self.print_log_tail(why=f"{exc_type.__name__} in the with block")
        self.stop()
