"""The production topology of docs/deployment.md on one machine: PostgreSQL, Redis, TWO daphne
processes (separate ports, the same environment) and one Celery worker.

A registrar enrols three students and starts a retrain through daphne 2's admin; a student then signs
in by face through daphne 1, which was already running (and had no classifier at all) before: every
daphne process follows the active classifier version in the database, without a restart.
"""

from __future__ import annotations

import re
import time

import pytest

from tests import faces
from tests.integration.conftest import PROCESS_SETTINGS, AdminSession, Database, create_people, face_sign_in, three_johns
from tests.live import MONITORING, alert_names, manage, portal_env, scrape_metrics, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.slow]

PEOPLE = three_johns("2026P")
SETTINGS = PROCESS_SETTINGS


def test_a_retrain_started_from_daphne_2_signs_students_in_through_daphne_1_without_a_restart(
    tmp_path_factory, faces_dir, redis_server, postgres_server, daphne_process, celery_worker, prometheus_server
):
    timings = {}
    started = time.monotonic()
    env = portal_env(
        tmp_path_factory.mktemp("portal") / "data", DATABASE_URL=postgres_server, REDIS_URL=redis_server, **SETTINGS
    )
    manage(env, "migrate", "--noinput")
    ids = create_people(env, PEOPLE)
    db = Database(postgres_url=postgres_server)
    assert db.value("SELECT COUNT(*) FROM facelogin_student") == 3  # in PostgreSQL, not in a file
    first, second = daphne_process(env), daphne_process(env)
    worker = celery_worker(env, name="w1")
    first_pid = first.process.pid
    timings["start-up"] = time.monotonic() - started

    # Daphne 1 is up before any classifier exists: face sign-in is refused as unavailable.
    person = PEOPLE[1]
    held_out = faces.held_out_photos(faces.JOHNS / person.folder)
    refused = face_sign_in(first.url, held_out, max_frames=1)
    assert refused.final == {"type": "failed", "reason": "unavailable"} and refused.close_code == 4003, str(refused)

    # The registrar enrols three students through daphne 2's admin; the worker processes the photos.
    mark = time.monotonic()
    admin = AdminSession(second.url)
    for student in PEOPLE:
        photos = faces.enrol_photos(faces.JOHNS / student.folder)
        response = admin.upload_photos(ids[student.number], student, photos)
        assert response.status_code == 302, response.text[:3000]
    enrolled = wait_until(
        lambda: db.enrolment_finished(18),
        timeout=300,
        interval=0.5,
        message=f"enrolment not finished: photos {db.photos()}, versions {db.versions()}",
    )
    assert [p["state"] for p in db.photos()] == ["accepted"] * 18
    assert (enrolled["gallery_students"], enrolled["gallery_embeddings"]) == (3, 18)
    timings["enrolment"] = time.monotonic() - mark

    # "Retrain now" on daphne 2's classifier versions page.
    mark = time.monotonic()
    response = admin.run_action("/admin/facelogin/classifierversion/", "retrain_now", [enrolled["id"]])
    assert response.status_code == 302, response.text[:3000]
    retrained = wait_until(
        lambda: (v := db.active_version()) is not None and v["id"] > enrolled["id"] and v,
        timeout=180,
        interval=0.5,
        message=f"the retrain started from daphne 2 never became active: {db.versions()}",
    )
    assert retrained["status"] == "ready" and retrained["trigger"] == "requested by staff"
    assert (retrained["gallery_students"], retrained["gallery_embeddings"]) == (3, 18)
    timings["retrain"] = time.monotonic() - mark

    # A student signs in through daphne 1, with photos the classifier never saw.
    attempt = face_sign_in(first.url, held_out)
    assert attempt.final.get("type") == "success" and attempt.close_code == 1000, str(attempt)
    home = attempt.home
    assert home.status_code == 200 and home.url == f"{first.url}/", (home.status_code, home.url)
    assert f'id="student-name">{person.name}<' in home.text
    assert f'id="student-number">{person.number}<' in home.text
    timings["sign-in"] = attempt.seconds

    # Daphne 1 ran throughout, loaded the version trained at daphne 2's request, and served it.
    assert first.alive() and first.process.pid == first_pid
    assert f"face classifier version now {retrained['id']}" in first.log_text()
    assert "/ws/face-login/" not in second.log_text()  # the websocket never went to daphne 2
    attempts = db.rows(
        "SELECT a.outcome, s.student_number FROM facelogin_faceattempt a "
        "LEFT JOIN facelogin_student s ON s.id = a.student_id ORDER BY a.id"
    )
    assert attempts == [
        {"outcome": "unavailable", "student_number": None},
        {"outcome": "ticket_issued", "student_number": person.number},
    ]
    sign_ins = db.rows(
        "SELECT si.method FROM facelogin_signin si JOIN facelogin_student s ON s.user_id = si.user_id "
        "WHERE s.student_number = ?",
        (person.number,),
    )
    assert sign_ins == [{"method": "face"}]
    assert worker.alive()

    # Each daphne keeps its own figures for the operations team: daphne 1 judged both attempts and
    # analysed the frames with the retrained version; daphne 2 judged nothing.
    token = SETTINGS["FACELOGIN_METRICS_TOKEN"]
    served, idle = scrape_metrics(first.url, token), scrape_metrics(second.url, token)
    assert served[("facelogin_face_attempts_total", (("result", "unavailable"),))] == 1
    assert served[("facelogin_face_attempts_total", (("result", "recognised"),))] == 1
    assert served[("facelogin_frames_analysed_total", ())] >= 3
    assert sum(v for (name, _), v in idle.items() if name == "facelogin_face_attempts_total") == 0
    assert idle.get(("facelogin_frames_analysed_total", ()), 0) == 0
    assert served[("facelogin_classifier_version", ())] == retrained["id"]
    assert served[("facelogin_enrolment_photos_waiting", (("state", "queued"),))] == 0

    # A real Prometheus, configured as docs/monitoring/prometheus.yml says, scrapes both processes with
    # the token and evaluates the shipped alerts on what it got: every metric an alert names is there,
    # every rule evaluates without error, and a healthy portal raises none.
    mark = time.monotonic()
    first_target, second_target = f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"
    prometheus = prometheus_server([first_target, second_target], token)
    wait_until(
        lambda: len(prometheus.query('up{job="portal-daphne"} == 1')) == 2,
        timeout=30,
        message=f"Prometheus did not scrape both daphnes: {prometheus.query('up')}",
    )
    recognised = prometheus.query(f'facelogin_face_attempts_total{{result="recognised", instance="{first_target}"}}')
    assert list(recognised.values()) == [1.0], recognised
    assert prometheus.query(f'facelogin_face_attempts_total{{instance="{second_target}"}} > 0') == {}
    exposed = {dict(labels)["__name__"] for labels in prometheus.query('group by (__name__) ({__name__=~"facelogin_.+"})')}
    named = set(re.findall(r"\bfacelogin_[a-z_]+", (MONITORING / "alerts.yml").read_text()))
    assert named and named <= exposed, f"alerts name metrics the portal does not expose: {sorted(named - exposed)}"
    rules = wait_until(
        lambda: (found := prometheus.rules()) and all(rule["health"] == "ok" for rule in found) and found,
        timeout=30,
        message=f"not every alert rule evaluated cleanly: {prometheus.rules()}",
    )
    assert sorted(rule["name"] for rule in rules) == sorted(alert_names())
    time.sleep(2)  # two more evaluations on scraped data
    assert prometheus.query('ALERTS{alertstate="firing"}') == {}
    timings["prometheus"] = time.monotonic() - mark
    print("\n" + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))
