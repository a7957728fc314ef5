"""What the admin's dashboard costs at university scale: its figures and its chart images.

    python -m bench.dashboard [--students 30000] [--attempts-per-day 20000] [--days 30] [--repeats 5]

A throw-away SQLite portal (temp dir; migrated, nothing served) gets ``--students`` students with
consent and 0-12 accepted photos each (rows only, no images or embeddings), and ``--days`` days of
face attempts (``--attempts-per-day``, 86 % recognised, failures with frame reasons and durations) and
as many sign-ins. Then, in one process as the admin runs it: ``dashboard_figures`` for the last 7 and
30 days, and every chart's SVG, ``--repeats`` times each. Prints a table (median and worst) and writes
bench/results/dashboard.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.live import REPO, manage, portal_env

SEED = """
import random, time
from datetime import datetime, timedelta
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from facelogin.models import EnrolmentPhoto, FaceAttempt, FaceConsent, SignIn, Student
from facelogin.services.recognition import model_name
rng = random.Random(1)
for model in (FaceAttempt, SignIn):  # the seed writes past times: auto_now_add would overwrite them
    model._meta.get_field("at").auto_now_add = False
STUDENTS, PER_DAY, DAYS = {students}, {per_day}, {days}
started = time.perf_counter()
User = get_user_model()
with transaction.atomic():
    User.objects.bulk_create([User(username=f"S{{i:06d}}", password="!") for i in range(STUDENTS)], batch_size=5000)
    users = list(User.objects.order_by("pk").values_list("pk", flat=True))
    Student.objects.bulk_create([Student(user_id=u, student_number=f"S{{i:06d}}", full_name="x") for i, u in enumerate(users)], batch_size=5000)
    students = list(Student.objects.order_by("pk").values_list("pk", flat=True))
    FaceConsent.objects.bulk_create([FaceConsent(student_id=s, text_version="2026-1", method="import") for s in students if rng.random() < 0.9], batch_size=5000)
    model = model_name()
    photos = []
    for s in students:
        for k in range(rng.randint(0, 12)):
            photos.append(EnrolmentPhoto(student_id=s, state="accepted", model_name=model, content_sha256=f"{{s:032d}}{{k:032d}}"))
    EnrolmentPhoto.objects.bulk_create(photos, batch_size=10000)
now = timezone.now()
for day in range(DAYS):
    with transaction.atomic():
        base = now - timedelta(days=day)
        attempts, sign_ins = [], []
        for _ in range(PER_DAY):
            at = base - timedelta(seconds=rng.randint(0, 86399))
            ok = rng.random() < 0.86
            frames = {{"vote": 3}} if ok else {{"below_threshold": rng.randint(1, 8), "too_dark": rng.randint(0, 3)}}
            attempts.append(FaceAttempt(at=at, outcome="ticket_issued" if ok else "failed", reason="" if ok else "not_recognised",
                                        seconds=rng.uniform(1, 6), frames=sum(frames.values()), frame_reasons=frames))
            sign_ins.append(SignIn(at=at, user_id=rng.choice(users), method="face" if ok else "password"))
        FaceAttempt.objects.bulk_create(attempts, batch_size=10000)
        SignIn.objects.bulk_create(sign_ins, batch_size=10000)
print("SEEDED", len(students), len(photos), time.perf_counter() - started)
"""

MEASURE = """
import json, statistics, time
from datetime import timedelta
from django.utils import timezone
from facelogin import admin_figures
from facelogin.charts import svg
from facelogin.services import dashboard
REPEATS = {repeats}
today = timezone.localdate()
out = {{}}
for days in (7, 30):
    date_range = dashboard.DateRange(today - timedelta(days=days - 1), today)
    figures_s, charts_s = [], {{}}
    for _ in range(REPEATS):
        t = time.perf_counter(); figures = dashboard.dashboard_figures(date_range=date_range); figures_s.append(time.perf_counter() - t)
        for panel in admin_figures.dashboard_panels(figures):
            if panel.draw is None:
                continue
            t = time.perf_counter(); size = len(svg(panel.draw())); charts_s.setdefault(panel.name, []).append((time.perf_counter() - t, size))
    out[days] = {{"figures": figures_s, "charts": charts_s, "attempts": figures.face_success.total_attempts, "students": figures.students}}
print("RESULT " + json.dumps(out))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=30_000)
    parser.add_argument("--attempts-per-day", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        env = portal_env(Path(tmp) / "data", FACELOGIN_WARM_UP="0")
        manage(env, "migrate", "--noinput")
        seeded = manage(env, "shell", "-c", SEED.format(students=args.students, per_day=args.attempts_per_day, days=args.days), timeout=3600)
        print(next(line for line in seeded.stdout.splitlines() if line.startswith("SEEDED")))
        db_mb = os.path.getsize(Path(tmp) / "data" / "portal.sqlite3") / 1e6
        measured = manage(env, "shell", "-c", MEASURE.format(repeats=args.repeats), timeout=3600)
    result = json.loads(next(line for line in measured.stdout.splitlines() if line.startswith("RESULT "))[7:])
    print(f"\n{args.students:,} students, {args.attempts_per_day:,} face attempts and as many sign-ins a day for {args.days} days "
          f"(SQLite {db_mb:,.0f} MB); {args.repeats} repeats, median / worst\n")
    print("| range | attempts in range | figures (all queries) | slowest chart's SVG | all 8 charts | largest SVG |")
    print("|---|---|---|---|---|---|")
    for days, r in result.items():
        charts = r["charts"]
        per_repeat = [sum(charts[name][i][0] for name in charts) for i in range(args.repeats)]
        slowest = max(charts, key=lambda n: statistics.median(t for t, _ in charts[n]))
        largest = max(size for runs in charts.values() for _, size in runs)
        print(
            f"| {days} days | {r['attempts']:,} | {statistics.median(r['figures']):.2f} / {max(r['figures']):.2f} s "
            f"| {slowest}: {1000 * statistics.median(t for t, _ in charts[slowest]):.0f} / {1000 * max(t for t, _ in charts[slowest]):.0f} ms "
            f"| {statistics.median(per_repeat):.2f} / {max(per_repeat):.2f} s | {largest / 1024:.0f} KB |"
        )
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "dashboard.json").write_text(json.dumps({"args": vars(args), "sqlite_mb": db_mb, "result": result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
