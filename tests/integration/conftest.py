"""Real services for the integration tests, each on a free port in a temporary directory.

* ``redis_server``: ``redis-server`` without persistence; yields ``redis://127.0.0.1:PORT/0``.
* ``postgres_server``: a throw-away PostgreSQL cluster (``initdb`` as the ``postgres`` user when run as
  root) with a ``portal`` database; yields ``postgres://postgres@127.0.0.1:PORT/portal``.
* ``celery_worker(env)``: starts ``celery -A portal worker`` (the production command, one prefork
  child) in its own process group and waits until it says it is ready; ``kill()`` (SIGKILL of the
  whole group, as an OOM killer or a lost machine would), ``stop()``, ``restart()``.
* ``daphne_process(env)``: a started :class:`tests.live.DaphneProcess`, stopped after the module.
* ``prometheus_server(targets, token)``: a real Prometheus scraping ``targets`` as
  docs/monitoring/prometheus.yml says (every second instead of every 15), with the shipped alerts.

Everything is module-scoped (one Redis, one PostgreSQL per test module) and stopped afterwards. When
a test fails, the tail of every running service's log is attached to its report.

Also here: :class:`AdminSession` (a registrar in the Django admin, over real HTTP with CSRF),
:func:`face_sign_in` (the browser's websocket protocol with the ``websockets`` library) and
:func:`create_people` (a superuser and students through ``manage.py shell -c``).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.live import MONITORING, REPO, DaphneProcess, ProcessFailed, free_port, http_status, manage, venv_script, wait_until

# --- failure reports: the log tails of the services running when a test failed ---------------------
_LOGS: dict[int, tuple[str, Callable[[], str]]] = {}


def _watch_log(owner: object, label: str, tail: Callable[[], str]) -> None:
    _LOGS[id(owner)] = (label, tail)


def _unwatch_log(owner: object) -> None:
    _LOGS.pop(id(owner), None)


def _tail_of(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for label, tail in list(_LOGS.values()):
            try:
                report.sections.append((f"log tail: {label}", tail()))
            except Exception as exc:  # noqa: BLE001 - diagnostics only
                report.sections.append((f"log tail: {label}", f"(unreadable: {exc})"))


# --- Redis ---------------------------------------------------------------------------------------
def _redis_ping(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = require_binary("redis-server")
    directory = tmp_path_factory.mktemp("redis")
    port = free_port()
    log_path = directory / "redis.log"
    command = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(directory), "--logfile", str(log_path),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    owner = object()
    _watch_log(owner, f"redis-server :{port} ({log_path})", lambda: _tail_of(log_path, 20))
    try:
        wait_until(
            lambda: process.poll() is not None or _redis_ping(port), timeout=20, message="redis-server did not answer PING"
        )
        if process.poll() is not None:
            raise ProcessFailed(f"redis-server exited with {process.returncode}\n{_tail_of(log_path)}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _unwatch_log(owner)
        _terminate(process)


# --- PostgreSQL ----------------------------------------------------------------------------------
def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` user then."""
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root, but there is no 'postgres' user to run PostgreSQL as")
    return [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "postgres", "--", *command]


def _run(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise ProcessFailed(f"{' '.join(command)} exited with {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    initdb = require_binary("initdb")
    bin_dir = Path(initdb).parent
    pg_ctl = str(bin_dir / "pg_ctl") if (bin_dir / "pg_ctl").exists() else require_binary("pg_ctl")
    createdb = str(bin_dir / "createdb") if (bin_dir / "createdb").exists() else require_binary("createdb")
    # Not under pytest's tmp dirs: those are private to the current user (0700), and the server runs
    # as 'postgres'.
    root = Path(tempfile.mkdtemp(prefix="portal-pg-"))
    data_dir, socket_dir, log_path = root / "data", root / "socket", root / "postgres.log"
    socket_dir.mkdir()
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        for path in (root, socket_dir):
            os.chown(path, account.pw_uid, account.pw_gid)
    port = free_port()
    owner = object()
    _watch_log(owner, f"postgres :{port} ({log_path})", lambda: _tail_of(log_path, 30))
    started = False
    try:
        _run(_as_postgres([initdb, "-D", str(data_dir), "--auth=trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]))
        options = (
            f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"  # a throw-away cluster
        )
        _run(_as_postgres([pg_ctl, "-D", str(data_dir), "-l", str(log_path), "-w", "-t", "60", "-o", options, "start"]))
        started = True
        _run(_as_postgres([createdb, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "portal"]))
        yield f"postgres://postgres@127.0.0.1:{port}/portal"
    finally:
        _unwatch_log(owner)
        if started:
            subprocess.run(
                _as_postgres([pg_ctl, "-D", str(data_dir), "-m", "immediate", "-w", "stop"]),
                capture_output=True, timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


# --- Celery worker -------------------------------------------------------------------------------
class CeleryWorker:
    """``celery -A portal worker --loglevel INFO --concurrency 1 --pool prefork -n NAME@%h``.

    Runs in its own process group (the main process and its prefork child), so :meth:`kill` takes
    both down at once, like a machine that disappears. Output goes to ``log_path`` (appended across
    restarts).
    """

    READY = re.compile(r"\bready\.")

    def __init__(self, env: dict[str, str], log_path: Path, name: str = "w1", startup_timeout: float = 120) -> None:
        self.env = dict(env)
        self.log_path = Path(log_path)
        self.name = name
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self._log = None
        self._log_offset = 0

    @property
    def command(self) -> list[str]:
        return [
            venv_script("celery"), "-A", "portal", "worker", "--loglevel", "INFO",
            "--concurrency", "1", "--pool", "prefork", "-n", f"{self.name}@%h",
        ]

    def log_text(self, *, since_start: bool = False) -> str:
        try:
            with self.log_path.open("rb") as handle:
                if since_start:
                    handle.seek(self._log_offset)
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, env: dict[str, str] | None = None) -> CeleryWorker:
        if self.alive():
            raise RuntimeError("the worker is already running")
        if env is not None:
            self.env = dict(env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command, cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        _watch_log(self, f"celery worker {self.name} ({self.log_path})", self.log_tail)
        try:
            wait_until(self._ready, timeout=self.startup_timeout, interval=0.25)
        except (TimeoutError, ProcessFailed) as exc:
            code = self.process.poll()
            self.kill()
            state = f"exited with {code}" if code is not None else f"not ready within {self.startup_timeout} s"
            raise ProcessFailed(f"celery worker {state} ({exc})\n--- {self.log_path} ---\n{self.log_tail()}") from None
        return self

    def _ready(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise ProcessFailed("the celery worker exited during start-up")
        return bool(self.READY.search(self.log_text(since_start=True)))

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> int | None:
        """SIGKILL the worker and its pool child at once: no warm shutdown, no acknowledgement."""
        if self.process is None:
            return None
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._close_log()
        return self.process.returncode

    def stop(self, timeout: float = 30) -> int | None:
        """Warm shutdown (SIGTERM: finish the running task), then SIGKILL after ``timeout`` s."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=30)
        self._signal_group(signal.SIGKILL)  # a pool child left behind
        self._close_log()
        return self.process.returncode

    def restart(self, env: dict[str, str] | None = None) -> CeleryWorker:
        self.stop()
        return self.start(env)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        _unwatch_log(self)


@pytest.fixture(scope="module")
def celery_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., CeleryWorker]]:
    """``celery_worker(env, name="w1", start=True)`` → a :class:`CeleryWorker` (started unless ``start=False``)."""
    workers: list[CeleryWorker] = []
    log_dir = tmp_path_factory.mktemp("celery")

    def make(env: dict[str, str], name: str = "w1", *, start: bool = True, log_path: Path | None = None) -> CeleryWorker:
        worker = CeleryWorker(env, log_path or log_dir / f"{name}-{len(workers)}.log", name=name)
        workers.append(worker)
        return worker.start() if start else worker

    yield make
    for worker in workers:  # all at once, then wait for each
        if worker.alive():
            worker._signal_group(signal.SIGTERM)
    for worker in workers:
        worker.stop(timeout=10)


# --- daphne --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def daphne_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., DaphneProcess]]:
    """``daphne_process(env, **kwargs)`` → a started DaphneProcess, stopped after the module."""
    started: list[DaphneProcess] = []
    log_dir = tmp_path_factory.mktemp("daphne")

    def make(env: dict[str, str], **kwargs) -> DaphneProcess:
        port = kwargs.pop("port", None) or free_port()
        daphne = DaphneProcess(env, port=port, log_path=kwargs.pop("log_path", log_dir / f"daphne-{port}.log"), **kwargs)
        daphne.start()
        started.append(daphne)
        _watch_log(daphne, f"daphne :{daphne.port} ({daphne.log_path})", daphne.log_tail)
        return daphne

    yield make
    for daphne in started:  # all at once, then wait for each
        _unwatch_log(daphne)
        if daphne.alive():
            daphne.process.send_signal(signal.SIGTERM)
    for daphne in started:
        daphne.stop()


# --- Prometheus ----------------------------------------------------------------------------------
def prometheus_config(targets: list[str], token_file: Path) -> str:
    """docs/monitoring/prometheus.yml for this machine: these targets, this token file, the shipped alerts,
    every second. Edited as text so the scrape settings tested are the shipped ones."""
    text = (MONITORING / "prometheus.yml").read_text()
    replacements = {
        "scrape_interval: 15s": "scrape_interval: 1s",
        "evaluation_interval: 15s": "evaluation_interval: 1s",
        "  - alerts.yml": f"  - {MONITORING / 'alerts.yml'}",
        "/etc/prometheus/portal-metrics-token": str(token_file),
        '["10.0.0.11:8001", "10.0.0.11:8002", "10.0.0.12:8001", "10.0.0.12:8002"]': json.dumps(targets),
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"docs/monitoring/prometheus.yml no longer holds {old!r} once: update prometheus_config"
        text = text.replace(old, new)
    return text


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen
    log_path: Path

    def _api(self, path: str, **params: str):
        from urllib.parse import urlencode
        from urllib.request import urlopen

        with urlopen(f"{self.url}/api/v1/{path}?{urlencode(params)}", timeout=10) as response:  # noqa: S310 - local
            answer = json.load(response)
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> dict[frozenset, float]:
        """An instant query's vector: labels (without __name__ unless it is the only one) → value."""
        return {frozenset(r["metric"].items()): float(r["value"][1]) for r in self._api("query", query=expr)["result"]}

    def rules(self) -> list[dict]:
        return [rule for group in self._api("rules")["groups"] for rule in group["rules"]]

    def log_tail(self) -> str:
        return _tail_of(self.log_path, 30)


@pytest.fixture(scope="module")
def prometheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[list[str], str], PrometheusServer]]:
    binary = require_binary("prometheus")
    started: list[PrometheusServer] = []

    def start(targets: list[str], token: str) -> PrometheusServer:
        directory = tmp_path_factory.mktemp("prometheus")
        token_file = directory / "metrics-token"
        token_file.write_text(token)
        config = directory / "prometheus.yml"
        config.write_text(prometheus_config(targets, token_file))
        port, log_path = free_port(), directory / "prometheus.log"
        command = [
            binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        server = PrometheusServer(f"http://127.0.0.1:{port}", process, log_path)
        started.append(server)
        _watch_log(server, f"prometheus :{port} ({log_path})", server.log_tail)
        wait_until(
            lambda: process.poll() is not None or http_status(f"{server.url}/-/ready") == 200,
            timeout=30,
            message="prometheus did not become ready",
        )
        if process.poll() is not None:
            raise ProcessFailed(f"prometheus exited with {process.returncode}\n{server.log_tail()}")
        return server

    yield start
    for server in started:
        _unwatch_log(server)
        _terminate(server.process)


def _terminate(process: subprocess.Popen, timeout: float = 10) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


# --- people, the admin and the face sign-in, as a browser would do them -----------------------------
ADMIN_USERNAME = "registrar"
ADMIN_PASSWORD = "registrar-test-password-4921"  # noqa: S105 - a throw-away test portal


@dataclass(frozen=True)
class Person:
    number: str
    name: str
    folder: str  # under the shared faces' johns/


# What the process tests run with. Three enrolled students are too few to calibrate a 1-in-1,000
# stranger rate (the threshold then refuses everyone, as it should); these tests are about the
# processes, not accuracy, so they ask for 1 in 20.
PROCESS_SETTINGS = {
    "FACELOGIN_RETRAIN_DEBOUNCE_SECONDS": "1",
    "FACELOGIN_LIVENESS": "0",
    "FACELOGIN_MODEL_REFRESH_SECONDS": "0.5",
    "FACELOGIN_TARGET_FPIR": "0.05",
    "FACELOGIN_METRICS_TOKEN": "process-tests-metrics-token-5081",
}


def three_johns(prefix: str) -> list[Person]:
    return [
        Person(f"{prefix}001", "John Salley", "John_Salley"),
        Person(f"{prefix}002", "John Savage", "John_Savage"),
        Person(f"{prefix}003", "John Schneider", "John_Schneider"),
    ]


def create_people(env: dict[str, str], people: Iterable[Person]) -> dict[str, int]:
    """A superuser (ADMIN_USERNAME / ADMIN_PASSWORD) and one student per person; returns number → student id."""
    people = [(p.number, p.name) for p in people]
    script = (
        "import json\n"
        "from django.contrib.auth import get_user_model\n"
        "from facelogin.services.consent import consent_record\n"
        "from facelogin.services.students import student_create\n"
        f"get_user_model().objects.create_superuser({ADMIN_USERNAME!r}, 'registrar@example.org', {ADMIN_PASSWORD!r})\n"
        f"ids = {{n: student_create(student_number=n, full_name=name, department='Physics') for n, name in {people!r}}}\n"
        "for student in ids.values(): consent_record(student=student, method='signed_form')\n"
        "ids = {n: s.pk for n, s in ids.items()}\n"
        "print('IDS=' + json.dumps(ids))\n"
    )
    output = manage(env, "shell", "-c", script).stdout
    line = next(line for line in output.splitlines() if line.startswith("IDS="))
    return json.loads(line[len("IDS="):])


class AdminSession:
    """A registrar signed in to the Django admin of one portal process, over real HTTP."""

    def __init__(self, base_url: str, username: str = ADMIN_USERNAME, password: str = ADMIN_PASSWORD) -> None:
        import requests

        self.base_url = base_url
        self.http = requests.Session()
        self.http.get(f"{base_url}/admin/login/", timeout=60).raise_for_status()
        response = self.http.post(
            f"{base_url}/admin/login/?next=/admin/",
            data={"username": username, "password": password, "next": "/admin/", "csrfmiddlewaretoken": self.csrf},
            allow_redirects=False,
            timeout=60,
        )
        assert response.status_code == 302 and response.headers["Location"] == "/admin/", (
            f"admin sign-in refused: {response.status_code}\n{response.text[:2000]}"
        )

    @property
    def csrf(self) -> str:
        return self.http.cookies["csrftoken"]

    def upload_photos(self, student_id: int, person: Person, photos: Iterable[Path], *, timeout: float = 60):
        """Add photos on the student's change page (the ``face_photos`` multi-file field) and save."""
        files = [("face_photos", (photo.name, photo.read_bytes(), "image/jpeg")) for photo in photos]
        data = {
            "csrfmiddlewaretoken": self.csrf,
            "student_number": person.number,
            "full_name": person.name,
            "department": "Physics",
            "status": "enrolled",
            "face_login_blocked_reason": "",
            "photos-TOTAL_FORMS": "0",
            "photos-INITIAL_FORMS": "0",
            "photos-MIN_NUM_FORMS": "0",
            "photos-MAX_NUM_FORMS": "1000",
            "_save": "Save",
        }
        return self.http.post(
            f"{self.base_url}/admin/facelogin/student/{student_id}/change/",
            data=data, files=files, allow_redirects=False, timeout=timeout,
        )

    def run_action(self, changelist: str, action: str, selected: Iterable[int], *, timeout: float = 60):
        """Run an admin action (e.g. ``retrain_now``) on ``changelist`` (``/admin/app/model/``)."""
        data = {
            "csrfmiddlewaretoken": self.csrf,
            "action": action,
            "_selected_action": [str(pk) for pk in selected],
            "index": "0",
        }
        return self.http.post(f"{self.base_url}{changelist}", data=data, allow_redirects=False, timeout=timeout)


@dataclass
class FaceSignIn:
    """What happened during one face sign-in: the websocket messages and the final HTTP page."""

    messages: list[dict] = field(default_factory=list)
    close_code: int | None = None
    frames_sent: int = 0
    seconds: float = 0.0
    home: object | None = None  # the requests.Response of the ticket redemption (after redirects)
    error: str = ""  # how the websocket ended, when it was not a normal close

    def __str__(self) -> str:
        return f"close code {self.close_code}, {self.frames_sent} frames, {self.seconds:.1f} s, {self.error}\n{self.messages}"

    @property
    def final(self) -> dict:
        return self.messages[-1] if self.messages else {}


def webcam_frames(photos: Iterable[Path]) -> Iterator[bytes]:
    """Distinct browser-like frames of real photos (the server counts a repeated frame once)."""
    from tests import faces

    photos = list(photos)
    for shift in (0, 14, -14, 28, -28):
        for photo in photos:
            yield faces.webcam_frame(photo, shift=shift)


def face_sign_in(base_url: str, photos: Iterable[Path], *, max_frames: int = 30, timeout: float = 90) -> FaceSignIn:
    """Sign in by face as the page does: GET /login/face/ (session + CSRF cookies), open the websocket
    with that cookie and the page's Origin, send one JPEG at a time waiting for each answer, then post
    the ticket to /login/face/complete/. ``result.home`` is the page the browser lands on.
    """
    import requests
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    result = FaceSignIn()
    started = time.monotonic()
    http = requests.Session()
    page = http.get(f"{base_url}/login/face/", timeout=60)
    page.raise_for_status()
    cookie = "; ".join(f"{name}={value}" for name, value in http.cookies.items())
    ws_url = base_url.replace("http://", "ws://", 1) + "/ws/face-login/"
    with connect(
        ws_url, origin=base_url, additional_headers={"Cookie": cookie}, open_timeout=60, close_timeout=10
    ) as socket:
        try:
            # The first attempt of a process may load MTCNN + FaceNet before answering.
            result.messages.append(json.loads(socket.recv(timeout=timeout)))
            if result.final.get("type") == "hello":
                interval = result.final.get("frame_interval_ms", 100) / 1000
                for frame in webcam_frames(photos):
                    if result.frames_sent >= max_frames:
                        break
                    socket.send(frame)
                    result.frames_sent += 1
                    result.messages.append(json.loads(socket.recv(timeout=timeout)))
                    if result.final.get("type") in ("success", "failed", "throttled"):
                        break
                    time.sleep(interval)  # the rate the page keeps
            socket.recv(timeout=10)  # the close frame that follows a final message
        except ConnectionClosed as closed:
            if closed.rcvd is None or closed.rcvd.code != 1000:
                result.error = f"{closed!r} after {time.monotonic() - started:.1f} s"
        except TimeoutError as exc:
            result.error = f"no answer within the timeout ({exc!r})"
        result.close_code = socket.close_code
    if result.final.get("type") == "success":
        result.home = http.post(
            f"{base_url}/login/face/complete/",
            data={"ticket": result.final["ticket"], "csrfmiddlewaretoken": http.cookies["csrftoken"]},
            timeout=60,
        )
    result.seconds = time.monotonic() - started
    return result


# --- reading the portal's database from the test process ------------------------------------------
class Database:
    """Read-only queries on the portal's database (SQLite file or PostgreSQL URL); rows as dicts.

    Queries use ``?`` placeholders for both engines.
    """

    def __init__(self, *, sqlite_path: Path | None = None, postgres_url: str | None = None) -> None:
        self.sqlite_path = sqlite_path
        self.postgres_url = postgres_url

    def rows(self, sql: str, params: tuple = ()) -> list[dict]:
        if self.sqlite_path is not None:
            import sqlite3

            # Read-only; WAL lets daphne and the worker keep writing meanwhile.
            connection = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True, timeout=20)
            try:
                connection.row_factory = sqlite3.Row
                return [dict(row) for row in connection.execute(sql, params).fetchall()]
            finally:
                connection.close()
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.postgres_url, row_factory=dict_row, autocommit=True) as connection:
            return list(connection.execute(sql.replace("?", "%s"), params).fetchall())

    def value(self, sql: str, params: tuple = ()):
        rows = self.rows(sql, params)
        return next(iter(rows[0].values())) if rows else None

    # The portal's records this suite looks at.
    def photos(self) -> list[dict]:
        return self.rows(
            "SELECT p.id, p.state, p.reason, p.attempts, p.source_name, s.student_number "
            "FROM facelogin_enrolmentphoto p JOIN facelogin_student s ON s.id = p.student_id ORDER BY p.id"
        )

    def versions(self) -> list[dict]:
        return self.rows(
            "SELECT id, status, is_active, gallery_students, gallery_embeddings, request_token, error, trigger "
            "FROM facelogin_classifierversion ORDER BY id"
        )

    def active_version(self) -> dict | None:
        return next((v for v in self.versions() if v["is_active"]), None)

    def enrol_actions(self) -> list[dict]:
        rows = self.rows("SELECT id, detail FROM facelogin_biometricaction WHERE action = 'enrol' ORDER BY id")
        for row in rows:
            if isinstance(row["detail"], str):
                row["detail"] = json.loads(row["detail"])
        return rows

    def enrolment_finished(self, expected_photos: int) -> dict | None:
        """The active version once ``expected_photos`` photos are processed and all accepted ones are in it."""
        photos = self.photos()
        if len(photos) < expected_photos or any(p["state"] in ("queued", "processing") for p in photos):
            return None
        accepted = sum(p["state"] == "accepted" for p in photos)
        active = self.active_version()
        if active is None or active["gallery_embeddings"] != accepted:
            return None
        return active
