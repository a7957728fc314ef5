"""Real faces for tests: paths, webcam-like frames and a cached embedding per photo."""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import FACES

JOHNS = FACES / "johns"
ENROL_COUNT = 6  # the first six photos of a person are enrolled; the rest are held out


def johns() -> list[Path]:
    return sorted(p for p in JOHNS.iterdir() if p.is_dir())


def photos_of(person: Path) -> list[Path]:
    return sorted(p for p in person.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".pgm"})


def enrol_photos(person: Path) -> list[Path]:
    return photos_of(person)[:ENROL_COUNT]


def held_out_photos(person: Path) -> list[Path]:
    return photos_of(person)[ENROL_COUNT:]


def webcam_frame(
    photo: Path, *, size: tuple[int, int] = (640, 480), face_height: int = 300, shift: int = 0, mirror: bool = False
) -> bytes:
    """The photo scaled to a webcam-sized face on a plain 640x480 background, as browser JPEG bytes."""
    face = Image.open(photo).convert("RGB")
    if mirror:
        face = face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = face_height / face.height
    face = face.resize((round(face.width * scale), face_height), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", size, (118, 122, 128))
    canvas.paste(face, ((size[0] - face.width) // 2 + shift, (size[1] - face.height) // 2))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


@lru_cache(maxsize=None)
def embedding_of(photo: Path) -> np.ndarray:
    """The photo's enrolment embedding, computed once per test session with the real pipeline."""
    from facelogin.services.enrolment import ENROL_FORMATS
    from facelogin.services.recognition import engine

    analysis = engine().analyzer.analyze_bytes(photo.read_bytes(), purpose="enrol", formats=ENROL_FORMATS)
    return analysis.embedding


ORL = FACES / "orl"


def background_people(count: int = 12) -> list[Path]:
    """ORL people enrolled beside the people a test is about: calibration needs a real gallery."""
    return sorted((p for p in ORL.iterdir() if p.is_dir()), key=lambda p: int(p.name[1:]))[:count]


def enrol_accepted(student, photos: list[Path]) -> int:
    """Accepted enrolment rows with the photos' real (cached) embeddings, skipping photos the pipeline
    refuses: the same data as a real enrolment, without running it per test."""
    import hashlib

    from facelogin.models import EnrolmentPhoto
    from facelogin.services import biometrics
    from facelogin.services.recognition import model_name

    count = 0
    for photo in photos:
        if embedding_of(photo) is None:  # the few ORL photos that fail a quality check
            continue
        EnrolmentPhoto.objects.create(
            student=student,
            state=EnrolmentPhoto.State.ACCEPTED,
            content_sha256=hashlib.sha256(photo.read_bytes()).hexdigest(),
            embedding=biometrics.seal_embedding(embedding_of(photo)),
            model_name=model_name(),  # the engine's model, which embedding_of used
        )
        count += 1
    return count


def enrol_people(make_student, people: list[Path], number_prefix: str) -> dict:
    """{person: student} for these people, numbered ``<prefix>1``, ``<prefix>2``, ..., each enrolled
    with their first six photos."""
    students = {}
    for index, person in enumerate(people, start=1):
        students[person] = make_student(f"{number_prefix}{index}", full_name=person.name.replace("_", " "))
        enrol_accepted(students[person], enrol_photos(person))
    return students


def enrol_background(make_student, count: int = 12) -> list:
    """ORL people enrolled beside the people a test is about (their first five photos)."""
    students = []
    for person in background_people(count):
        student = make_student(f"ORL{int(person.name[1:]):04d}", full_name=f"ORL {person.name}")
        enrol_accepted(student, photos_of(person)[:5])
        students.append(student)
    return students
