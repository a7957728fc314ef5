"""Made-up activity for a throw-away portal, so the admin's dashboard has something to show (the docs'
screenshot). Never run against a real portal: it writes invented sign-ins and audit rows.

    DJANGO_SETTINGS_MODULE=portal.settings python -m bench.dashboard_seed   (in the portal's environment)

bench/screenshots.py runs it with ``manage.py shell`` against the portal it starts. Deterministic
(one seeded generator): 30 days of password and face sign-ins with weekday rhythm, failed attempts
with their reasons and frames, durations, and 240 students in every enrolment and consent state.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, time, timedelta

DAYS = 30
STUDENTS = 240


def seed(*, days: int = DAYS, students: int = STUDENTS, rng_seed: int = 7) -> dict[str, int]:
    from django.conf import settings
    from django.db import transaction
    from django.utils import timezone

    from facelogin.models import EnrolmentPhoto, FaceAttempt, FaceConsent, SignIn, Student
    from facelogin.services.recognition import model_name
    from facelogin.services.students import student_create

    rng = random.Random(rng_seed)
    zone = timezone.get_current_timezone()
    today = timezone.localdate()
    model = model_name()
    with transaction.atomic():
        created = []
        for i in range(students):
            number = f"2026D{i:04d}"
            status = "enrolled" if rng.random() > 0.06 else rng.choice(["on_leave", "graduated"])
            student = student_create(student_number=number, full_name=f"Demo Student {i:03d}", department="Demo", status=status)
            created.append(student)
            roll = rng.random()
            if roll < 0.08:
                continue  # never consented
            method = rng.choices(["signed_form", "portal", "import"], weights=[5, 3, 2])[0]
            version = settings.FACELOGIN["CONSENT_VERSION"] if rng.random() > 0.05 else "2025-1"
            consent = FaceConsent.objects.create(student=student, text_version=version, method=method)
            if roll < 0.12:
                consent.ended_at, consent.ended_reason = timezone.now(), FaceConsent.Ended.WITHDRAWN
                consent.save()
                continue
            accepted = max(0, min(12, round(rng.gauss(5.5, 2.2))))
            rejected = rng.choice([0, 0, 0, 1, 1, 2])
            EnrolmentPhoto.objects.bulk_create(
                EnrolmentPhoto(
                    student=student,
                    state="accepted" if k < accepted else "rejected",
                    reason="" if k < accepted else rng.choice(["too_dark", "turned", "no_face"]),
                    model_name=model if k < accepted else "",
                    content_sha256=f"{i:08d}{k:056d}",
                )
                for k in range(accepted + rejected)
            )
        Student.objects.filter(pk__in=[s.pk for s in rng.sample(created, 3)]).update(face_login_blocked=True)

        sign_ins, attempts = [], []
        users = [s.user for s in created]
        for back in range(days - 1, -1, -1):
            day = today - timedelta(days=back)
            weekend = day.weekday() >= 5
            adoption = 0.45 + 0.35 * (days - back) / days  # face sign-in catches on over the month
            visits = rng.randint(25, 45) if weekend else rng.randint(110, 170)
            for _ in range(visits):
                when = datetime.combine(day, time(rng.randint(7, 22), rng.randint(0, 59), rng.randint(0, 59)), tzinfo=zone)
                if rng.random() < adoption:
                    # Some face visits fail first and then sign in, or give up and use the password.
                    for _try in range(3):
                        ok = rng.random() < 0.86
                        if ok:
                            seconds = math.exp(rng.gauss(math.log(2.2), 0.45))
                            attempts.append((when, "ticket_issued", "", seconds, {"vote": 3, "no_face": rng.choice([0, 0, 1, 2])}))
                            sign_ins.append((when, "face"))
                            break
                        outcome, reason, frames = _failure(rng)
                        attempts.append((when, outcome, reason, rng.uniform(3, 25), frames))
                        when += timedelta(seconds=30)
                    else:
                        sign_ins.append((when, "password"))
                else:
                    sign_ins.append((when, "password"))
        for when, method in sign_ins:
            row = SignIn.objects.create(user=rng.choice(users), method=method, ip="127.0.0.1", user_agent="demo")
            SignIn.objects.filter(pk=row.pk).update(at=when)
        for when, outcome, reason, seconds, frames in attempts:
            frames = {k: v for k, v in frames.items() if v}
            row = FaceAttempt.objects.create(
                outcome=outcome, reason=reason, seconds=round(seconds, 3), frames=sum(frames.values()), frame_reasons=frames, ip="127.0.0.1"
            )
            FaceAttempt.objects.filter(pk=row.pk).update(at=when)
    return {"students": students, "sign_ins": len(sign_ins), "attempts": len(attempts)}


def _failure(rng: random.Random) -> tuple[str, str, dict[str, int]]:
    kind = rng.choices(
        ["not_recognised", "liveness_failed", "timeout", "throttled", "abandoned", "conflict", "bad_images"],
        weights=[38, 22, 10, 4, 20, 2, 1],
    )[0]
    quality = {q: rng.choice([0, 0, 1, 3, 6]) for q in ("too_dark", "too_small", "blurred", "turned", "too_bright")}
    frames = {"no_face": rng.choice([0, 1, 2, 5]), "below_threshold": rng.randint(0, 8), "vote": rng.randint(0, 2), **quality}
    if kind == "throttled":
        return "throttled", "ip", {}
    if kind == "abandoned":
        return "abandoned", "", frames
    return "failed", kind, frames


if __name__ == "__main__":
    import django

    django.setup()
    print(seed())
