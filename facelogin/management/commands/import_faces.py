"""Bulk enrolment for the start of a year: DIR/<student number>/*.jpg through the same tasks as the admin."""

from __future__ import annotations

import csv
import time
from collections import Counter, defaultdict
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from facelogin.models import ClassifierVersion, EnrolmentPhoto, FaceConsent, Student
from facelogin.services import consent, enrolment, training
from facelogin.services.students import student_create

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".pgm", ".ppm", ".bmp", ".tif", ".tiff"}


class Command(BaseCommand):
    help = "Enrol face photos from DIR/<student number>/<photos>, then retrain once."

    def add_arguments(self, parser) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--create-students", action="store_true", help="create students that do not exist yet")
        parser.add_argument("--students-csv", type=Path, help="CSV with student_number,full_name[,department] for --create-students")
        parser.add_argument(
            "--no-record-consent",
            dest="record_consent",
            action="store_false",
            help="do not record consent: enrol only students whose consent is already recorded (default: "
            "record each student's consent as given on a form kept on file, method 'bulk import')",
        )
        parser.add_argument("--wait", type=int, default=1800, help="with a separate worker: seconds to wait for it (default 1800)")

    def handle(
        self, *args, directory: Path, create_students: bool, students_csv: Path | None, wait: int, record_consent: bool, **options
    ) -> None:
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a directory")
        folders = sorted(p for p in directory.iterdir() if p.is_dir())
        if not folders:
            raise CommandError(f"{directory} has no <student number> folders")
        known = self._read_csv(students_csv) if students_csv else {}
        started = time.monotonic()

        students: dict[str, Student] = {}
        skipped: list[str] = []
        no_consent: list[str] = []
        for folder in folders:
            number = folder.name
            student = Student.objects.filter(student_number=number).first()
            if student is None and create_students:
                name, department = known.get(number, (number, ""))
                student = student_create(student_number=number, full_name=name, department=department)
            if student is None:
                skipped.append(number)
                continue
            if record_consent:
                consent.consent_record(student=student, method=FaceConsent.Method.IMPORT)
            elif consent.consent_active(student=student) is None:
                no_consent.append(number)
                continue
            students[number] = student
        if record_consent and students:
            self.stdout.write(f"consent recorded as on file (bulk import, text {consent.current_text_version()}) for {len(students)} students")
        if no_consent:
            shown = ", ".join(no_consent[:10]) + (", …" if len(no_consent) > 10 else "")
            self.stdout.write(self.style.WARNING(f"{len(no_consent)} students skipped, no consent recorded: {shown}"))

        files = [
            (number, path)
            for number in students
            for path in sorted((directory / number).iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES
        ]
        photo_ids: list[int] = []
        # In the embedded run each photo is processed as it is submitted; with a worker, as it arrives.
        with tqdm(total=len(files), desc="submitting", unit="photo", disable=None) as bar:
            for number, path in files:
                photos = enrolment.photos_submit(
                    student=students[number], uploads=[enrolment.Upload(path.name, path.read_bytes())], retrain=False
                )
                photo_ids.extend(p.pk for p in photos)
                bar.update(1)
        self._wait_for_photos(photo_ids, wait)
        previous = training.active_version_id(model_name=enrolment_model())
        training.retrain_request(reason=f"import_faces {directory.name}: {len(photo_ids)} photos", countdown=0)
        version = self._wait_for_version(previous, wait)
        self._summary(photo_ids, skipped, version, time.monotonic() - started)

    def _read_csv(self, path: Path) -> dict[str, tuple[str, str]]:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = csv.DictReader(handle)
            if not rows.fieldnames or "student_number" not in rows.fieldnames or "full_name" not in rows.fieldnames:
                raise CommandError("the CSV needs the columns student_number and full_name (department optional)")
            return {r["student_number"].strip(): (r["full_name"].strip(), (r.get("department") or "").strip()) for r in rows}

    def _wait_for_photos(self, photo_ids: list[int], wait: int) -> None:
        pending = EnrolmentPhoto.objects.filter(pk__in=photo_ids, state__in=["queued", "processing"])
        total = len(photo_ids)
        deadline = time.monotonic() + wait
        with tqdm(total=total, desc="enrolling", unit="photo", disable=None) as bar:
            while True:
                done = total - pending.count()
                bar.update(done - bar.n)
                if done >= total:
                    return
                if time.monotonic() > deadline:
                    raise CommandError(f"{total - done} photos still waiting for a worker after {wait} s; is `celery -A portal worker` running?")
                time.sleep(0.5)

    def _wait_for_version(self, previous: int | None, wait: int) -> ClassifierVersion | None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            latest = ClassifierVersion.objects.order_by("-pk").first()
            if latest is not None and latest.pk != previous and latest.status != ClassifierVersion.Status.TRAINING:
                return latest
            time.sleep(0.5)
        return None

    def _summary(self, photo_ids: list[int], skipped: list[str], version: ClassifierVersion | None, seconds: float) -> None:
        per_student: dict[str, Counter] = defaultdict(Counter)
        reasons: Counter = Counter()
        for number, state, reason in EnrolmentPhoto.objects.filter(pk__in=photo_ids).values_list("student__student_number", "state", "reason"):
            per_student[number][state] += 1
            if reason:
                reasons[reason] += 1
        self.stdout.write(f"{'student':<16}{'accepted':>9}{'rejected':>9}")
        for number in sorted(per_student):
            counts = per_student[number]
            self.stdout.write(f"{number:<16}{counts['accepted']:>9}{counts['rejected']:>9}")
        accepted = sum(c["accepted"] for c in per_student.values())
        rejected = sum(c["rejected"] for c in per_student.values())
        self.stdout.write(f"{'total':<16}{accepted:>9}{rejected:>9}")
        if reasons:
            self.stdout.write("rejected because: " + ", ".join(f"{enrolment.rejection_message(r)} x{n}" for r, n in reasons.most_common()))
        if skipped:
            self.stdout.write(self.style.WARNING(f"skipped {len(skipped)} unknown student folder(s) (use --create-students): {', '.join(skipped[:10])}"))
        if version is None:
            self.stdout.write(self.style.WARNING("no new classifier version yet (the worker may still be training)"))
        elif version.is_active:
            self.stdout.write(self.style.SUCCESS(f"classifier version {version.pk} active: {version.gallery_students} students, threshold {version.thresholds.get('similarity')}"))
        else:
            self.stdout.write(self.style.ERROR(f"classifier version {version.pk} {version.get_status_display()}: {version.error}"))
        self.stdout.write(f"took {seconds:.1f} s")


def enrolment_model() -> str:
    from facelogin.services.recognition import model_name

    return model_name()
