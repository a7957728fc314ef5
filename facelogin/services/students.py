"""Creating and changing students. The user account's username is the student number."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from facelogin.models import Student


@transaction.atomic
def student_create(
    *,
    student_number: str,
    full_name: str,
    department: str = "",
    status: str = Student.Status.ENROLLED,
    password: str | None = None,
    email: str = "",
) -> Student:
    student_number = student_number.strip()
    user = get_user_model()(username=student_number, email=email)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()  # face sign-in only until a password is issued
    user.save()
    return Student.objects.create(
        user=user, student_number=student_number, full_name=full_name.strip(), department=department, status=status
    )

