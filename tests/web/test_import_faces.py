from __future__ import annotations

import shutil
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from facelogin.models import ClassifierVersion, EnrolmentPhoto, Student
from tests import faces

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def year_dir(tmp_path):
    """DIR/<student number>/*.jpg as a registrar would export it (copied from the shared faces)."""
    for number, person in (("2026A001", faces.johns()[0]), ("2026A002", faces.johns()[1])):
        folder = tmp_path / number
        folder.mkdir()
        for photo in faces.enrol_photos(person)[:3]:
            shutil.copy(photo, folder / photo.name)
    (tmp_path / "2026A002" / "notes.jpg").write_bytes(b"not really a jpeg")
    return tmp_path


def test_import_creates_students_enrols_photos_and_leaves_a_classifier_active(year_dir):
    out = StringIO()
    call_command("import_faces", str(year_dir), "--create-students", stdout=out)
    summary = out.getvalue()
    student = Student.objects.get(student_number="2026A001")
    assert student.full_name == "2026A001"  # without a CSV the folder name is both
    assert EnrolmentPhoto.objects.filter(state="accepted").count() == 6
    assert EnrolmentPhoto.objects.get(source_name="notes.jpg").reason in ("not_an_image", "truncated")
    assert "2026A001" in summary and "total" in summary and "took" in summary
    version = ClassifierVersion.objects.get(is_active=True)
    assert f"classifier version {version.pk} active" in summary and version.gallery_students == 2


def test_import_takes_names_from_a_csv(year_dir, tmp_path_factory):
    csv_path = tmp_path_factory.mktemp("csv") / "students.csv"
    csv_path.write_text("student_number,full_name,department\n2026A001,Kim Minji,Physics\n2026A002,Lee Junho,Law\n", encoding="utf-8")
    call_command("import_faces", str(year_dir), "--create-students", "--students-csv", str(csv_path), stdout=StringIO())
    assert Student.objects.get(student_number="2026A001").full_name == "Kim Minji"
    assert Student.objects.get(student_number="2026A002").department == "Law"


def test_unknown_folders_are_skipped_without_create_students(year_dir):
    out = StringIO()
    call_command("import_faces", str(year_dir), stdout=out)
    assert "skipped 2 unknown student folder(s)" in out.getvalue()
    assert not EnrolmentPhoto.objects.exists()


def test_a_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="is not a directory"):
        call_command("import_faces", str(tmp_path / "nope"))
