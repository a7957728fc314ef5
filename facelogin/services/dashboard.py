"""The figures behind the admin's face sign-in dashboard: what registrar and IT staff decide from.

Activity (sign-ins, face attempts, why they failed, time to sign in) covers a range of days in the
portal's time zone (``DJANGO_TIME_ZONE``), both ends included. Enrolment (who can sign in by face,
photos per student, consent) is as of now: it has no history to filter.

Figures carry codes, never display text; the admin translates them. Nothing here reads a biometric
field: counts and durations only.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.utils import timezone

from facelogin.models import EnrolmentPhoto, FaceAttempt, FaceConsent, SignIn, Student

DEFAULT_DAYS = 30
MAX_DAYS = 366  # one chart bar a day: a year stays readable, and the queries stay small

# Why a face attempt did not sign anyone in: (outcome, reason) of the audit row → one category.
# Reasons are those facelogin.services.face_attempts records; anything else is "other".
FAILURE_CATEGORIES = (
    "not_recognised",  # no student matched well enough in the frames allowed
    "conflict",  # frames matched two different students
    "liveness",  # the head-movement challenge was not completed
    "timeout",  # the attempt's time ran out
    "bad_images",  # the browser sent images that could not be read
    "throttled",  # too many attempts or failures: refused before any frame
    "unavailable",  # face sign-in itself was not working (no model, no classifier)
    "account",  # recognised, but the account may not sign in (suspended, blocked, graduated)
    "abandoned",  # the browser left before a decision
    "protocol",  # the client broke the protocol (text, oversized or flooding frames, no student number)
    "other",
)
_FAILED_REASONS = {
    "not_recognised": "not_recognised",
    "max_frames": "not_recognised",
    "conflict": "conflict",
    "liveness_failed": "liveness",
    "timeout": "timeout",
    "deadline": "timeout",
    "bad_images": "bad_images",
    "unavailable": "unavailable",
    "inactive_student": "account",
    "text_frame": "protocol",
    "frame_too_large": "protocol",
    "too_fast": "protocol",
    "no_claim": "protocol",
}

# What was wrong with the frames of failed attempts (FaceAttempt.frame_reasons), in display order.
# Quality reasons come from facelogin.pipeline.quality, the rest are frame vote reasons.
FRAME_PROBLEMS = (
    "no_face",
    "several_faces",
    "too_small",
    "too_dark",
    "too_bright",
    "blurred",
    "turned",
    "bad_image",
    "below_threshold",  # a face, but no enrolled student close enough
    "unclear_match",  # close to a student, but not clearly (disagreeing classifier, low margin)
    "not_enrolled",  # verify mode: the claimed student has no enrolled face
)
QUALITY_PROBLEMS = ("too_small", "too_dark", "too_bright", "blurred", "turned")
_FRAME_PROBLEM_OF = {p: p for p in FRAME_PROBLEMS} | {"disagree": "unclear_match", "low_margin": "unclear_match", "low_probability": "unclear_match"}

# Time to sign in, seconds: the histogram's bins (the last one open-ended).
SECONDS_BINS = (0, 1, 2, 3, 5, 10, 20, 30)

# Who can sign in by face, each student in exactly one category (the first that applies).
READINESS = ("ready", "too_few_photos", "no_consent", "blocked", "may_not_sign_in")
# Consent, each student in exactly one category.
CONSENT_STATES = ("signed_form", "portal", "import", "older_text", "withdrawn", "never")
PHOTO_BUCKETS = 10  # 0..9 accepted photos, then "10 or more"


class RangeError(ValueError):
    """A date range the dashboard cannot show."""


@dataclass(frozen=True)
class DateRange:
    start: date
    end: date  # included

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise RangeError("the range ends before it starts")
        if self.days > MAX_DAYS:
            raise RangeError(f"the range is longer than {MAX_DAYS} days")

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def each_day(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def bounds(self) -> tuple[datetime, datetime]:
        """[start of the first day, start of the day after the last) in the portal's time zone."""
        zone = timezone.get_current_timezone()
        return (
            datetime.combine(self.start, time.min, tzinfo=zone),
            datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=zone),
        )


def dashboard_default_range(*, today: date | None = None) -> DateRange:
    """The last DEFAULT_DAYS days, today included."""
    today = today or timezone.localdate()
    return DateRange(today - timedelta(days=DEFAULT_DAYS - 1), today)


@dataclass(frozen=True)
class SignInsPerDay:
    days: list[date]
    password: list[int]
    face: list[int]

    @property
    def total_password(self) -> int:
        return sum(self.password)

    @property
    def total_face(self) -> int:
        return sum(self.face)


@dataclass(frozen=True)
class FaceSuccess:
    """Face attempts per day and how many recognised a student (a sign-in ticket was issued)."""

    days: list[date]
    attempts: list[int]
    recognised: list[int]

    @property
    def total_attempts(self) -> int:
        return sum(self.attempts)

    @property
    def total_recognised(self) -> int:
        return sum(self.recognised)

    @property
    def rate(self) -> float | None:
        return self.total_recognised / self.total_attempts if self.total_attempts else None

    def rate_on(self, index: int) -> float | None:
        return self.recognised[index] / self.attempts[index] if self.attempts[index] else None


@dataclass(frozen=True)
class TimeToSignIn:
    """Seconds from opening the connection to recognition, for the recognised attempts that recorded it."""

    seconds: list[float]  # sorted
    not_recorded: int  # recognised attempts from before the duration was recorded

    @property
    def count(self) -> int:
        return len(self.seconds)

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    @property
    def p90(self) -> float | None:
        if not self.seconds:
            return None
        return self.seconds[min(len(self.seconds) - 1, int(0.9 * len(self.seconds)))]

    def histogram(self) -> list[int]:
        """Counts per SECONDS_BINS bin: [0, 1), [1, 2), ..., [30, ∞)."""
        counts = [0] * len(SECONDS_BINS)
        for value in self.seconds:
            index = max(i for i, edge in enumerate(SECONDS_BINS) if value >= edge) if value >= 0 else 0
            counts[index] += 1
        return counts


@dataclass(frozen=True)
class FrameProblems:
    """Frames of failed attempts, by what was wrong with them (FRAME_PROBLEMS order)."""

    frames: dict[str, int]
    attempts_recorded: int  # failed attempts that recorded their frames
    attempts_not_recorded: int  # failed attempts with frames, from before frames were recorded


@dataclass(frozen=True)
class DashboardFigures:
    range: DateRange
    sign_ins: SignInsPerDay
    face_success: FaceSuccess
    failures: dict[str, int]  # FAILURE_CATEGORIES order, zeros included
    frame_problems: FrameProblems
    time_to_sign_in: TimeToSignIn
    readiness: dict[str, int]  # READINESS order
    photos_per_student: list[int]  # students with 0, 1, ..., PHOTO_BUCKETS-1, then PHOTO_BUCKETS or more
    consent: dict[str, int]  # CONSENT_STATES order
    min_photos: int = field(default=0)

    @property
    def students(self) -> int:
        return sum(self.readiness.values())


def dashboard_figures(*, date_range: DateRange) -> DashboardFigures:
    start, end = date_range.bounds()
    attempts = FaceAttempt.objects.filter(at__gte=start, at__lt=end)
    readiness, photos, consent = _enrolment()
    return DashboardFigures(
        range=date_range,
        sign_ins=_sign_ins_per_day(date_range, SignIn.objects.filter(at__gte=start, at__lt=end)),
        face_success=_face_success(date_range, attempts),
        failures=_failures(attempts),
        frame_problems=_frame_problems(attempts),
        time_to_sign_in=_time_to_sign_in(attempts),
        readiness=readiness,
        photos_per_student=photos,
        consent=consent,
        min_photos=settings.FACELOGIN["MIN_PHOTOS"],
    )


def _per_day(queryset, group: str, date_range: DateRange) -> dict[tuple[date, str], int]:
    """Rows per local day and ``group`` value: one indexed range count per day.

    Not TruncDate: on SQLite every date function is a Python function called per row, and grouping
    592,000 attempts that way took 20 s (python -m bench.dashboard); a range on the indexed ``at``
    costs only the counting.
    """
    zone = timezone.get_current_timezone()
    days = date_range.each_day()
    edges = [datetime.combine(d, time.min, tzinfo=zone) for d in [*days, date_range.end + timedelta(days=1)]]
    counts: dict[tuple[date, str], int] = {}
    for day, low, high in zip(days, edges, edges[1:]):
        rows = queryset.filter(at__gte=low, at__lt=high).order_by().values(group).annotate(n=Count("pk"))
        counts.update({(day, row[group]): row["n"] for row in rows})
    return counts


def _sign_ins_per_day(date_range: DateRange, sign_ins) -> SignInsPerDay:
    counts = _per_day(sign_ins, "method", date_range)
    days = date_range.each_day()
    return SignInsPerDay(
        days=days,
        password=[counts.get((d, SignIn.Method.PASSWORD), 0) for d in days],
        face=[counts.get((d, SignIn.Method.FACE), 0) for d in days],
    )


def _face_success(date_range: DateRange, attempts) -> FaceSuccess:
    counts = _per_day(attempts, "outcome", date_range)
    days = date_range.each_day()
    per_day = Counter()
    for (day, _outcome), n in counts.items():
        per_day[day] += n
    return FaceSuccess(
        days=days,
        attempts=[per_day[d] for d in days],
        recognised=[counts.get((d, FaceAttempt.Outcome.TICKET_ISSUED), 0) for d in days],
    )


def failure_category(outcome: str, reason: str) -> str | None:
    """The FAILURE_CATEGORIES entry of an audit row; None for a recognised attempt."""
    if outcome == FaceAttempt.Outcome.TICKET_ISSUED:
        return None
    if outcome == FaceAttempt.Outcome.THROTTLED:
        return "throttled"
    if outcome == FaceAttempt.Outcome.UNAVAILABLE:
        return "unavailable"
    if outcome == FaceAttempt.Outcome.ABANDONED:
        return "abandoned"
    if outcome == FaceAttempt.Outcome.FAILED:
        return _FAILED_REASONS.get(reason, "other")
    return "other"


def _failures(attempts) -> dict[str, int]:
    totals = dict.fromkeys(FAILURE_CATEGORIES, 0)
    rows = attempts.order_by().exclude(outcome=FaceAttempt.Outcome.TICKET_ISSUED).values("outcome", "reason").annotate(n=Count("pk"))
    for row in rows:
        totals[failure_category(row["outcome"], row["reason"])] += row["n"]
    return totals


def _frame_problems(attempts) -> FrameProblems:
    frames = dict.fromkeys(FRAME_PROBLEMS, 0)
    recorded = not_recorded = 0
    failed = attempts.exclude(outcome=FaceAttempt.Outcome.TICKET_ISSUED).filter(frames__gt=0)
    for reasons in failed.order_by().values_list("frame_reasons", flat=True).iterator(chunk_size=2000):
        if not reasons:
            not_recorded += 1
            continue
        recorded += 1
        for reason, n in reasons.items():
            problem = _FRAME_PROBLEM_OF.get(reason)
            if problem is not None and isinstance(n, int):
                frames[problem] += n
    return FrameProblems(frames=frames, attempts_recorded=recorded, attempts_not_recorded=not_recorded)


def _time_to_sign_in(attempts) -> TimeToSignIn:
    recognised = attempts.filter(outcome=FaceAttempt.Outcome.TICKET_ISSUED).order_by()
    seconds = sorted(recognised.filter(seconds__isnull=False).values_list("seconds", flat=True))
    return TimeToSignIn(seconds=seconds, not_recorded=recognised.filter(seconds__isnull=True).count())


def _enrolment() -> tuple[dict[str, int], list[int], dict[str, int]]:
    """(readiness, photos per student, consent) as of now, from one query over every student."""
    from facelogin.services.recognition import model_name

    config = settings.FACELOGIN
    active = FaceConsent.objects.filter(student=OuterRef("pk"), ended_at__isnull=True)
    withdrawn = FaceConsent.objects.filter(student=OuterRef("pk"), ended_reason=FaceConsent.Ended.WITHDRAWN)
    accepted = Q(photos__state=EnrolmentPhoto.State.ACCEPTED, photos__model_name=model_name())
    students = (
        Student.objects.order_by()
        .annotate(
            accepted=Count("photos", filter=accepted),
            consent_method=Subquery(active.values("method")[:1]),
            consent_current=Exists(active.filter(text_version=config["CONSENT_VERSION"])),
            ever_withdrawn=Exists(withdrawn),
        )
        .values("status", "user__is_active", "face_login_blocked", "accepted", "consent_method", "consent_current", "ever_withdrawn")
    )
    readiness = dict.fromkeys(READINESS, 0)
    photos = [0] * (PHOTO_BUCKETS + 1)
    consent = dict.fromkeys(CONSENT_STATES, 0)
    for s in students.iterator(chunk_size=2000):
        photos[min(s["accepted"], PHOTO_BUCKETS)] += 1
        if s["consent_method"] is not None:
            given = s["consent_method"] if s["consent_method"] in consent else "older_text"
            consent[given if s["consent_current"] else "older_text"] += 1
        else:
            consent["withdrawn" if s["ever_withdrawn"] else "never"] += 1
        if s["status"] not in config["SIGNIN_STATUSES"] or not s["user__is_active"]:
            readiness["may_not_sign_in"] += 1
        elif s["face_login_blocked"]:
            readiness["blocked"] += 1
        elif s["consent_method"] is None:
            readiness["no_consent"] += 1
        elif s["accepted"] < config["MIN_PHOTOS"]:
            readiness["too_few_photos"] += 1
        else:
            readiness["ready"] += 1
    return readiness, photos, consent
