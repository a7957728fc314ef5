from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from facelogin.models import FaceTicket, SignIn
from facelogin.services.tickets import ticket_issue


def _session_key(client: Client) -> str:
    client.get("/login/face/")  # the page creates the session the websocket is bound to
    return client.session.session_key


@pytest.fixture
def student(make_student):
    return make_student("20260001", full_name="Kim Minji")


def test_a_ticket_signs_the_browser_in_and_rotates_the_session(client, student):
    key = _session_key(client)
    ticket = ticket_issue(student=student, session_key=key, scores={"similarity": 0.9})
    response = client.post("/login/face/complete/", {"ticket": ticket.token})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.session.session_key != key  # no fixation: login() cycled the key
    home = client.get("/").content.decode()
    assert "Kim Minji" in home and "20260001" in home
    sign_in = SignIn.objects.get()
    assert sign_in.method == "face" and sign_in.scores == {"similarity": 0.9}


def test_redeeming_a_ticket_writes_each_row_once(client, student, transactional_db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    key = _session_key(client)
    ticket = ticket_issue(student=student, session_key=key, scores={})
    with CaptureQueriesContext(connection) as queries:
        client.post("/login/face/complete/", {"ticket": ticket.token})
    statements = [q["sql"].split()[0] for q in queries if not q["sql"].startswith(("BEGIN", "COMMIT"))]
    # The ticket read and claimed, the browser's session read, rotated and stored, the last login and
    # the sign-in recorded: no savepoints, no row written twice.
    assert statements == ["SELECT", "UPDATE", "SELECT", "DELETE", "UPDATE", "INSERT", "INSERT"], statements
    assert client.session.get("_auth_user_id") == str(student.user.pk)


def test_a_ticket_is_refused_the_second_time(client, student):
    ticket = ticket_issue(student=student, session_key=_session_key(client), scores={})
    client.post("/login/face/complete/", {"ticket": ticket.token})
    client.post("/logout/")
    response = client.post("/login/face/complete/", {"ticket": ticket.token}, follow=True)
    assert "already used" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_late_ticket_is_refused(client, student):
    ticket = ticket_issue(student=student, session_key=_session_key(client), scores={})
    FaceTicket.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.post("/login/face/complete/", {"ticket": ticket.token}, follow=True)
    assert "took too long" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_ticket_from_another_browser_session_is_refused(client, student):
    other = Client()
    ticket = ticket_issue(student=student, session_key=_session_key(other), scores={})
    _session_key(client)
    response = client.post("/login/face/complete/", {"ticket": ticket.token}, follow=True)
    assert "another browser" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # ...and the rightful browser can still use it.
    assert other.post("/login/face/complete/", {"ticket": ticket.token})["Location"] == "/"


@pytest.mark.parametrize("change", ["suspended", "graduated", "blocked", "deactivated"])
def test_a_ticket_of_a_student_who_may_no_longer_sign_in_is_refused(client, student, change):
    ticket = ticket_issue(student=student, session_key=_session_key(client), scores={})
    if change == "blocked":
        student.face_login_blocked = True
    elif change == "deactivated":
        student.user.is_active = False
        student.user.save()
    else:
        student.status = change
    student.save()
    response = client.post("/login/face/complete/", {"ticket": ticket.token}, follow=True)
    assert "cannot sign in" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_an_unknown_or_missing_ticket_is_refused(client, student):
    _session_key(client)
    for data in ({"ticket": "made-up"}, {}):
        response = client.post("/login/face/complete/", data, follow=True)
        assert "not valid" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_completion_view_needs_post_and_csrf(student):
    client = Client(enforce_csrf_checks=True)
    ticket = ticket_issue(student=student, session_key=_session_key(client), scores={})
    assert client.get("/login/face/complete/").status_code == 405
    assert client.post("/login/face/complete/", {"ticket": ticket.token}).status_code == 403


def test_only_hashes_are_stored(client, student):
    ticket = ticket_issue(student=student, session_key=_session_key(client), scores={})
    row = FaceTicket.objects.get()
    assert ticket.token not in row.token_hash and client.session.session_key not in row.session_hash


def test_a_sign_in_that_cannot_be_recorded_leaves_the_ticket_unused(client, student, monkeypatch):
    # The ticket, the rotated session and the sign-in record are one transaction: if the record fails,
    # the ticket is not burnt and the browser is not signed in.
    key = _session_key(client)
    ticket = ticket_issue(student=student, session_key=key, scores={})

    def broken(**kwargs):
        raise RuntimeError("the sign-in record could not be written")

    monkeypatch.setattr("facelogin.signals.record_sign_in", broken)
    client.raise_request_exception = True
    with pytest.raises(RuntimeError):
        client.post("/login/face/complete/", {"ticket": ticket.token})
    assert FaceTicket.objects.get().used_at is None
    assert not SignIn.objects.exists()
    monkeypatch.undo()
    response = client.post("/login/face/complete/", {"ticket": ticket.token})
    assert response.status_code == 302 and response["Location"] == "/"  # the same ticket still works
