"""Enrolment and retraining in a real Celery worker behind a real Redis broker.

One portal per module: SQLite in a temporary data directory (the worker, daphne and this test open
the same file), ``REDIS_URL`` pointing at a private ``redis-server`` (so Celery is not eager: the web
process only queues work), one daphne process, and ``celery -A portal worker`` started and killed
by the tests. Registrar staff enrol photos through the real admin over HTTP; students sign in over the
real websocket protocol.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import faces
from tests.integration.conftest import (
    AdminSession,
    CeleryWorker,
    Database,
    PROCESS_SETTINGS,
    Person,
    create_people,
    face_sign_in,
    three_johns,
)
from tests.live import DaphneProcess, free_port, manage, portal_env, scrape_metrics, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PEOPLE = three_johns("2026J")
SETTINGS = PROCESS_SETTINGS
SUCCEEDED = r"Task facelogin\.tasks\.{task}\[[0-9a-f-]+\] succeeded"


def person_dir(person: Person) -> Path:
    return faces.JOHNS / person.folder


@dataclass
class Portal:
    env: dict[str, str]
    redis_url: str
    db: Database
    daphne: DaphneProcess
    admin: AdminSession
    ids: dict[str, int]  # student number → student id


@pytest.fixture(scope="module")
def portal(tmp_path_factory, faces_dir, redis_server, daphne_process) -> Portal:
    data_dir = tmp_path_factory.mktemp("portal") / "data"
    env = portal_env(data_dir, REDIS_URL=redis_server, **SETTINGS)
    manage(env, "migrate", "--noinput")
    ids = create_people(env, PEOPLE)
    daphne = daphne_process(env)
    return Portal(env, redis_server, Database(sqlite_path=data_dir / "portal.sqlite3"), daphne, AdminSession(daphne.url), ids)


@dataclass
class Enrolment:
    """What was seen while the photos went from the admin to the worker."""

    statuses: list[int] = field(default_factory=list)  # the admin's answers to the uploads
    right_after_upload: list[dict] = field(default_factory=list)  # photo rows, no worker running
    broker_queue_length: int = 0  # messages waiting in Redis for a worker
    without_worker: list[dict] = field(default_factory=list)  # photo rows, a while later, still no worker
    versions_without_worker: list[dict] = field(default_factory=list)
    metrics_without_worker: dict = field(default_factory=dict)  # daphne's /metrics/ meanwhile
    worker: CeleryWorker | None = None
    worker_seconds: float = 0.0  # from starting the worker to the new classifier being active


@pytest.fixture(scope="module")
def enrolled(portal: Portal, celery_worker) -> Enrolment:
    """Upload 6 photos of each of 3 students in the admin while no worker runs; then start one."""
    import redis

    seen = Enrolment()
    for person in PEOPLE:
        response = portal.admin.upload_photos(portal.ids[person.number], person, faces.enrol_photos(person_dir(person)))
        assert response.status_code == 302, response.text[:3000]
        seen.statuses.append(response.status_code)
    seen.right_after_upload = portal.db.photos()
    seen.broker_queue_length = redis.Redis.from_url(portal.redis_url).llen("celery")
    time.sleep(3)  # well past the 1 s retrain debounce: in-process (eager) tasks would have run by now
    seen.without_worker = portal.db.photos()
    seen.versions_without_worker = portal.db.versions()
    seen.metrics_without_worker = scrape_metrics(portal.daphne.url, SETTINGS["FACELOGIN_METRICS_TOKEN"])

    started = time.monotonic()
    seen.worker = celery_worker(portal.env, name="w1")
    wait_until(
        lambda: portal.db.enrolment_finished(18),
        timeout=300,
        interval=0.5,
        message=f"enrolment not finished: photos {portal.db.photos()}, versions {portal.db.versions()}",
    )
    seen.worker_seconds = time.monotonic() - started
    return seen


def test_admin_uploads_are_enrolled_by_the_worker_and_the_student_signs_in_by_websocket(portal, enrolled):
    # The web process only stored the photos and queued the work in Redis ...
    assert enrolled.statuses == [302, 302, 302]
    assert len(enrolled.right_after_upload) == 18
    assert {p["state"] for p in enrolled.right_after_upload} == {"queued"}
    assert enrolled.broker_queue_length >= 18  # 18 photo tasks (+ the debounced retrains)
    assert {p["state"] for p in enrolled.without_worker} == {"queued"}, enrolled.without_worker
    assert enrolled.versions_without_worker == []
    # The operations team's monitoring sees the backlog, and how long the oldest photo has waited.
    waiting = enrolled.metrics_without_worker
    assert waiting[("facelogin_enrolment_photos_waiting", (("state", "queued"),))] == 18
    assert waiting[("facelogin_enrolment_oldest_waiting_seconds", ())] >= 3
    # ... and that the retrain the uploads asked for (1 s debounce) has not been answered: no worker retrains.
    assert waiting[("facelogin_retrain_waiting_seconds", ())] >= 2
    assert waiting[("facelogin_retrains_running", ())] == 0
    assert waiting[("facelogin_classifier_active_version", ())] == 0

    # ... and the worker did the work: every photo accepted exactly once.
    photos = portal.db.photos()
    assert [(p["state"], p["reason"]) for p in photos] == [("accepted", "")] * 18, photos
    # One "enrol" audit entry per photo: each was accepted once. (EnrolmentPhoto.attempts cannot
    # tell: photo_process's final save() writes back the attempts value it loaded.)
    assert sorted(a["detail"]["photo"] for a in portal.db.enrol_actions()) == [p["id"] for p in photos]
    worker_log = enrolled.worker.log_text()
    assert len(re.findall(SUCCEEDED.format(task="process_enrolment_photo"), worker_log)) == 18
    assert re.search(SUCCEEDED.format(task="retrain_classifier"), worker_log)

    active = portal.db.active_version()
    assert active["status"] == "ready"
    assert (active["gallery_students"], active["gallery_embeddings"]) == (3, 18)
    print(f"\nworker enrolled 18 photos and activated v{active['id']} in {enrolled.worker_seconds:.1f} s")

    # A student signs in by face with photos the classifier never saw, over the real websocket.
    person = PEOPLE[0]
    attempt = face_sign_in(portal.daphne.url, faces.held_out_photos(person_dir(person)))
    assert attempt.final.get("type") == "success" and attempt.close_code == 1000, str(attempt)
    home = attempt.home
    assert home.status_code == 200 and home.url == f"{portal.daphne.url}/", (home.status_code, home.url)
    assert f'id="student-name">{person.name}<' in home.text
    assert f'id="student-number">{person.number}<' in home.text
    print(f"signed in by websocket after {attempt.frames_sent} frames in {attempt.seconds:.1f} s")
    issued = portal.db.rows(
        "SELECT s.student_number FROM facelogin_faceattempt a JOIN facelogin_student s ON s.id = a.student_id "
        "WHERE a.outcome = 'ticket_issued'"
    )
    assert issued == [{"student_number": person.number}]
    sign_ins = portal.db.rows(
        "SELECT si.method FROM facelogin_signin si JOIN facelogin_student s ON s.user_id = si.user_id "
        "WHERE s.student_number = ?",
        (person.number,),
    )
    assert sign_ins == [{"method": "face"}]

    # ... and so does the operations team's monitoring of this daphne: the backlog gone, one student
    # recognised, the frames analysed, the version the worker trained loaded.
    metrics = scrape_metrics(portal.daphne.url, SETTINGS["FACELOGIN_METRICS_TOKEN"])
    assert metrics[("facelogin_enrolment_photos_waiting", (("state", "queued"),))] == 0
    assert metrics[("facelogin_enrolment_oldest_waiting_seconds", ())] == 0
    assert metrics[("facelogin_face_attempts_total", (("result", "recognised"),))] == 1
    assert metrics[("facelogin_face_sign_in_seconds_count", ())] == 1
    assert metrics[("facelogin_frames_analysed_total", ())] >= 3
    assert metrics[("facelogin_classifier_version", ())] == active["id"]
    assert metrics[("facelogin_classifier_students", ())] == 3
    # The retraining, read from the database: every request answered (a debounced one may still be
    # finishing), the newest retrain succeeded, and the version active is the one this daphne decides with.
    token = SETTINGS["FACELOGIN_METRICS_TOKEN"]
    settled = wait_until(
        lambda: (m := scrape_metrics(portal.daphne.url, token))[("facelogin_retrain_waiting_seconds", ())] == 0 and m,
        timeout=120,
        message=f"a retrain request stays unanswered: versions {portal.db.versions()}",
    )
    assert settled[("facelogin_retrains_running", ())] == 0
    assert settled[("facelogin_retrain_last_result", (("result", "ready"),))] == 1
    assert settled[("facelogin_classifier_active_version", ())] == portal.db.active_version()["id"]


def test_a_face_sign_in_socket_stays_open_while_the_student_gets_ready(portal, enrolled):
    """With REDIS_URL every consumer also listens on the Redis channel layer, which polls Redis with a
    5 s blocking read. A student who needs more than 5 s (finding the camera, the liveness challenge)
    must still get answers, not a 1011 close."""
    import requests
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    http = requests.Session()
    http.get(f"{portal.daphne.url}/login/face/", timeout=60).raise_for_status()
    cookie = "; ".join(f"{name}={value}" for name, value in http.cookies.items())
    url = portal.daphne.url.replace("http://", "ws://") + "/ws/face-login/"
    frame = faces.webcam_frame(faces.held_out_photos(person_dir(PEOPLE[0]))[0])
    with connect(url, origin=portal.daphne.url, additional_headers={"Cookie": cookie}, open_timeout=60) as socket:
        assert json.loads(socket.recv(timeout=60))["type"] == "hello"
        time.sleep(7)  # longer than the channel layer's 5 s poll; well inside the 30 s attempt
        try:
            socket.send(frame)
            answer = json.loads(socket.recv(timeout=60))
        except ConnectionClosed as closed:
            pytest.fail(f"the server closed the idle sign-in socket: {closed!r}\n{portal.daphne.log_tail(40)}")
    assert answer["type"] == "frame" and answer["faces"] == 1, answer


def test_a_worker_killed_mid_retrain_is_replaced_and_nothing_is_lost_or_doubled(portal, enrolled, celery_worker):
    import redis

    broker = redis.Redis.from_url(portal.redis_url)
    db = portal.db
    enrolled.worker.stop()
    # This worker sleeps 6 s at the start of each training, so it can be killed inside one; the
    # 5 s visibility timeout lets the replacement take the unacknowledged retrain back quickly.
    crash_env = {**portal.env, "FACELOGIN_TRAINING_PAUSE_SECONDS": "6", "CELERY_VISIBILITY_TIMEOUT": "5"}
    doomed = celery_worker(crash_env, name="w1")
    token_before = db.value("SELECT token FROM facelogin_retrainrequest")
    previous = db.active_version()

    person = PEOPLE[2]
    extra_photo = faces.held_out_photos(person_dir(person))[-1]
    response = portal.admin.upload_photos(portal.ids[person.number], person, [extra_photo])
    assert response.status_code == 302, response.text[:3000]
    training = wait_until(
        lambda: [v for v in db.versions() if v["status"] == "training"],
        timeout=180,
        interval=0.2,
        message="no training started",
    )
    doomed.kill()  # SIGKILL of the worker and its pool child, 6 s of pause not yet over
    killed = training[0]
    token = db.value("SELECT token FROM facelogin_retrainrequest")
    # The upload asks for a retrain, and so does the worker once the photo is accepted (debounced:
    # only the newest token trains).
    assert token == token_before + 2 and killed["request_token"] == token

    # Nobody is left to finish it: the row says 'training', the retrain message is unacknowledged.
    time.sleep(1)
    assert next(v for v in db.versions() if v["id"] == killed["id"])["status"] == "training"
    assert db.active_version()["id"] == previous["id"]
    unacked = broker.zrange("unacked_index", 0, -1, withscores=True)
    assert len(unacked) == 1, unacked
    photos = db.photos()
    assert len(photos) == 19 and [p["source_name"] for p in photos].count(extra_photo.name) == 1

    # Kombu hands an unacknowledged message back once it is older than the visibility timeout; a
    # starting worker sweeps for such messages at once.
    delivered_at = unacked[0][1]
    time.sleep(max(0.0, delivered_at + 5.5 - time.time()))
    replacement = celery_worker({**portal.env, "CELERY_VISIBILITY_TIMEOUT": "5"}, name="w1")
    new = wait_until(
        lambda: (v := db.active_version()) is not None and v["id"] > killed["id"] and v,
        timeout=180,
        interval=0.5,
        message=f"no new active version after the restart: {db.versions()}",
    )

    versions = {v["id"]: v for v in db.versions()}
    assert versions[killed["id"]]["status"] == "failed"
    assert "abandoned" in versions[killed["id"]]["error"]
    assert new["status"] == "ready" and new["request_token"] == token  # the redelivered task itself
    assert (new["gallery_students"], new["gallery_embeddings"]) == (3, 19)
    assert [v["id"] for v in versions.values() if v["is_active"]] == [new["id"]]
    assert not any(v["status"] == "training" for v in versions.values())
    assert db.value("SELECT token FROM facelogin_retrainrequest") == token  # nobody asked again
    assert re.search(SUCCEEDED.format(task="retrain_classifier"), replacement.log_text(since_start=True))

    photos = db.photos()
    assert len(photos) == 19
    assert [p["state"] for p in photos] == ["accepted"] * 19, photos
    assert sorted(a["detail"]["photo"] for a in db.enrol_actions()) == [p["id"] for p in photos]
    wait_until(lambda: broker.zcard("unacked_index") == 0, timeout=30, message="the retrain was never acknowledged")


def test_an_upload_while_redis_is_down_is_kept_and_the_admin_answers(portal, daphne_process):
    import requests

    dead_redis = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    env = {**portal.env, "REDIS_URL": dead_redis, "FACELOGIN_WARM_UP": "0"}
    daphne = daphne_process(env)
    admin = AdminSession(daphne.url)
    person = PEOPLE[0]
    photo = faces.held_out_photos(person_dir(person))[0]
    before = {p["id"] for p in portal.db.photos()}

    started = time.monotonic()
    try:
        response = admin.upload_photos(portal.ids[person.number], person, [photo], timeout=90)
    except requests.Timeout:
        pytest.fail(f"the admin did not answer within 90 s with Redis down\n{daphne.log_tail()}")
    seconds = time.monotonic() - started

    new = [p for p in portal.db.photos() if p["id"] not in before]
    assert [(p["source_name"], p["state"]) for p in new] == [(photo.name, "queued")], new
    assert response.status_code < 500, f"HTTP {response.status_code} after {seconds:.1f} s\n{daphne.log_tail(80)}"
    assert response.status_code == 302
    page = admin.http.get(f"{daphne.url}/admin/facelogin/student/{portal.ids[person.number]}/change/", timeout=60)
    assert page.status_code == 200
    assert f'data-photo="{new[0]["id"]}" data-state="queued"' in page.text
