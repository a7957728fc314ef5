"""A working portal at once: an administrator and a handful of students."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from facelogin.models import Student
from facelogin.services.students import student_create

DEMO_STUDENTS = [
    ("20260001", "Kim Minji", "Computer Science", Student.Status.ENROLLED),
    ("20260002", "Lee Junho", "Mechanical Engineering", Student.Status.ENROLLED),
    ("20260003", "Park Seoyeon", "Economics", Student.Status.ENROLLED),
    ("20260004", "Choi Hyunwoo", "Physics", Student.Status.ON_LEAVE),
    ("20250099", "Jung Yuna", "Music", Student.Status.GRADUATED),
]


class Command(BaseCommand):
    help = (
        "Create an administrator (password from FACELOGIN_ADMIN_PASSWORD, or generated and printed once) "
        "and demo students (password from FACELOGIN_DEMO_PASSWORD, or generated and printed once). "
        "Safe to run again: existing accounts are left as they are."
    )

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        User = get_user_model()
        admin_password = os.environ.get("FACELOGIN_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        if User.objects.filter(username="admin").exists():
            self.stdout.write("administrator 'admin' already exists (password unchanged)")
        else:
            User.objects.create_superuser("admin", "admin@localhost", admin_password)
            self.stdout.write(self.style.SUCCESS(f"administrator: admin / {admin_password}"))

        student_password = os.environ.get("FACELOGIN_DEMO_PASSWORD") or secrets.token_urlsafe(9)
        created = []
        for number, name, department, status in DEMO_STUDENTS:
            if Student.objects.filter(student_number=number).exists():
                continue
            student_create(
                student_number=number, full_name=name, department=department, status=status, password=student_password
            )
            created.append(number)
        if created:
            self.stdout.write(self.style.SUCCESS(f"students {', '.join(created)} / password {student_password}"))
        else:
            self.stdout.write("demo students already exist (passwords unchanged)")
