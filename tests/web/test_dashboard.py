"""The admin's face sign-in dashboard against a seeded database: every figure, every chart drawn from
those figures, the tables beside the charts, the date range and its bad input, and who may see it.

The seed (``seeded``) is written down here with the numbers it must give; the tests also recount what
they can straight from the tables, so a figure that drifted from the database fails either way.
"""

from __future__ import annotations

import re
import statistics
from datetime import date, datetime, time, timedelta
from xml.etree import ElementTree

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from facelogin.models import EnrolmentPhoto, FaceAttempt, FaceConsent, SignIn, Student
from facelogin.services import consent as consent_service
from facelogin.services import dashboard
from facelogin.services.recognition import model_name

pytestmark = pytest.mark.django_db

# The range the tests look at, and a day just outside it.
START, END = date(2026, 3, 1), date(2026, 3, 7)
DASHBOARD = "/admin/facelogin/signindashboard/"
RANGE = {"start": START.isoformat(), "end": END.isoformat()}


def at(day: date, hour: int = 12) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=timezone.get_current_timezone())


def photos(student: Student, accepted: int, rejected: int = 0) -> None:
    for i in range(accepted + rejected):
        EnrolmentPhoto.objects.create(
            student=student,
            state=EnrolmentPhoto.State.ACCEPTED if i < accepted else EnrolmentPhoto.State.REJECTED,
            model_name=model_name() if i < accepted else "",
            content_sha256=f"{student.pk:08d}{i:056d}",
        )


def sign_in(user, method: str, when: datetime) -> None:
    row = SignIn.objects.create(user=user, method=method)
    SignIn.objects.filter(pk=row.pk).update(at=when)


def attempt(outcome: str, when: datetime, *, reason: str = "", seconds: float | None = None, frames: int = 5, frame_reasons=None) -> None:
    row = FaceAttempt.objects.create(outcome=outcome, reason=reason, seconds=seconds, frames=frames, frame_reasons=frame_reasons or {})
    FaceAttempt.objects.filter(pk=row.pk).update(at=when)


@pytest.fixture
def seeded(make_student, settings):
    """Seven students in every enrolment state, a week of sign-ins and attempts, and rows outside it."""
    settings.FACELOGIN = {**settings.FACELOGIN, "MIN_PHOTOS": 3, "CONSENT_VERSION": "2026-1"}
    ready = make_student("S1")  # signed form, 3 accepted: can sign in by face
    photos(ready, 3)
    few = make_student("S2", consent=False)  # portal consent, 1 accepted + 1 rejected
    consent_service.consent_record(student=few, method=FaceConsent.Method.PORTAL)
    photos(few, 1, rejected=1)
    make_student("S3", consent=False)  # never consented
    older = make_student("S4", consent=False)  # consent to an older text, 12 accepted photos
    FaceConsent.objects.create(student=older, text_version="2025-1", method=FaceConsent.Method.IMPORT)
    photos(older, 12)
    away = make_student("S5", status="on_leave")  # may not sign in
    photos(away, 3)
    blocked = make_student("S6")
    Student.objects.filter(pk=blocked.pk).update(face_login_blocked=True)
    photos(blocked, 3)
    withdrew = make_student("S7")  # consented, then withdrew
    consent_service.consent_withdraw(student=withdrew)

    user = ready.user
    sign_in(user, "password", at(START))
    sign_in(user, "password", at(START, 23))  # 23:00 local is still the 1st (14:00 UTC)
    sign_in(user, "face", at(START + timedelta(days=2)))
    sign_in(user, "face", at(START + timedelta(days=2), 1))  # 01:00 local: the 3rd, though the 2nd in UTC
    sign_in(user, "face", at(END))
    sign_in(user, "password", at(END + timedelta(days=1)))  # outside
    sign_in(user, "face", at(START - timedelta(days=1), 23))  # outside

    day2, day3 = START + timedelta(days=2), START + timedelta(days=3)
    attempt("ticket_issued", at(day2), seconds=2.0, frame_reasons={"vote": 3})
    attempt("ticket_issued", at(day2), seconds=4.5, frame_reasons={"vote": 3})
    attempt("ticket_issued", at(END), seconds=1.0)
    attempt("ticket_issued", at(END))  # recorded before durations were kept
    attempt("failed", at(day2), reason="not_recognised", frame_reasons={"below_threshold": 6, "too_dark": 2})
    attempt("failed", at(day2), reason="max_frames", frame_reasons={"vote": 1, "low_margin": 4, "no_face": 3})
    attempt("failed", at(day3), reason="liveness_failed", frame_reasons={"vote": 3, "turned": 5})
    attempt("failed", at(day3), reason="timeout")  # older row: frames not recorded
    attempt("failed", at(day3), reason="too_fast", frame_reasons={"bad_image": 1})
    attempt("throttled", at(day3), reason="ip", frames=0)
    attempt("unavailable", at(day3), reason="no_classifier", frames=0)
    attempt("abandoned", at(END), frame_reasons={"several_faces": 2})
    attempt("failed", at(END + timedelta(days=1)), reason="conflict", frame_reasons={"too_small": 9})  # outside
    attempt("ticket_issued", at(START - timedelta(days=1)), seconds=99.0)  # outside


# What the seed must give for START..END.
EXPECTED_SIGN_INS = {"password": [2, 0, 0, 0, 0, 0, 0], "face": [0, 0, 2, 0, 0, 0, 1]}
EXPECTED_ATTEMPTS = [0, 0, 4, 5, 0, 0, 3]
EXPECTED_RECOGNISED = [0, 0, 2, 0, 0, 0, 2]
EXPECTED_FAILURES = {
    "not_recognised": 2, "conflict": 0, "liveness": 1, "timeout": 1, "bad_images": 0, "throttled": 1,
    "unavailable": 1, "account": 0, "abandoned": 1, "protocol": 1, "other": 0,
}
EXPECTED_FRAME_PROBLEMS = {
    "no_face": 3, "several_faces": 2, "too_small": 0, "too_dark": 2, "too_bright": 0, "blurred": 0, "turned": 5,
    "bad_image": 1, "below_threshold": 6, "unclear_match": 4, "not_enrolled": 0,
}
EXPECTED_READINESS = {"ready": 2, "too_few_photos": 1, "no_consent": 2, "blocked": 1, "may_not_sign_in": 1}
EXPECTED_CONSENT = {"signed_form": 3, "portal": 1, "import": 0, "older_text": 1, "withdrawn": 1, "never": 1}


def figures() -> dashboard.DashboardFigures:
    return dashboard.dashboard_figures(date_range=dashboard.DateRange(START, END))


# --- the figures ------------------------------------------------------------------------------------
def test_sign_ins_per_day_by_method_count_each_local_day(seeded):
    f = figures()
    assert f.sign_ins.days == [START + timedelta(days=i) for i in range(7)]
    assert {"password": f.sign_ins.password, "face": f.sign_ins.face} == EXPECTED_SIGN_INS
    start, end = dashboard.DateRange(START, END).bounds()
    for method in ("password", "face"):  # recounted from the table
        assert sum(EXPECTED_SIGN_INS[method]) == SignIn.objects.filter(method=method, at__gte=start, at__lt=end).count()


def test_face_success_rate_is_recognised_attempts_over_all_attempts(seeded):
    f = figures().face_success
    assert f.attempts == EXPECTED_ATTEMPTS and f.recognised == EXPECTED_RECOGNISED
    start, end = dashboard.DateRange(START, END).bounds()
    in_range = FaceAttempt.objects.filter(at__gte=start, at__lt=end)
    assert f.total_attempts == in_range.count() == 12
    assert f.total_recognised == in_range.filter(outcome="ticket_issued").count() == 4
    assert f.rate == pytest.approx(4 / 12)
    assert f.rate_on(0) is None and f.rate_on(2) == pytest.approx(0.5) and f.rate_on(3) == 0


def test_why_attempts_failed_puts_every_unsuccessful_row_in_one_category(seeded):
    f = figures()
    assert f.failures == EXPECTED_FAILURES
    start, end = dashboard.DateRange(START, END).bounds()
    assert sum(f.failures.values()) == FaceAttempt.objects.filter(at__gte=start, at__lt=end).exclude(outcome="ticket_issued").count()


def test_frame_problems_sum_the_failed_attempts_frames_and_count_the_rows_without_them(seeded):
    problems = figures().frame_problems
    assert problems.frames == EXPECTED_FRAME_PROBLEMS
    assert problems.attempts_recorded == 5  # not_recognised, max_frames, liveness, too_fast, abandoned
    assert problems.attempts_not_recorded == 1  # the timeout row from before frames were recorded


def test_time_to_sign_in_is_the_median_of_the_recognised_attempts_durations(seeded):
    t = figures().time_to_sign_in
    assert t.seconds == [1.0, 2.0, 4.5]
    assert t.median == statistics.median(
        FaceAttempt.objects.filter(outcome="ticket_issued", seconds__lt=99).values_list("seconds", flat=True)
    ) == 2.0
    assert t.not_recorded == 1
    assert t.histogram() == [0, 1, 1, 1, 0, 0, 0, 0]  # [1,2) [2,3) [3,5)


def test_enrolment_figures_cover_every_student_once(seeded):
    f = figures()
    assert f.readiness == EXPECTED_READINESS
    assert f.students == Student.objects.count() == 7
    # Accepted photos: S3 and S7 none, S2 one, S1, S5 and S6 three, S4 twelve (10 or more).
    assert f.photos_per_student == [2, 1, 0, 3, 0, 0, 0, 0, 0, 0, 1]
    assert sum(f.photos_per_student) == Student.objects.count()
    assert f.consent == EXPECTED_CONSENT


def test_an_empty_portal_gives_zeros_not_errors(db):
    f = figures()
    assert f.sign_ins.total_face == f.face_success.total_attempts == 0
    assert f.face_success.rate is None and f.time_to_sign_in.median is None
    assert f.students == 0


def test_a_reversed_or_too_long_range_is_refused():
    with pytest.raises(dashboard.RangeError):
        dashboard.DateRange(END, START)
    with pytest.raises(dashboard.RangeError):
        dashboard.DateRange(START, START + timedelta(days=dashboard.MAX_DAYS))
    assert dashboard.DateRange(START, START + timedelta(days=dashboard.MAX_DAYS - 1)).days == dashboard.MAX_DAYS


# --- the page and its charts ------------------------------------------------------------------------
def svg_texts(body: bytes) -> list[str]:
    root = ElementTree.fromstring(body)
    return ["".join(e.itertext()).strip() for e in root.iter("{http://www.w3.org/2000/svg}text")]


def table_of(page: str, panel: str) -> list[list[str]]:
    """The rows (header cell first) of a panel's table on the page."""
    section = re.search(rf'<section class="figure-panel" id="panel-{panel}".*?</section>', page, re.S).group(0)
    body = re.search(r"<tbody>(.*?)</tbody>", section, re.S).group(1)
    return [[re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)] for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def bar_values(figure) -> list[list[float]]:
    """Heights (vertical) or widths (horizontal) of each bar series, in drawing order."""
    axes = figure.axes[0]
    return [[(p.get_width() if getattr(c, "orientation", "vertical") == "horizontal" else p.get_height()) for p in c] for c in axes.containers]


def test_every_chart_is_drawn_from_the_figures_in_the_database(seeded, admin_client):
    from facelogin import admin_figures, charts

    page = admin_client.get(DASHBOARD, RANGE)
    assert page.status_code == 200
    html = page.content.decode()
    panels = {p.name: p for p in admin_figures.dashboard_panels(figures())}
    assert set(panels) == {"sign-ins", "success", "failures", "frame-problems", "time-to-sign-in", "readiness", "photos", "consent"}

    # What each chart draws, from the figures the database gives.
    drawn = {name: p.draw() for name, p in panels.items()}
    assert bar_values(drawn["sign-ins"]) == [EXPECTED_SIGN_INS["password"], EXPECTED_SIGN_INS["face"]]
    rates = drawn["success"].axes[0].lines[0].get_ydata()
    assert [None if r != r else r for r in rates] == [None, None, 50.0, 0.0, None, None, pytest.approx(200 / 3)]
    assert bar_values(drawn["failures"]) == [[n for n in EXPECTED_FAILURES.values() if n]]
    assert bar_values(drawn["frame-problems"]) == [[n for n in EXPECTED_FRAME_PROBLEMS.values() if n]]
    assert bar_values(drawn["time-to-sign-in"]) == [[0, 1, 1, 1, 0, 0, 0, 0]]
    assert bar_values(drawn["readiness"]) == [list(EXPECTED_READINESS.values())]
    assert bar_values(drawn["photos"]) == [[2, 1, 0, 3, 0, 0, 0, 0, 0, 0, 1]]
    assert bar_values(drawn["consent"]) == [list(EXPECTED_CONSENT.values())]

    # The page links each chart; what it serves is exactly that drawing, as SVG.
    for name, panel in panels.items():
        url = re.search(rf'<img src="([^"]*/chart/{name}\.svg\?[^"]*)"', html).group(1).replace("&amp;", "&")
        response = admin_client.get(url)
        assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml", name
        assert response.content == charts.svg(drawn[name]), name
        assert panel.title in svg_texts(response.content), name

    # The tables beside the charts hold the same numbers.
    assert [row[1:] for row in table_of(html, "sign-ins")] == [
        [str(p), str(f), str(p + f)] for p, f in zip(EXPECTED_SIGN_INS["password"], EXPECTED_SIGN_INS["face"])
    ]
    assert [row[:2] for row in table_of(html, "readiness")][0] == ["Can sign in by face", "2"]
    assert "2 of 7 students can sign in by face (28.6 %)." in html
    assert "4 of 12 face attempts recognised a student (33.3 %)." in html
    assert "Median 2.0 s" in html
    assert "1 recognised attempt from before durations were recorded is not included." in html


def test_a_chart_linked_on_its_own_is_drawn_from_its_range(seeded, admin_client):
    from facelogin import admin_figures, charts

    response = admin_client.get(f"{DASHBOARD}chart/failures.svg", RANGE)  # no cached figures token
    assert response.status_code == 200
    panel = next(p for p in admin_figures.dashboard_panels(figures()) if p.name == "failures")
    assert response.content == charts.svg(panel.draw())


def test_the_tables_are_marked_up_for_screen_readers(seeded, admin_client):
    html = admin_client.get(DASHBOARD, RANGE).content.decode()
    sections = re.findall(r'<section class="figure-panel".*?</section>', html, re.S)
    assert len(sections) == 8
    for section in sections:
        assert "<caption id=" in section and '<th scope="col">' in section and '<th scope="row">' in section
        assert re.search(r'<img src="[^"]+" alt="Chart: [^"]+\. The numbers are in the table beside it\."', section)


def test_the_default_range_is_the_last_30_days(admin_client):
    html = admin_client.get(DASHBOARD).content.decode()
    today = timezone.localdate()
    assert f'value="{(today - timedelta(days=29)).isoformat()}"' in html and f'value="{today.isoformat()}"' in html


@pytest.mark.parametrize(
    "query, message",
    [
        ({"start": "2026-03-07", "end": "2026-03-01"}, "The range must end on or after the day it starts."),
        ({"start": "2024-01-01", "end": "2026-03-01"}, "Choose at most 366 days."),
        ({"start": "yesterday", "end": "2026-03-01"}, "Enter a valid date."),
        ({"start": "2026-03-01"}, "This field is required."),
    ],
)
def test_a_bad_range_is_explained_and_the_last_30_days_are_shown(admin_client, query, message):
    response = admin_client.get(DASHBOARD, query)
    assert response.status_code == 200
    html = response.content.decode()
    assert message in html and "The figures below are for the last 30 days." in html
    assert 'role="alert"' in html
    today = timezone.localdate().isoformat()
    assert re.search(rf"to {today} \(days in", html)


def test_a_chart_with_a_bad_range_is_a_clear_400(admin_client):
    response = admin_client.get(f"{DASHBOARD}chart/sign-ins.svg", {"start": "2026-13-01", "end": "2026-03-01"})
    assert response.status_code == 400
    assert "start=YYYY-MM-DD" in response.content.decode()
    assert admin_client.get(f"{DASHBOARD}chart/no-such-chart.svg", RANGE).status_code == 404


def test_only_staff_with_the_dashboard_permission_see_it(client, seeded):
    User = get_user_model()
    auditor = User.objects.create_user("auditor", password="pw-auditor-2026", is_staff=True)
    auditor.user_permissions.add(Permission.objects.get(codename="view_faceattempt"))
    client.force_login(auditor)
    # Seeing individual audit rows does not grant the dashboard, nor its charts.
    assert client.get(DASHBOARD).status_code == 403
    assert client.get(f"{DASHBOARD}chart/sign-ins.svg", RANGE).status_code == 403
    auditor.user_permissions.add(Permission.objects.get(codename="view_signindashboard"))
    auditor = User.objects.get(pk=auditor.pk)  # permissions are cached on the user object
    client.force_login(auditor)
    assert client.get(DASHBOARD).status_code == 200
    assert client.get(f"{DASHBOARD}chart/sign-ins.svg", RANGE).status_code == 200
    index = client.get("/admin/").content.decode()
    assert 'href="/admin/facelogin/signindashboard/"' in index
    # A student (not staff) is sent to the admin's sign-in page.
    client.force_login(Student.objects.get(student_number="S1").user)
    assert client.get(DASHBOARD).status_code == 302


def test_the_dashboard_in_korean(seeded, admin_client):
    html = admin_client.get(DASHBOARD, {**RANGE}, HTTP_ACCEPT_LANGUAGE="ko").content.decode()
    assert '<html lang="ko"' in html
    assert "얼굴 로그인 대시보드" in html
