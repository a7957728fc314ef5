"""Shared by ``bench.latency`` and ``bench.load``: real students, a throw-away portal, a browser-like client.

* ``find_people``: real people from ``../shared/faces`` (dlib's johns, then ORL), each with the photos
  the registrar enrols (the first few, natural order) and the held-out photos a client shows the camera.
* ``seed_portal`` / ``serve``: a temporary portal exactly as ``tests/e2e/conftest.py`` makes one
  (SQLite, ``migrate``, ``collectstatic``, ``manage.py import_faces`` with the real pipeline), then
  daphne from ``tests/live.py``, configured only by environment variables. The benchmarks lift the
  throttles (one IP address signs everybody in, the same student many times); ``BENCH_SETTINGS`` is
  printed with every run.
* ``sign_in``: one student signing in the way ``static/js/face_login.js`` does: GET ``/login/face/``
  (the session cookie and CSRF token), a websocket to the page's ``data-ws-path`` with that cookie and
  an ``Origin`` naming the host, then JPEG frames with the page's backpressure (one frame in flight; the
  next no sooner than the server's ``frame_interval_ms`` after the last, or after 1.5 s without an
  answer), and finally the ticket posted to ``/login/face/complete/``.
* ``cpu_seconds`` / ``thread_sched``: a process's CPU time, and each thread's time on a CPU and waiting
  for one, from ``/proc`` (psutil is not a dependency).

Frames are made before a client connects (JPEG encoding in the client process would compete with the
server for the same two cores) and cached, so a frame's bytes are built once.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import shutil
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from tests.conftest import FACES
from tests.faces import webcam_frame
from tests.live import REPO, BackgroundManage, DaphneProcess, manage, portal_env, wait_until

RESULTS = REPO / "bench" / "results"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm"}
ENROL_PHOTOS = {"johns": 6, "orl": 5}  # as tests/e2e (johns) and the README's accuracy runs (ORL)
ANSWER_WINDOW_S = 1.5  # face_login.js: send anyway when the server has not answered within this long
FLASH_SETTLE_S = 0.09  # face_login.js: a new liveness colour is on screen this long before the next frame
MAX_SIDE = 640  # face_login.js: long side of a sent frame
UNANALYSED = {"busy", "too_fast", "duplicate"}  # error answers to frames the server did not recognise

# What the benchmark portal runs with, beyond the embedded defaults. Throttles are lifted because
# every client comes from 127.0.0.1 and the same student signs in many times; nothing else changes
# (calibration target, frame budget, deadline, rate cap, classifier stay at their defaults).
BENCH_SETTINGS = {
    "FACELOGIN_THROTTLE_IP_ATTEMPTS": "1000000",
    "FACELOGIN_THROTTLE_SESSION_ATTEMPTS": "1000000",
    "FACELOGIN_THROTTLE_STUDENT_ATTEMPTS": "1000000",
    "FACELOGIN_THROTTLE_FAILURES": "1000000",
    "FACELOGIN_SOCKETS_PER_ADDRESS": "1000000",  # every simulated browser is 127.0.0.1
    # Every simulated browser is new, so with device binding (the default "known") each ticket would end
    # at the password step; these benchmarks measure the face path (bench.attacks measures the binding).
    "FACELOGIN_DEVICE_POLICY": "any",
    # /metrics/ on, so bench.load can set the monitoring's figures beside its own (a throw-away portal on 127.0.0.1).
    "FACELOGIN_METRICS_TOKEN": "bench-metrics-token-of-a-throw-away-portal",
}

# John Schneider's held-out photos looking at the camera (tests/web/test_consumer.py): the first is lifted
# to a 3-D head (bench.head3d) that does the liveness challenge's turns.
LIVENESS_PERSON = "John_Schneider"
LIVENESS_FRONTAL = ("000329_00925859.jpg", "000329_00925963.jpg", "000331_00926012.jpg")


def natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


# --- people -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    number: str  # student number in the portal
    name: str
    dataset: str
    photos: tuple[Path, ...]  # sorted naturally

    @property
    def enrol_photos(self) -> tuple[Path, ...]:
        return self.photos[: ENROL_PHOTOS[self.dataset]]

    @property
    def held_out(self) -> tuple[Path, ...]:
        return self.photos[ENROL_PHOTOS[self.dataset] :]


def find_people(*, johns: int = 5, orl: int = 40, faces: Path = FACES) -> list[Person]:
    """The first ``johns`` of dlib's johns, then the first ``orl`` ORL people (s1, s2, ...)."""
    found = []
    for dataset, count, prefix in (("johns", johns, "J"), ("orl", orl, "O")):
        root = faces / dataset
        if not root.is_dir():
            raise SystemExit(f"real faces not found at {root}; set FACELOGIN_SHARED_DIR")
        folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))[:count]
        for index, folder in enumerate(folders, start=1):
            photos = tuple(sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name)))
            name = folder.name.replace("_", " ") if dataset == "johns" else f"ORL {folder.name}"
            found.append(Person(f"B{prefix}{index:03d}", name, dataset, photos))
    return found


# --- frames -------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def frame(photo: Path, *, shift: int = 0, size: tuple[int, int] = (640, 480)) -> bytes:
    """A webcam-like JPEG (q80, the browser's quality) of a real photo; ``shift`` px makes the bytes unique."""
    if max(size) > MAX_SIDE:
        raise ValueError(f"the page never sends frames over {MAX_SIDE} px")
    face_height = round(300 * size[1] / 480)  # a face filling ~60 % of the frame's height, as at a desk
    return webcam_frame(photo, size=size, face_height=face_height, shift=shift)


class FrameSource:
    """The frames one client sends: its held-out photos in turn, one pixel further right each frame.

    ``frame(index, step)`` returns frame ``index``'s bytes (``step`` is the liveness challenge's step
    the server asked for in its last answer; ignored here), or None when the client has no more.
    """

    def __init__(
        self, photos: Sequence[Path], *, limit: int = 40, size: tuple[int, int] = (640, 480), shift: int = 0
    ) -> None:
        """``shift``: px added to every frame's shift (a second device of the same student sends other bytes)."""
        if not photos:
            raise ValueError("a client needs at least one photo")
        self.photos, self.limit, self.size, self.shift = list(photos), limit, size, shift

    def frame(self, index: int, step: str | None = None) -> bytes | None:
        if index >= self.limit:
            return None
        return frame(self.photos[index % len(self.photos)], shift=self.shift + index, size=self.size)

    def prepare(self, count: int) -> list[bytes]:
        return [f for f in (self.frame(i) for i in range(count)) if f is not None]


class ChallengeSource(FrameSource):
    """A cooperative student with liveness on: the student's head in 3-D (bench.actors.Student) looks at the
    camera, turns when the server's prompts ask, and reflects the colours the page shows. ``observe``
    takes each answer as the page shows it; ``frame`` films the moment it is called at."""

    def __init__(self, frontal: Sequence[Path], *, limit: int = 60, seed: int = 0) -> None:
        import random

        import numpy as np

        from bench.actors import Camera, Student
        from bench.head3d import Head, load_photo, place

        super().__init__(frontal, limit=limit)
        head = Head.from_canvas(place(load_photo(self.photos[0]), 240))
        if head is None:
            raise SystemExit(f"no face in {self.photos[0]}")
        self.student = Student(head, random.Random(seed))
        self.camera = Camera(np.random.default_rng(seed), reflection=0.12)
        self.started = time.monotonic()
        self.screen: tuple[int, int, int] | None = None

    def observe(self, message: dict) -> None:
        challenge = message.get("challenge") or {}
        if challenge.get("flash"):
            self.screen = tuple(challenge["flash"])
        self.student.observe(message, time.monotonic() - self.started)

    def frame(self, index: int, step: str | None = None) -> bytes | None:
        if index >= self.limit:
            return None
        return self.camera.shoot(self.student.scene(time.monotonic() - self.started), self.screen)

    def prepare(self, count: int) -> list[bytes]:
        return []  # filmed live: nothing to make ahead


def liveness_person(people: Sequence[Person]) -> Person:
    for person in people:
        if person.photos and person.photos[0].parent.name == LIVENESS_PERSON:
            return person
    raise SystemExit(f"{LIVENESS_PERSON} must be among the enrolled people")


# --- the portal ---------------------------------------------------------------------------------


@dataclass
class Portal:
    root: Path
    env: dict[str, str]
    people: list[Person]
    import_seconds: float | None = None
    import_summary: str = ""

    @property
    def data_dir(self) -> Path:
        return Path(self.env["FACELOGIN_DATA_DIR"])

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with contextlib.closing(sqlite3.connect(f"file:{self.data_dir / 'portal.sqlite3'}?mode=ro", uri=True, timeout=10)) as db:
            db.row_factory = sqlite3.Row
            return db.execute(sql, params).fetchall()

    def classifier(self) -> dict:
        """The active classifier version: students, embeddings, similarity threshold."""
        rows = self.query(
            "SELECT id, gallery_students, gallery_embeddings, thresholds FROM facelogin_classifierversion WHERE is_active = 1"
        )
        if not rows:
            return {}
        row = rows[0]
        thresholds = json.loads(row["thresholds"] or "{}")
        return {
            "version": row["id"],
            "students": row["gallery_students"],
            "embeddings": row["gallery_embeddings"],
            "threshold": round(float(thresholds.get("similarity", float("nan"))), 4),
        }


def seed_portal(root: Path, people: Sequence[Person], **overrides: str) -> Portal:
    """Database, static files and enrolled students in ``root`` (reused when ``root`` already holds them).

    ``import_faces`` runs before daphne starts, so the machine does one heavy thing at a time.
    """
    root = Path(root).resolve()
    env = portal_env(root / "data", **{**BENCH_SETTINGS, **overrides})
    portal = Portal(root, env, list(people))
    marker = root / "seeded.json"
    wanted = {p.number: [str(f) for f in p.enrol_photos] for p in people}
    if marker.exists() and json.loads(marker.read_text()) == wanted and portal.classifier():
        manage(env, "migrate", "--noinput")  # the code may have moved on since it was seeded
        portal.import_summary = "reused the portal seeded earlier in " + str(root)
        return portal
    if (root / "data").exists():
        shutil.rmtree(root / "data")
    static = BackgroundManage(env, "collectstatic", "--noinput")
    try:
        manage(env, "migrate", "--noinput")
    finally:
        static.result()
    enrol = root / "enrol"
    shutil.rmtree(enrol, ignore_errors=True)
    for person in people:
        (enrol / person.number).mkdir(parents=True)
        for photo in person.enrol_photos:
            shutil.copyfile(photo, enrol / person.number / photo.name)
    csv = root / "students.csv"
    csv.write_text("student_number,full_name,department\n" + "".join(f"{p.number},{p.name},Benchmark\n" for p in people))
    started = time.monotonic()
    done = manage(env, "import_faces", enrol, "--create-students", "--students-csv", csv, timeout=1800)
    portal.import_seconds = time.monotonic() - started
    lines = done.stdout.strip().splitlines()
    portal.import_summary = "\n".join(line for line in lines if not line.startswith(("B", "student")))
    if not portal.classifier():
        raise SystemExit(f"import_faces left no active classifier version:\n{done.stdout}\n{done.stderr}")
    marker.write_text(json.dumps(wanted))
    return portal


@contextlib.contextmanager
def serve(portal: Portal, *, name: str = "daphne", **overrides: str) -> Iterator[DaphneProcess]:
    """daphne on the seeded portal (extra environment ``overrides``), warm before it is returned."""
    env = {**portal.env, **{k: str(v) for k, v in overrides.items()}}
    log = portal.root / f"{name}.log"
    log.unlink(missing_ok=True)
    with DaphneProcess(env, log_path=log, startup_timeout=120) as daphne:
        wait_until(lambda: engine_ready(daphne), timeout=180, interval=0.5, message=f"daphne's models not warm after 180 s ({log})")
        yield daphne


def engine_ready(daphne: DaphneProcess) -> bool:
    """/healthz/ says this daphne's models are loaded and warm."""
    browser = Browser(daphne.url, timeout=5)
    try:
        return json.loads(browser.get("/healthz/").text).get("face_engine") == "ready"
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        browser.close()


def settings_shown(portal: Portal, overrides: dict[str, str]) -> dict[str, str]:
    """The non-default settings a run used, to print and store with its results."""
    shown = {**BENCH_SETTINGS, **overrides}
    if shown.get("FACELOGIN_METRICS_TOKEN"):
        shown["FACELOGIN_METRICS_TOKEN"] = "(set)"
    for name in ("FACELOGIN_TARGET_FPIR", "FACELOGIN_TORCH_THREADS", "FACELOGIN_RECOGNITION_THREADS", "FACELOGIN_CLASSIFIER"):
        if name in portal.env and name not in shown:
            shown[name] = portal.env[name]
    return shown


# --- CPU time from /proc ------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_cpu(path: Path) -> tuple[str, float]:
    text = path.read_text()
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return comm, (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15 of stat)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the whole process (every thread, dead ones included), 10 ms resolution."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))[1]


def thread_sched(pid: int) -> dict[int, tuple[float, float]]:
    """Per live thread of ``pid``: (seconds on a CPU, seconds runnable but waiting for one), from
    ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds). The second is what other processes cost it."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError):
            on_cpu, waiting, _ = (task / "schedstat").read_text().split()
            out[int(task.name)] = (int(on_cpu) / 1e9, int(waiting) / 1e9)
    return out


def busiest_threads(
    before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]], pid: int, seconds: float, top: int = 3
) -> list[dict]:
    """The threads that ran most between two ``thread_sched`` readings, each as shares of ``seconds``:
    ``busy`` on a CPU, ``starved`` runnable but waiting for a CPU, ``idle`` the rest (blocked: nothing
    to do, or waiting on I/O or a lock). The thread whose id is the process id is daphne's event loop."""
    rows = []
    for tid, (cpu, wait) in after.items():
        cpu0, wait0 = before.get(tid, (0.0, 0.0))
        rows.append((cpu - cpu0, wait - wait0, tid))
    rows.sort(reverse=True)
    out = []
    for cpu, wait, tid in rows[:top]:
        if cpu <= 0 or not seconds:
            continue
        out.append(
            {
                "thread": "event loop" if tid == pid else f"tid {tid}",
                "cpu_s": round(cpu, 2),
                "busy": round(cpu / seconds, 3),
                "starved": round(wait / seconds, 3),
                "idle": round(max(0.0, 1 - (cpu + wait) / seconds), 3),
            }
        )
    return out


# --- the client ---------------------------------------------------------------------------------


@dataclass
class SignIn:
    outcome: str = "not_started"  # success | failed:<reason> | throttled | closed:<code> | timeout | error:<what>
    frames_sent: list[bytes] = field(default_factory=list)
    answers: int = 0  # "frame" answers
    frame_errors: list[str] = field(default_factory=list)  # "error" codes (busy, duplicate, ...)
    refused: list[int] = field(default_factory=list)  # indexes in frames_sent of frames refused unanalysed
    page_s: float | None = None  # GET /login/face/
    connect_s: float | None = None  # websocket handshake + hello
    first_frame_to_ticket_s: float | None = None
    round_trips_ms: list[float] = field(default_factory=list)  # frame sent → its answer
    # time.monotonic() of each "frame" answer (not the final one: it waits for database writes first)
    answered_at: list[float] = field(default_factory=list)
    redeem_s: float | None = None  # POST the ticket → redirect home
    redeemed: bool = False
    # server CPU s (when measured): websocket (page load → websocket closed), total (→ ticket redeemed),
    # waiting_for_cpu (daphne's threads runnable but not running, page load → websocket closed)
    cpu: dict[str, float] = field(default_factory=dict)
    started: float = 0.0  # time.monotonic() at the page load
    first_frame_at: float | None = None  # time.monotonic() when the first frame was sent
    ended_at: float | None = None  # time.monotonic() when the final message (or close) arrived
    finished: float = 0.0  # time.monotonic() after the ticket was redeemed (or the attempt ended)

    @property
    def ok(self) -> bool:
        return self.outcome == "success" and self.redeemed

    @property
    def analysed(self) -> list[bytes]:
        """The frames the server analysed (sent minus those refused unanalysed: busy, too fast, repeated)."""
        refused = set(self.refused)
        return [f for i, f in enumerate(self.frames_sent) if i not in refused]

    @property
    def frames_analysed(self) -> int:
        return len(self.frames_sent) - len(set(self.refused))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names; the last value of a repeated header
    text: str


class Browser:
    """The HTTP side of one simulated browser: a kept-alive loopback connection and the cookies it was
    given (by name; a cookie set with ``Max-Age=0`` is dropped, as Django deletes one).

    Lean on purpose: the clients share the 2-core machine with the server under test. ``requests`` (a
    cookie-policy engine, redirect and settings merging) cost each sign-in 12 ms of the client's CPU
    (yappi: two thirds of it in requests), a third of what daphne spends serving that sign-in.
    """

    def __init__(self, base_url: str, *, timeout: float = 30) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.base_url, self.host, self.port, self.timeout = base_url, parts.hostname, parts.port, timeout
        self.cookies: dict[str, str] = {}
        self._connection: http.client.HTTPConnection | None = None

    def get(self, path: str, **headers: str) -> Reply:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, form: dict[str, str], **headers: str) -> Reply:
        return self.request("POST", path, form=form, headers=headers)

    def request(self, method: str, path: str, *, form: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> Reply:
        body = urllib.parse.urlencode(form).encode() if form is not None else None
        sent = {"Host": f"{self.host}:{self.port}", **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            sent["Cookie"] = self.cookie_header()
        for retry in (True, False):
            reused = self._connection is not None
            if not reused:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._connection.request(method, path, body=body, headers=sent)
                response = self._connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if not (reused and retry):  # only a kept-alive connection the server closed is retried
                    raise
        for value in response.headers.get_all("Set-Cookie") or ():
            name, _, rest = value.partition("=")
            if "max-age=0" in rest.lower():
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        if response.will_close:
            self.close()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, headers, data.decode("utf-8", "replace"))

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


async def sign_in(
    base_url: str,
    source: FrameSource,
    *,
    timeout: float = 45.0,
    redeem: bool = True,
    server_pid: int | None = None,
    answer_window: float = ANSWER_WINDOW_S,
) -> SignIn:
    """One browser sign-in, start to finish. Never raises for the portal's answers; see ``SignIn.outcome``.

    With ``server_pid``, the server's CPU time is read before the page load, after the websocket closes
    and after the ticket is redeemed (meaningful only when this is the only client).
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, WebSocketException

    result = SignIn(started=time.monotonic())
    cpu0 = cpu_seconds(server_pid) if server_pid else None
    sched0 = thread_sched(server_pid) if server_pid else None
    browser = Browser(base_url)
    try:
        t0 = time.perf_counter()
        page = await asyncio.to_thread(browser.get, "/login/face/")
        result.page_s = time.perf_counter() - t0
        ws_path = re.search(r'data-ws-path="([^"]+)"', page.text)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        if page.status != 200 or ws_path is None or csrf is None:
            result.outcome = f"error:page_{page.status}"
            return result
        cookie = browser.cookie_header()
        ws_url = base_url.replace("http://", "ws://", 1) + ws_path.group(1)
        ticket = None
        deadline = time.monotonic() + timeout
        t0 = time.perf_counter()
        async with connect(
            ws_url, origin=base_url, additional_headers={"Cookie": cookie}, proxy=None, open_timeout=timeout, max_size=2**20
        ) as ws:
            inbox: asyncio.Queue = asyncio.Queue()

            async def read() -> None:
                try:
                    async for message in ws:
                        await inbox.put((time.perf_counter(), json.loads(message) if isinstance(message, str) else {}))
                except ConnectionClosed:
                    pass
                await inbox.put((time.perf_counter(), {"type": "_closed", "code": ws.close_code}))

            reader = asyncio.create_task(read())
            try:
                _, hello = await asyncio.wait_for(inbox.get(), timeout)
                result.connect_s = time.perf_counter() - t0
                if hello.get("type") != "hello":
                    result.outcome = _ending(hello)
                    return result
                interval = max(0.05, hello.get("frame_interval_ms", 150) / 1000)
                step = None
                index, awaiting, last_sent, first_sent = 0, False, float("-inf"), None
                last_colour, colour_at = None, float("-inf")
                if hasattr(source, "observe"):
                    source.observe(hello)
                in_flight: list[tuple[float, int]] = []  # (sent at, index in frames_sent), oldest first
                more = True
                while True:
                    now = time.perf_counter()
                    if time.monotonic() > deadline:
                        result.outcome = "timeout"
                        break
                    send_at = last_sent + (max(interval, answer_window) if awaiting else interval)
                    send_at = max(send_at, colour_at + FLASH_SETTLE_S)  # face_login.js: a new colour on the face first
                    if more and now >= send_at:
                        data = source.frame(index, step)
                        if data is None:
                            more = False
                            continue
                        try:
                            await ws.send(data)
                        except ConnectionClosed:  # the server ended the attempt meanwhile: read why
                            more = False
                            continue
                        last_sent = time.perf_counter()
                        if first_sent is None:
                            first_sent, result.first_frame_at = last_sent, time.monotonic()
                        in_flight.append((last_sent, len(result.frames_sent)))
                        result.frames_sent.append(data)
                        awaiting, index = True, index + 1
                        continue
                    wait = (send_at - now) if more else deadline - time.monotonic()
                    try:
                        at, message = await asyncio.wait_for(inbox.get(), max(0.001, min(wait, deadline - time.monotonic())))
                    except TimeoutError:
                        continue
                    kind = message.get("type")
                    if kind in ("success", "failed", "throttled", "_closed"):
                        result.ended_at = time.monotonic()
                    if kind == "frame":
                        result.answered_at.append(time.monotonic() - (time.perf_counter() - at))
                        result.answers += 1
                        awaiting = False
                        if in_flight:
                            result.round_trips_ms.append((at - in_flight.pop(0)[0]) * 1000)
                        step = (message.get("challenge") or {}).get("step")
                        colour = (message.get("challenge") or {}).get("flash")
                        if colour and colour != last_colour:
                            last_colour, colour_at = colour, time.perf_counter()
                        if hasattr(source, "observe"):
                            source.observe(message)
                    elif kind == "error":
                        code = message.get("code", "?")
                        result.frame_errors.append(code)
                        if code not in ("busy", "too_fast"):  # face_login.js: the frame in flight still gets its answer
                            awaiting = False
                            if in_flight:
                                refused = in_flight.pop(0)[1]
                                if code in UNANALYSED:
                                    result.refused.append(refused)
                        elif in_flight:
                            result.refused.append(in_flight.pop()[1])  # the refused frame is the last one sent
                    elif kind == "success":
                        result.first_frame_to_ticket_s = at - first_sent if first_sent else None
                        ticket = message["ticket"]
                        result.outcome = "success"
                        break
                    else:
                        result.outcome = _ending(message)
                        break
            finally:
                reader.cancel()
        if server_pid:
            result.cpu["websocket"] = cpu_seconds(server_pid) - cpu0
            # Time daphne's threads were runnable but waited for a CPU (other processes on the machine).
            result.cpu["waiting_for_cpu"] = sum(w - sched0.get(t, (0.0, 0.0))[1] for t, (_, w) in thread_sched(server_pid).items())
        if ticket is not None and redeem:
            t0 = time.perf_counter()
            done = await asyncio.to_thread(
                browser.post,
                "/login/face/complete/",
                {"ticket": ticket, "csrfmiddlewaretoken": csrf.group(1), "next": ""},
                Origin=base_url,
                Referer=f"{base_url}/login/face/",
            )
            result.redeem_s = time.perf_counter() - t0
            # Redeemed: redirected home with a fresh (rotated) session cookie; refused: back to /login/face/.
            result.redeemed = done.status == 302 and "/login/face" not in done.headers.get("location", "")
            if not result.redeemed:
                result.outcome = f"error:redeem_{done.status}"
        if server_pid:
            result.cpu["total"] = cpu_seconds(server_pid) - cpu0
    except (OSError, http.client.HTTPException, WebSocketException, TimeoutError) as exc:  # e.g. the handshake refused (Origin)
        result.outcome = f"error:{type(exc).__name__}"
    finally:
        browser.close()
        result.finished = time.monotonic()
    return result


def _ending(message: dict) -> str:
    kind = message.get("type")
    if kind == "failed":
        return f"failed:{message.get('reason')}"
    if kind == "throttled":
        return "throttled"
    if kind == "_closed":
        return f"closed:{message.get('code')}"
    return f"error:{kind}"


# --- the pipeline in this process, exactly as daphne builds it -----------------------------------------


def server_engine(portal: Portal, overrides: dict[str, str]):
    """daphne's ``Engine`` (analyser, embedder, thread settings, active classifier), built in this process
    through ``facelogin.services.recognition`` from the portal's own environment, so the bare pipeline
    is the server's, whatever its settings say. Once per process (it configures Django); returns the
    engine and what it runs with."""
    env = {**portal.env, **overrides}
    os.environ.update(env)
    import django

    django.setup()
    import torch

    from facelogin.services.recognition import Engine, face_settings

    if "OMP_NUM_THREADS" in overrides:  # read by torch at import; mirror it if torch came in earlier
        torch.set_num_threads(int(overrides["OMP_NUM_THREADS"]))
    engine = Engine()
    engine.warm_up()
    engine.current_model()  # the classifier version daphne serves, from the portal's database: its batches vote
    config = face_settings()
    info = {
        "embedder": repr(engine.analyzer.embedder),
        "torch_intra_op_threads": torch.get_num_threads(),
        "FACELOGIN_TORCH_THREADS": config["TORCH_THREADS"],
        "FACELOGIN_RECOGNITION_THREADS": config["RECOGNITION_THREADS"],
        "login_detect_side": engine.analyzer.config.login_detect_side,
    }
    return engine, info


def engine_line(info: dict) -> str:
    return (
        f"analyser as daphne builds it: {info['embedder']}, torch intra-op threads {info['torch_intra_op_threads']} "
        f"(FACELOGIN_TORCH_THREADS={info['FACELOGIN_TORCH_THREADS']}), recognition threads {info['FACELOGIN_RECOGNITION_THREADS']}, "
        f"login frames detected at {info['login_detect_side'] or 'the detector default'} px"
    )


def parse_env(pairs: Sequence[str]) -> dict[str, str]:
    """``--server-env NAME=VALUE`` arguments."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--server-env wants NAME=VALUE, not {pair!r}")
        out[name] = value
    return out


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def machine_load() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine is shared: read the figures against them)."""
    return [round(v, 2) for v in os.getloadavg()]


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    tmp.replace(path)  # whole or not at all: bench.enrol_scale's processes poll for each other's files


def print_settings(settings: dict[str, str], printer: Callable[[str], None] = print) -> None:
    printer("portal settings beyond the defaults: " + ", ".join(f"{k}={v}" for k, v in settings.items()))


def add_portal_options(parser) -> None:
    """The options every benchmark that runs a live portal takes."""
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds one sign-in may take before it counts as failed")
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for daphne, mirrored in this process (repeatable)"
    )
    parser.add_argument("--portal-dir", type=Path, help="keep the seeded portal here and reuse it next time (default: a temp dir)")
