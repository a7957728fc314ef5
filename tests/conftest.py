from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Real faces live beside the repository (never copied into it); FACELOGIN_SHARED_DIR overrides.
SHARED = Path(os.environ.get("FACELOGIN_SHARED_DIR", REPO.parent / "shared")).resolve()
FACES = SHARED / "faces"


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    if not FACES.is_dir():
        pytest.fail(f"real face images not found at {FACES}; set FACELOGIN_SHARED_DIR")
    return FACES


def require_binary(name: str) -> str:
    """Path of a system binary a test needs. Missing on CI is a failure, elsewhere a skip."""
    import shutil

    found = shutil.which(name) or next(
        (str(p) for p in Path("/usr/lib/postgresql").glob(f"*/bin/{name}") if p.exists()), None
    )
    if found:
        return found
    message = f"{name} is not installed (.ci/run installs it with apt)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def make_student(db):
    from facelogin.services.students import student_create

    counter = iter(range(1, 10_000))

    def make(
        number: str | None = None, *, status: str = "enrolled", password: str = "correct-horse-battery", consent: bool = True, **extra
    ):
        """A student; with their consent to face sign-in recorded unless ``consent=False``."""
        from facelogin.models import FaceConsent
        from facelogin.services.consent import consent_record

        student = student_create(
            student_number=number or f"2026{next(counter):04d}",
            full_name=extra.pop("full_name", "Test Student"),
            status=status,
            password=password,
            **extra,
        )
        if consent:
            consent_record(student=student, method=FaceConsent.Method.SIGNED_FORM)
        return student

    return make


@pytest.fixture
def fresh_loaded_model():
    """As in a fresh worker process: no classifier version held in memory before or after the test."""
    from facelogin.services import training

    training.forget_loaded_model()
    yield
    training.forget_loaded_model()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Django's default PBKDF2 costs ~0.3 s a hash on these machines; tests hash hundreds of times.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _default_language():
    # A page requested in Korean through Django's test client leaves Korean active in this thread
    # (LocaleMiddleware activates, nothing deactivates): the next test would read Korean messages.
    yield
    from django.utils import translation

    translation.deactivate()


@pytest.fixture(scope="session", autouse=True)
def _compiled_translations(django_db_blocker):
    # ./portal.sh test compiles them during set-up; a bare `pytest` run gets them here too.
    from django.core.management import call_command

    call_command("compile_translations", verbosity=0)
