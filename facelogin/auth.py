"""Authentication backends: the password lock-out first, then only active students (and staff without a
student record) may sign in.

``ModelBackend.get_user`` also calls ``user_can_authenticate``, so a student who is suspended or
graduates is signed out on their next request, whichever way they signed in.
"""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from django.contrib.auth.backends import ModelBackend

from facelogin.models import Student


def student_of(user) -> Student | None:
    try:
        return user.student
    except Student.DoesNotExist:
        return None


class ActiveStudentBackend(ModelBackend):
    def user_can_authenticate(self, user) -> bool:
        if not super().user_can_authenticate(user):
            return False
        student = student_of(user)
        return student is None or student.may_sign_in


class PasswordLockoutBackend(AxesStandaloneBackend):
    """django-axes' check, before any backend hashes the password: a locked-out account or address is
    refused (PermissionDenied ends ``authenticate``). A call without a request (the test client's
    ``login()``, a management command) comes from server-side code, never from a client's form, and
    is passed on to the next backend instead of failing."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
