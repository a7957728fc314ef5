"""The admin's charts and the tables beside them, in the reader's language: one ``Panel`` per chart.

Figures come from ``facelogin.services.dashboard`` and ``facelogin.services.classifier_figures``;
drawing from ``facelogin.charts``. A panel's table holds exactly the numbers its chart draws, so the
page tells the same without the image (screen readers, copying into a report).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from facelogin.services import dashboard
from facelogin.services.classifier_figures import VersionFigures


def _charts():
    from facelogin import charts  # matplotlib: imported when a chart is drawn, not when the admin loads

    return charts


@dataclass
class Panel:
    name: str  # the chart's URL name
    title: str
    summary: str  # one sentence that says what the chart shows
    columns: list[str]  # table header; the first column holds the row headers
    rows: list[list[str]]
    draw: Callable[[], object] | None  # a Figure; None when there is nothing to draw
    empty: str = ""  # said instead of the chart when there is nothing to draw
    notes: list[str] = field(default_factory=list)
    footer: list[str] | None = None  # a totals row
    details: Panel | None = None  # a longer table, folded away (e.g. every histogram bin)
    url: str = ""  # where the chart is served (set by the admin)
    wide: bool = False  # too wide to sit beside the chart: the table goes under it

    @property
    def alt(self) -> str:
        return _("Chart: %(title)s. The numbers are in the table beside it.") % {"title": self.title}


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f} %"


def seconds(value: float | None) -> str:
    return "—" if value is None else _("%(s)s s") % {"s": f"{value:.1f}"}


def score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def small_chance(value: float | None) -> str:
    """A chance that may be tiny: as a percentage with three significant digits."""
    if value is None:
        return "—"
    if value <= 0:
        return _("below what the data can show")
    return f"{100 * value:.3g} %"


# --- the sign-in dashboard ------------------------------------------------------------------------
def failure_labels() -> dict[str, str]:
    return {
        "not_recognised": _("Not recognised"),
        "conflict": _("Matched two different students"),
        "liveness": _("Liveness challenge not completed"),
        "timeout": _("Ran out of time"),
        "bad_images": _("Images could not be read"),
        "throttled": _("Throttled (too many attempts or failures)"),
        "unavailable": _("Face sign-in unavailable"),
        "account": _("Account may not sign in"),
        "abandoned": _("Left before a decision"),
        "protocol": _("Broke the protocol"),
        "other": _("Other"),
    }


def frame_problem_labels() -> dict[str, str]:
    return {
        "no_face": _("No face in the picture"),
        "several_faces": _("Several faces"),
        "too_small": _("Quality: face too small (too far away)"),
        "too_dark": _("Quality: too dark"),
        "too_bright": _("Quality: too bright"),
        "blurred": _("Quality: blurred"),
        "turned": _("Quality: face turned away"),
        "bad_image": _("Image could not be read"),
        "below_threshold": _("Face matched no enrolled student"),
        "unclear_match": _("No clear match"),
        "not_enrolled": _("Claimed student has no enrolled face"),
    }


def readiness_labels(min_photos: int) -> dict[str, str]:
    return {
        "ready": _("Can sign in by face"),
        "too_few_photos": ngettext(
            "Consent given, fewer than %(n)d accepted photo", "Consent given, fewer than %(n)d accepted photos", min_photos
        )
        % {"n": min_photos},
        "no_consent": _("No consent to face sign-in"),
        "blocked": _("Face sign-in blocked after a report"),
        "may_not_sign_in": _("May not sign in (status or account)"),
    }


def consent_labels() -> dict[str, str]:
    return {
        "signed_form": _("Given on a signed form"),
        "portal": _("Given on the portal"),
        "import": _("Recorded with a bulk import"),
        "older_text": _("Given for an older consent text"),
        "withdrawn": _("Withdrawn"),
        "never": _("Never given"),
    }


def seconds_bin_labels() -> list[str]:
    edges = dashboard.SECONDS_BINS
    labels = [_("%(low)s–%(high)s s") % {"low": low, "high": high} for low, high in zip(edges, edges[1:])]
    return [*labels, _("%(low)s s or more") % {"low": edges[-1]}]


def photo_bin_labels() -> list[str]:
    return [str(n) for n in range(dashboard.PHOTO_BUCKETS)] + [_("%(n)s or more") % {"n": dashboard.PHOTO_BUCKETS}]


def _count_rows(labels: dict[str, str], counts: dict[str, int], *, keep_zero: bool = False) -> list[tuple[str, int]]:
    return [(labels[code], n) for code, n in counts.items() if n or keep_zero]


def _bars_panel(name: str, title: str, summary: str, label_header: str, value_header: str, pairs, *, xlabel: str, empty: str, notes=()) -> Panel:
    total = sum(n for _label, n in pairs)
    rows = [[label, f"{n:,}", percent(n / total) if total else "—"] for label, n in pairs]
    draw = None
    if total:
        labels, values = [label for label, _n in pairs], [n for _label, n in pairs]
        draw = lambda: _charts().horizontal_bars(labels, values, title=title, xlabel=xlabel)  # noqa: E731
    return Panel(
        name, title, summary, [label_header, value_header, _("Share")], rows, draw, empty=empty, notes=list(notes),
        footer=[_("Total"), f"{total:,}", percent(1.0) if total else "—"],
    )


def dashboard_panels(figures: dashboard.DashboardFigures) -> list[Panel]:
    days = [d.isoformat() for d in figures.sign_ins.days]
    return [
        _sign_ins_panel(figures, days),
        _success_panel(figures, days),
        _failures_panel(figures),
        _frame_problems_panel(figures),
        _time_panel(figures),
        _readiness_panel(figures),
        _photos_panel(figures),
        _consent_panel(figures),
    ]


def _sign_ins_panel(figures: dashboard.DashboardFigures, days: list[str]) -> Panel:
    s = figures.sign_ins
    title = _("Sign-ins per day, by method")
    rows = [[day, f"{p:,}", f"{f:,}", f"{p + f:,}"] for day, p, f in zip(days, s.password, s.face)]
    total = s.total_password + s.total_face
    summary = _("%(total)s sign-ins: %(face)s by face (%(share)s), %(password)s with a password.") % {
        "total": f"{total:,}",
        "face": f"{s.total_face:,}",
        "password": f"{s.total_password:,}",
        "share": percent(s.total_face / total) if total else "—",
    }
    series = [(_("Password"), s.password), (_("Face"), s.face)]
    return Panel(
        "sign-ins",
        title,
        summary,
        [_("Day"), _("Password"), _("Face"), _("Total")],
        rows,
        lambda: _charts().stacked_bars_by_day(days, series, title=title, ylabel=_("Sign-ins")),
        footer=[_("Total"), f"{s.total_password:,}", f"{s.total_face:,}", f"{total:,}"],
    )


def _success_panel(figures: dashboard.DashboardFigures, days: list[str]) -> Panel:
    f = figures.face_success
    title = _("Face sign-in success rate")
    rows = [[day, f"{a:,}", f"{r:,}", percent(f.rate_on(i))] for i, (day, a, r) in enumerate(zip(days, f.attempts, f.recognised))]
    if f.total_attempts:
        summary = _("%(recognised)s of %(attempts)s face attempts recognised a student (%(rate)s).") % {
            "recognised": f"{f.total_recognised:,}",
            "attempts": f"{f.total_attempts:,}",
            "rate": percent(f.rate),
        }
    else:
        summary = _("No face attempts in this range.")
    rates = [f.rate_on(i) for i in range(len(days))]
    draw = None
    if f.total_attempts:
        draw = lambda: _charts().rate_by_day(  # noqa: E731
            days, rates, title=title, ylabel=_("Recognised"), overall=f.rate, overall_label=_("Whole range: %(rate)s") % {"rate": percent(f.rate)}
        )
    return Panel(
        "success",
        title,
        summary,
        [_("Day"), _("Face attempts"), _("Recognised"), _("Success rate")],
        rows,
        draw,
        empty=_("No face attempts in this range."),
        notes=[_("An attempt is one visit to the camera page, from the first frame to recognition or refusal. Days without attempts have no rate.")],
        footer=[_("Total"), f"{f.total_attempts:,}", f"{f.total_recognised:,}", percent(f.rate)],
    )


def _failures_panel(figures: dashboard.DashboardFigures) -> Panel:
    pairs = _count_rows(failure_labels(), figures.failures)
    total = sum(n for _l, n in pairs)
    return _bars_panel(
        "failures",
        _("Why face attempts did not sign in"),
        ngettext("%(n)s attempt did not sign anyone in.", "%(n)s attempts did not sign anyone in.", total) % {"n": f"{total:,}"},
        _("Reason"),
        _("Attempts"),
        pairs,
        xlabel=_("Attempts"),
        empty=_("No failed face attempts in this range."),
    )


def _frame_problems_panel(figures: dashboard.DashboardFigures) -> Panel:
    problems = figures.frame_problems
    pairs = _count_rows(frame_problem_labels(), problems.frames)
    notes = []
    if problems.attempts_not_recorded:
        notes.append(
            ngettext(
                "%(n)s failed attempt from before frames were recorded is not included.",
                "%(n)s failed attempts from before frames were recorded are not included.",
                problems.attempts_not_recorded,
            )
            % {"n": f"{problems.attempts_not_recorded:,}"}
        )
    quality = sum(problems.frames[q] for q in dashboard.QUALITY_PROBLEMS)
    frames = sum(n for _l, n in pairs)
    summary = _("In %(attempts)s failed attempts, %(frames)s frames had a problem; %(quality)s of them were of poor quality.") % {
        "attempts": f"{problems.attempts_recorded:,}",
        "frames": f"{frames:,}",
        "quality": f"{quality:,}",
    }
    return _bars_panel(
        "frame-problems",
        _("What was wrong with the failed attempts' frames"),
        summary,
        _("Problem"),
        _("Frames"),
        pairs,
        xlabel=_("Frames"),
        empty=_("No frames of failed attempts in this range."),
        notes=notes,
    )


def _time_panel(figures: dashboard.DashboardFigures) -> Panel:
    t = figures.time_to_sign_in
    title = _("Time to sign in by face")
    labels = seconds_bin_labels()
    counts = t.histogram()
    rows = [[label, f"{n:,}", percent(n / t.count) if t.count else "—"] for label, n in zip(labels, counts)]
    if t.count:
        summary = _("Median %(median)s from opening the camera page's connection to recognition; 90 %% within %(p90)s (%(n)s sign-ins).") % {
            "median": seconds(t.median),
            "p90": seconds(t.p90),
            "n": f"{t.count:,}",
        }
    else:
        summary = _("No recognised face attempt with a recorded duration in this range.")
    notes = []
    if t.not_recorded:
        notes.append(
            ngettext(
                "%(n)s recognised attempt from before durations were recorded is not included.",
                "%(n)s recognised attempts from before durations were recorded are not included.",
                t.not_recorded,
            )
            % {"n": f"{t.not_recorded:,}"}
        )
    draw = None
    if t.count:
        draw = lambda: _charts().count_bars(labels, counts, title=title, xlabel=_("Seconds"), ylabel=_("Sign-ins"))  # noqa: E731
    return Panel(
        "time-to-sign-in",
        title,
        summary,
        [_("Time"), _("Sign-ins"), _("Share")],
        rows,
        draw,
        empty=summary,
        notes=notes,
        footer=[_("Total"), f"{t.count:,}", percent(1.0) if t.count else "—"],
    )


def _readiness_panel(figures: dashboard.DashboardFigures) -> Panel:
    students = figures.students
    ready = figures.readiness["ready"]
    summary = _("%(ready)s of %(students)s students can sign in by face (%(share)s).") % {
        "ready": f"{ready:,}",
        "students": f"{students:,}",
        "share": percent(ready / students) if students else "—",
    }
    return _bars_panel(
        "readiness",
        _("Who can sign in by face (now)"),
        summary,
        _("Face sign-in"),
        _("Students"),
        _count_rows(readiness_labels(figures.min_photos), figures.readiness, keep_zero=True),
        xlabel=_("Students"),
        empty=_("No students yet."),
    )


def _photos_panel(figures: dashboard.DashboardFigures) -> Panel:
    title = _("Accepted photos per student (now)")
    labels = photo_bin_labels()
    counts = figures.photos_per_student
    students = sum(counts)
    rows = [[label, f"{n:,}", percent(n / students) if students else "—"] for label, n in zip(labels, counts)]
    needed = figures.min_photos
    summary = ngettext(
        "A student needs %(n)d accepted photo to sign in by face.", "A student needs %(n)d accepted photos to sign in by face.", needed
    ) % {"n": needed}
    draw = None
    if students:
        reference = (min(needed, dashboard.PHOTO_BUCKETS) - 0.5, _("Needed to sign in by face: %(n)d") % {"n": needed})
        draw = lambda: _charts().count_bars(  # noqa: E731
            labels, counts, title=title, xlabel=_("Accepted photos"), ylabel=_("Students"), reference=reference
        )
    return Panel(
        "photos",
        title,
        summary,
        [_("Accepted photos"), _("Students"), _("Share")],
        rows,
        draw,
        empty=_("No students yet."),
        footer=[_("Total"), f"{students:,}", percent(1.0) if students else "—"],
    )


def _consent_panel(figures: dashboard.DashboardFigures) -> Panel:
    given = sum(figures.consent[k] for k in ("signed_form", "portal", "import"))
    students = sum(figures.consent.values())
    summary = _("%(given)s of %(students)s students have consented to the current text.") % {
        "given": f"{given:,}",
        "students": f"{students:,}",
    }
    return _bars_panel(
        "consent",
        _("Consent to face sign-in (now)"),
        summary,
        _("Consent"),
        _("Students"),
        _count_rows(consent_labels(), figures.consent, keep_zero=True),
        xlabel=_("Students"),
        empty=_("No students yet."),
    )


# --- a classifier version -------------------------------------------------------------------------
def version_panels(figures: VersionFigures) -> list[Panel]:
    panels = []
    if figures.distributions is not None:
        panels.append(_distributions_panel(figures.distributions))
    if figures.fpir is not None:
        panels.append(_fpir_panel(figures.fpir))
    if figures.holdout is not None:
        panels.append(_holdout_panel(figures.holdout))
    return panels


def _distributions_panel(d) -> Panel:
    title = _("Genuine and impostor scores")
    genuine_label, impostor_label = _("Genuine (same student)"), _("Impostor (another student)")
    thresholds = [(d.threshold, _("Threshold %(t)s") % {"t": score(d.threshold)})]
    if d.verify_threshold is not None and abs(d.verify_threshold - d.threshold) > 1e-9:
        thresholds.append((d.verify_threshold, _("Verify-mode threshold %(t)s") % {"t": score(d.verify_threshold)}))
    columns = [_("Scores"), _("Pairs"), _("Mean"), _("1st percentile"), _("Median"), _("99th percentile"), _("Highest"), _("At or above the threshold")]
    rows = [
        [genuine_label, f"{d.genuine.n:,}", score(d.genuine.mean), score(d.genuine.p01), score(d.genuine.p50), score(d.genuine.p99), score(d.genuine.max), percent(d.genuine_accept_rate)],
        [impostor_label, f"{d.impostor.n:,}", score(d.impostor.mean), score(d.impostor.p01), score(d.impostor.p50), score(d.impostor.p99), score(d.impostor.max), small_chance(d.per_comparison_fmr)],
    ]
    summary = _(
        "Cosine similarity of each enrolled photo to the same student's other photos (genuine) and to other students "
        "(impostor), with the threshold a face must reach."
    )
    notes = [_("The impostor share at or above the threshold is the fitted chance for one comparison, not a count.")]
    details = None
    xlabel, ylabel = _("Similarity (cosine)"), _("Share of the pairs")
    if d.recorded:
        edges = d.bin_edges()
        series = [(genuine_label, d.genuine.counts), (impostor_label, d.impostor.counts)]
        draw = lambda: _charts().score_distributions(edges, series, thresholds=thresholds, title=title, xlabel=xlabel, ylabel=ylabel)  # noqa: E731
        bins = [
            [f"{low:.2f} – {high:.2f}", f"{g:,}", f"{i:,}"]
            for low, high, g, i in zip(edges, edges[1:], d.genuine.counts, d.impostor.counts)
            if g or i
        ]
        details = Panel("bins", _("Pairs per score bin"), "", [_("Similarity"), genuine_label, impostor_label], bins, None)
    else:
        notes.insert(0, _("The full distributions were not recorded for this version (it was trained before they were kept); the chart shows the summary that was."))
        stats = [(genuine_label, vars(d.genuine)), (impostor_label, vars(d.impostor))]
        draw = lambda: _charts().score_ranges(  # noqa: E731
            stats,
            thresholds=thresholds,
            title=title,
            xlabel=xlabel,
            range_label=_("Lowest to highest"),
            middle_label=_("1st to 99th percentile"),
            median_label=_("Median"),
        )
    return Panel("scores", title, summary, columns, rows, draw, notes=notes, details=details, wide=True)


def _fpir_panel(c) -> Panel:
    title = _("Chance that a stranger matches someone, by gallery size")
    rows = []
    for p in c.points:
        size = f"{p.gallery_size:,}"
        if p.gallery_size == c.gallery_size:
            size = _("%(n)s (this version)") % {"n": size}
        needed = score(p.threshold_for_target) if c.thresholds_recorded else _("not recorded for this version")
        rows.append([size, small_chance(p.fpir), needed])
    summary = _(
        "At this version's threshold a stranger's frame matches some enrolled student in %(chance)s of frames at %(n)s "
        "students (target %(target)s); the chance grows with the gallery. Measured on the enrolled photos against each "
        "other: %(measured)s."
    ) % {"chance": small_chance(c.expected), "n": f"{c.gallery_size:,}", "target": small_chance(c.target), "measured": small_chance(c.measured)}
    notes = []
    if not c.thresholds_recorded:
        notes.append(_("The threshold each gallery size would need was not recorded for this version; the chances at its own threshold follow from what was."))
    sizes, chances = [p.gallery_size for p in c.points], [p.fpir for p in c.points]
    draw = lambda: _charts().fpir_curve(  # noqa: E731
        sizes,
        chances,
        target=c.target,
        gallery_size=c.gallery_size,
        measured=c.measured,
        title=title,
        xlabel=_("Enrolled students"),
        ylabel=_("Chance per frame"),
        curve_label=_("At this version's threshold"),
        target_label=_("Target %(t)s") % {"t": small_chance(c.target)},
        gallery_label=_("This version: %(n)s students") % {"n": f"{c.gallery_size:,}"},
        measured_label=_("Measured on the enrolled photos"),
    )
    columns = [_("Enrolled students"), _("Chance at this threshold"), _("Threshold that would hold the target")]
    return Panel("stranger-chance", title, summary, columns, rows, draw, notes=notes)


def _holdout_panel(h) -> Panel:
    title = _("Held-out check")
    measures = [
        (_("Classifier's student correct (rank-1)"), h.rank1_accuracy, h.required_rank1_accuracy),
        (_("Nearest enrolled student correct"), h.gallery_rank1_accuracy, None),
        (_("Frames that would sign in the right student"), h.genuine_accept_rate, None),
        (_("Frames that would sign in a wrong student"), h.wrong_accept_rate, None),
    ]
    rows = []
    for label, value, required in measures:
        if required is None:
            verdict = "—"
        elif value is None:
            verdict = _("not measured")
        else:
            verdict = _("met") if value >= required else _("NOT met")
        rows.append([label, percent(value), percent(required) if required is not None else "—", verdict])
    summary = ngettext(
        "%(n)s enrolled photo was held out of training and then recognised as a sign-in frame would be.",
        "%(n)s enrolled photos were held out of training and then recognised as sign-in frames would be.",
        h.frames,
    ) % {"n": f"{h.frames:,}"}
    notes = []
    if h.measured_on_version:
        notes.append(_("This version was built incrementally: the check is that of full retrain v%(v)s, which it builds on.") % {"v": h.measured_on_version})
    labels = [label for label, _v, _r in measures]
    values = [v if v is not None else 0.0 for _l, v, _r in measures]
    value_labels = [percent(v) for _l, v, _r in measures]
    reference = (h.required_rank1_accuracy, _("Required rank-1: %(p)s") % {"p": percent(h.required_rank1_accuracy)})
    draw = lambda: _charts().horizontal_bars(  # noqa: E731
        labels,
        values,
        title=title,
        xlabel=_("Share of the held-out photos"),
        value_labels=value_labels,
        reference=reference,
        xlim=(0, 1.18),
        percent_axis=True,
    )
    columns = [_("Measure"), _("Result"), _("Required"), _("Requirement")]
    return Panel("holdout", title, summary, columns, rows, draw, notes=notes, wide=True)
