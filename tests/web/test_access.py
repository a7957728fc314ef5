from __future__ import annotations

import pytest
from django.urls import reverse

from facelogin.models import SignIn

PASSWORD = "correct-horse-battery"


def test_home_redirects_anonymous_visitors_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/")


def test_sign_in_page_offers_face_and_password(client, db):
    response = client.get("/login/")
    body = response.content.decode()
    assert response.status_code == 200
    assert 'href="/login/face/' in body
    assert 'name="password"' in body


def test_healthz_answers_anonymously(client):
    assert client.get("/healthz/").json()["status"] == "ok"


def test_admin_refuses_students(client, make_student):
    make_student("20260001")
    client.post("/login/", {"username": "20260001", "password": PASSWORD})
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_an_enrolled_student_signs_in_with_a_password_and_sees_their_details(client, make_student):
    make_student("20260001", full_name="Kim Minji", department="Physics")
    response = client.post("/login/", {"username": "20260001", "password": PASSWORD}, follow=True)
    body = response.content.decode()
    assert response.redirect_chain[-1][0] == reverse("home")
    assert "Kim Minji" in body and "20260001" in body and "Physics" in body
    sign_in = SignIn.objects.get()
    assert (sign_in.method, sign_in.ip) == ("password", "127.0.0.1")
    assert "recent-sign-ins" in body


def test_a_wrong_password_is_refused(client, make_student):
    make_student("20260001")
    response = client.post("/login/", {"username": "20260001", "password": "nope"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert not SignIn.objects.exists()


@pytest.mark.parametrize("status", ["suspended", "graduated", "on_leave"])
def test_a_student_who_is_not_enrolled_is_refused(client, make_student, status):
    make_student("20260001", status=status)
    client.post("/login/", {"username": "20260001", "password": PASSWORD})
    assert "_auth_user_id" not in client.session


def test_a_deactivated_account_is_refused(client, make_student):
    student = make_student("20260001")
    student.user.is_active = False
    student.user.save()
    client.post("/login/", {"username": "20260001", "password": PASSWORD})
    assert "_auth_user_id" not in client.session


def test_suspending_a_signed_in_student_signs_them_out(client, make_student):
    student = make_student("20260001")
    client.post("/login/", {"username": "20260001", "password": PASSWORD})
    assert client.get("/").status_code == 200
    student.status = "suspended"
    student.save()
    assert client.get("/").status_code == 302


def test_sign_out_needs_post_and_ends_the_session(client, make_student):
    make_student("20260001")
    client.post("/login/", {"username": "20260001", "password": PASSWORD})
    assert client.get("/logout/").status_code == 405
    response = client.post("/logout/")
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_staff_without_a_student_record_see_a_link_to_the_admin(client, admin_user):
    client.force_login(admin_user)
    body = client.get("/").content.decode()
    assert "no student record" in body
    assert "/admin/" in body
