"""Fixtures for browser tests against a live portal: daphne + SQLite in a temp dir, real enrolled faces,
and headless Debian Chromium with a fake camera (tests/e2e/fakecam.py).

The portal is started once per session (~30 s: migrate, collectstatic, import_faces with real MTCNN +
FaceNet, daphne); each test launches its own browser, because the fake camera file is a launch flag.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import FACES, require_binary
from tests.e2e.fakecam import chromium_launch_kwargs, face_on_background, webcam_frames, write_y4m
from tests.live import BackgroundManage, DaphneProcess, manage, portal_env

# Three real people are enrolled with their first six photos (sorted by file name); their later
# photos are never seen by the classifier and serve as held-out sign-in faces.
ENROLLED = [
    ("2026J001", "John Salley", "John_Salley"),
    ("2026J002", "John Savage", "John_Savage"),
    ("2026J003", "John Schneider", "John_Schneider"),
]
ENROL_PHOTOS = 6
# What the live portal runs with: liveness (a random head-movement challenge) is off, as a
# still photo cannot pass; a small frame budget and deadline keep failing attempts short.
LIVE_SETTINGS = {
    "FACELOGIN_LIVENESS": "0",
    "FACELOGIN_MAX_FRAMES": "15",
    "FACELOGIN_ATTEMPT_SECONDS": "20",
    # Work-around for a tiny gallery: with 3 students (36 impostor pairs) facelogin/pipeline/calibrate.py
    # takes its threshold from a normal fit of those few scores, 0.837 at the default FPIR 0.001, above
    # the live similarity of every held-out photo (0.67-0.82: the johns crops are cut at the chin and
    # forehead, a webcam frame is not, and the same photo embeds ~0.75 alike in the two framings).
    # FPIR 0.05 gives ~0.59: held-out photos pass, unknown faces (at most 0.28) still fail. The
    # pipeline tests enrol 12 ORL people beside their subjects instead, which import_faces cannot
    # do within this module's time budget.
    "FACELOGIN_TARGET_FPIR": "0.05",
}
# daphne warms the models up in a background thread after it answers /healthz/; the first attempt's
# deadline would otherwise pay for that on a busy machine. This line of its log ends the loading.
WARM_UP_LOG_LINE = "face engine ready"  # logged by facelogin.services.recognition after warm-up


@dataclass
class EnrolledStudent:
    number: str
    name: str
    photos: list[Path]  # all of this person's photos, sorted

    @property
    def enrolled_photos(self) -> list[Path]:
        return self.photos[:ENROL_PHOTOS]

    @property
    def held_out_photos(self) -> list[Path]:
        return self.photos[ENROL_PHOTOS:]


@dataclass
class LivePortal:
    url: str
    data_dir: Path
    env: dict[str, str]
    daphne: DaphneProcess
    students: list[EnrolledStudent] = field(default_factory=list)
    import_output: str = ""

    @property
    def db_path(self) -> Path:
        return self.data_dir / "portal.sqlite3"

    def query(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        """Read the portal's SQLite database (read-only; WAL lets daphne keep writing)."""
        with sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10) as connection:
            connection.row_factory = sqlite3.Row
            return connection.execute(sql, params).fetchall()

    def face_attempts(self, since_id: int = 0) -> list[sqlite3.Row]:
        """Audit rows of face sign-in attempts after ``since_id``, with the matched student's number."""
        return self.query(
            "SELECT a.id, a.outcome, a.reason, a.frames, a.scores, a.challenge, s.student_number "
            "FROM facelogin_faceattempt a LEFT JOIN facelogin_student s ON s.id = a.student_id "
            "WHERE a.id > ? ORDER BY a.id",
            (since_id,),
        )

    def last_attempt_id(self) -> int:
        return self.query("SELECT COALESCE(MAX(id), 0) AS id FROM facelogin_faceattempt")[0]["id"]


def build_enrolment_dir(root: Path, faces: Path) -> tuple[Path, Path, list[EnrolledStudent]]:
    """DIR/<student number>/<photos> (copies of the first six photos) and a students CSV, in ``root``."""
    enrol_dir = root / "enrol"
    students = []
    for number, name, folder in ENROLLED:
        photos = sorted((faces / "johns" / folder).glob("*.jpg"))
        if len(photos) < ENROL_PHOTOS + 1:
            pytest.fail(f"{faces / 'johns' / folder} needs at least {ENROL_PHOTOS + 1} photos")
        target = enrol_dir / number
        target.mkdir(parents=True)
        for photo in photos[:ENROL_PHOTOS]:
            (target / photo.name).write_bytes(photo.read_bytes())
        students.append(EnrolledStudent(number, name, photos))
    csv_path = root / "students.csv"
    csv_path.write_text(
        "student_number,full_name,department\n" + "".join(f"{n},{name},Physics\n" for n, name, _ in ENROLLED),
        encoding="utf-8",
    )
    return enrol_dir, csv_path, students


def start_live_portal(
    root: Path, faces: Path = FACES, *, compile_translations: bool = False, **overrides: str
) -> Iterator[LivePortal]:
    """Set up a portal in ``root`` (database, static files, three enrolled students) and serve it.

    A generator: yields the LivePortal while daphne runs, stops daphne afterwards. Also used by
    bench/screenshots.py. ``compile_translations`` compiles locale/*.po first (``./portal.sh test``
    already does); ``overrides`` are extra environment variables for every portal process.
    """
    data_dir = root / "data"
    env = portal_env(data_dir, **{**LIVE_SETTINGS, **overrides})
    if compile_translations:
        manage(env, "compile_translations")
    # Overlapped where they can (2 cores): static files while the database is migrated, and daphne
    # (which loads and warms its models in the background) while import_faces enrols the photos.
    static = BackgroundManage(env, "collectstatic", "--noinput")
    try:
        manage(env, "migrate", "--noinput")
    finally:
        static.result()
    enrol_dir, csv_path, students = build_enrolment_dir(root, faces)
    with DaphneProcess(env, log_path=root / "daphne.log") as daphne:
        imported = manage(env, "import_faces", enrol_dir, "--create-students", "--students-csv", csv_path, timeout=900)
        portal = LivePortal(daphne.url, data_dir, env, daphne, students, imported.stdout)
        active = portal.query("SELECT id FROM facelogin_classifierversion WHERE is_active = 1")
        if not active:
            raise RuntimeError(f"import_faces left no active classifier version:\n{imported.stdout}\n{imported.stderr}")
        if env.get("FACELOGIN_WARM_UP", "1").lower() not in {"0", "false", "no", "off"}:
            try:
                daphne.wait_for_log(WARM_UP_LOG_LINE, timeout=90)
            except TimeoutError:
                print(f"note: no {WARM_UP_LOG_LINE!r} in the daphne log; the first attempt may be slow")
        yield portal


def _session_portal(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path, name: str, **overrides: str) -> Iterator[LivePortal]:
    started = time.monotonic()
    portal_gen = start_live_portal(tmp_path_factory.mktemp(name), faces_dir, **overrides)
    portal = next(portal_gen)
    print(f"\n{name} at {portal.url} ready in {time.monotonic() - started:.1f} s", flush=True)
    try:
        yield portal
    finally:
        portal_gen.close()


@pytest.fixture(scope="session")
def live_portal(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[LivePortal]:
    yield from _session_portal(tmp_path_factory, faces_dir, "live-portal")


# The same portal as ``live_portal`` (same students, photos and thresholds) with the liveness challenge
# on and device binding as production has them: two turns and the screen's colours take 20-30 frames.
LIVENESS_SETTINGS = {
    "FACELOGIN_LIVENESS": "1",
    "FACELOGIN_LIVENESS_FLASH": "1",
    "FACELOGIN_DEVICE_POLICY": "known",
    "FACELOGIN_MAX_FRAMES": "60",
    "FACELOGIN_ATTEMPT_SECONDS": "30",
}


@pytest.fixture(scope="session")
def liveness_portal(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> Iterator[LivePortal]:
    yield from _session_portal(tmp_path_factory, faces_dir, "liveness-portal", **LIVENESS_SETTINGS)


# Package scope, not session: Playwright's synchronous API keeps its event loop marked as running in the
# main thread while it is open, so asyncio tests collected after tests/e2e (tests/pipeline, tests/web)
# would fail with "Runner.run() cannot be called from a running event loop".
@pytest.fixture(scope="package")
def playwright_instance():
    require_binary("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture
def fake_camera(tmp_path: Path) -> Callable[..., Path]:
    """``fake_camera(photo, face_height=300)``: a y4m of the photo on a 640x480 background, with sensor noise."""

    def make(photo: Path, face_height: int = 300, name: str = "camera.y4m") -> Path:
        frame = face_on_background(photo, size=(640, 480), face_height=face_height)
        return write_y4m(tmp_path / name, webcam_frames(frame, count=20), fps=15)

    return make


@pytest.fixture
def launch_browser(playwright_instance, request, tmp_path) -> Iterator[Callable[..., object]]:
    """``launch_browser(video_file=None, fake_ui=True, **context_options)`` → a new page in a new browser.

    On a failing test the page's screenshot (in the test's tmp dir) and the daphne log tail are shown.
    """
    browsers = []
    pages = []

    def launch(video_file: Path | None = None, *, fake_ui: bool = True, fake_device: bool = True, **context_options):
        browser = playwright_instance.chromium.launch(
            **chromium_launch_kwargs(video_file, fake_ui=fake_ui, fake_device=fake_device)
        )
        browsers.append(browser)
        context = browser.new_context(viewport={"width": 1000, "height": 800}, **context_options)
        page = context.new_page()
        page.set_default_timeout(15_000)
        pages.append(page)
        return page

    yield launch

    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for index, page in enumerate(pages):
            try:
                shot = tmp_path / f"failure-{index}.png"
                page.screenshot(path=str(shot))
                print(f"\npage {index} at {page.url}; screenshot {shot}")
                print(page.locator("#face-status").inner_text(timeout=1000) if page.locator("#face-status").count() else "")
            except Exception as exc:  # noqa: BLE001 - diagnostics only
                print(f"no screenshot: {exc}")
        for name in ("live_portal", "liveness_portal"):
            portal = request.node.funcargs.get(name)
            if portal is not None:
                portal.daphne.print_log_tail(why="test failed")
    for browser in browsers:
        browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report
