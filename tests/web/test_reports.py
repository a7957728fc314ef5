from __future__ import annotations

import pytest
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


def test_a_face_sign_in_from_a_new_browser_sends_an_email_once(client, make_student, django_capture_on_commit_callbacks):
    student = make_student("20260001", email="minji@example.ac.kr")
    student.user.email = "minji@example.ac.kr"
    student.user.save()
    with django_capture_on_commit_callbacks(execute=False) as pending:
        _face_sign_in(client, student, user_agent="Browser A")
    assert len(mail.outbox) == 0 and len(pending) == 1  # sent once the sign-in is committed, not inside it
    pending[0]()
    assert len(mail.outbox) == 1 and "Browser A" in mail.outbox[0].body
    client.post("/logout/")
    with django_capture_on_commit_callbacks(execute=True):
        _face_sign_in(client, student, user_agent="Browser A")
    assert len(mail.outbox) == 1


def test_the_new_browser_email_is_in_the_language_of_the_sign_in_page(client, make_student, django_capture_on_commit_callbacks):
    student = make_student("20260001", email="minji@example.ac.kr")
    with django_capture_on_commit_callbacks(execute=True):
        client.get("/login/face/", HTTP_ACCEPT_LANGUAGE="ko")
        ticket = ticket_issue(student=student, session_key=client.session.session_key, scores={})
        client.post("/login/face/complete/", {"ticket": ticket.token}, HTTP_USER_AGENT="Browser K", HTTP_ACCEPT_LANGUAGE="ko")
    assert len(mail.outbox) == 1
    assert "New face sign-in" not in mail.outbox[0].subject and "Browser K" in mail.outbox[0].body


@pytest.fixture
def sign_in_while_mail_is_down(make_student, settings) -> SignIn:
    """A face sign-in from a new browser, with the mail server unreachable (nothing listens on port 9)."""
    student = make_student("20260001", email="minji@example.ac.kr")
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    return SignIn.objects.create(user=student.user, method="face", user_agent="Browser A")


def test_a_mail_server_that_cannot_be_reached_makes_the_email_task_retry(sign_in_while_mail_is_down):
    from celery.exceptions import Retry

    from facelogin import tasks

    with pytest.raises((Retry, OSError)):
        tasks.notify_new_browser(sign_in_while_mail_is_down.pk, "en")  # as a worker runs it: the error goes to the retry
    assert len(mail.outbox) == 0


def test_run_in_process_an_unreachable_mail_server_costs_one_attempt_not_eight(sign_in_while_mail_is_down, caplog):
    from facelogin import tasks

    result = tasks.notify_new_browser.apply(args=[sign_in_while_mail_is_down.pk, "en"])  # eager, as in the embedded mode
    assert result.successful() and len(mail.outbox) == 0
    assert "not sent: the mail server did not answer" in caplog.text
    assert caplog.text.count("not sent") == 1  # no retry ran inline
