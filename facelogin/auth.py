"""Authentication backend: only active students (and staff without a student record) may sign in.

``ModelBackend.get_user`` also calls ``user_can_authenticate``, so a student who is suspended or
graduates is signed out on their next request, whichever way they signed in.
"""

from __future__ import annotations

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
