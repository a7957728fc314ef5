from __future__ import annotations

from django.core import mail

from facelogin.models import BiometricAction, SignIn
from facelogin.services.tickets import ticket_issue


def _face_sign_in(client, student, user_agent="Mozilla/5.0 TestBrowser"):
    client.get("/login/face/")
    ticket = ticket_issue(student=student, session_key=client.session.session_key, scores={})
    client.post("/login/face/complete/", {"ticket": ticket.token}, HTTP_USER_AGENT=user_agent)
    return SignIn.objects.filter(method="face").latest("at")


def test_a_student_reports_a_face_sign_in_that_was_not_them(client, make_student):
    student = make_student("20260001", email="minji@example.ac.kr")
    sign_in = _face_sign_in(client, student)
    page = client.get("/").content.decode()
    assert "This was not me" in page
    response = client.post(f"/sign-ins/{sign_in.pk}/not-me/", follow=True)
    student.refresh_from_db()
    assert student.face_login_blocked and str(sign_in.pk) in student.face_login_blocked_reason
    assert "switched off" in response.content.decode()
    assert BiometricAction.objects.filter(action="report", student=student).exists()
    # ...and no new face ticket is honoured for them.
    other = client.__class__()
    assert "cannot sign in" in other.post("/login/face/complete/", {"ticket": _ticket(other, student)}, follow=True).content.decode()


def _ticket(client, student):
    client.get("/login/face/")
    return ticket_issue(student=student, session_key=client.session.session_key, scores={}).token


def test_only_ones_own_face_sign_ins_can_be_reported(client, make_student):
    victim = make_student("20260001")
    sign_in = _face_sign_in(client, victim)
    client.post("/logout/")
    make_student("20260002")
    client.login(username="20260002", password="correct-horse-battery")
    response = client.post(f"/sign-ins/{sign_in.pk}/not-me/", follow=True)
    victim.refresh_from_db()
    assert not victim.face_login_blocked
    assert "could not be found" in response.content.decode()


def test_a_face_sign_in_from_a_new_browser_sends_an_email_once(client, make_student):
    student = make_student("20260001", email="minji@example.ac.kr")
    student.user.email = "minji@example.ac.kr"
    student.user.save()
    _face_sign_in(client, student, user_agent="Browser A")
    assert len(mail.outbox) == 1 and "Browser A" in mail.outbox[0].body
    client.post("/logout/")
    _face_sign_in(client, student, user_agent="Browser A")
    assert len(mail.outbox) == 1
