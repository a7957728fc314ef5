"""How this process is coping, for the operations team's monitoring: ``/metrics/`` in Prometheus's text format.

The admin's dashboard tells staff what happened, from the audit rows of every process. These figures say
how one daphne process is doing now, so an operator can see a sign-in front door filling up before
students wait:
- face sign-in attempts ended here since the process started, by result (``busy``: the server could not
  judge the attempt in time, counted against nobody), and the time a recognised student took;
- frames analysed, in how many batches, and refused because the queue was full; frames waiting now; the
  analyser's busy seconds (their rate divided by ``facelogin_analyser_threads`` is how full it is);
- sign-in sockets open, whether the models are warm, the classifier version loaded and its size;
- enrolment photos waiting for a worker and the age of the oldest; the classifier version active in the
  database, retrains running, how the newest one ended and how long the newest request has waited (the
  same figures from every process: they are read from the database, so the workers need no endpoint);
- the process's CPU seconds and memory (prometheus_client's process collector).

Counters start at zero when the process starts; every process is scraped on its own address.
The endpoint is off unless ``FACELOGIN_METRICS_TOKEN`` is set, and then answers only a request bearing it.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from facelogin.models import ClassifierVersion, EnrolmentPhoto, RetrainRequest
from facelogin.models import FaceAttempt as AttemptRow
from facelogin.services import recognition, throttle
from facelogin.services.dashboard import FAILURE_CATEGORIES, failure_category
from facelogin.services.training import active_version_id

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Every result an attempt can end with: the dashboard's failure categories, plus a recognised student and
# an attempt the busy server could not judge (the dashboard counts that one under "unavailable").
RESULTS = ("recognised", "busy", *FAILURE_CATEGORIES)
# Seconds from the camera page's connection to recognition (the dashboard's bins, finer at the start).
SIGN_IN_SECONDS_BUCKETS = (0.5, 1, 2, 3, 5, 10, 20, 30)

disable_created_metrics()  # no *_created series: a restart already shows as counters falling to zero
# auto_describe off: describing the live figures would collect them, and so reach the database, at import.
REGISTRY = CollectorRegistry(auto_describe=False)
ATTEMPTS = Counter(
    "facelogin_face_attempts",
    "Face sign-in attempts that ended in this process, by result.",
    ["result"],
    registry=REGISTRY,
)
for _result in RESULTS:  # every series exists from the start, so rate() sees the first one
    ATTEMPTS.labels(_result)
SIGN_IN_SECONDS = Histogram(
    "facelogin_face_sign_in_seconds",
    "Seconds from the sign-in socket's connection to recognition, for recognised attempts.",
    buckets=SIGN_IN_SECONDS_BUCKETS,
    registry=REGISTRY,
)
ProcessCollector(registry=REGISTRY)


def attempt_result(outcome: str, reason: str) -> str:
    """The ``result`` label of an ended attempt (its audit row's outcome and reason)."""
    if outcome == AttemptRow.Outcome.UNAVAILABLE and reason == "busy":
        return "busy"
    return failure_category(outcome, reason) or "recognised"


def attempt_ended(*, outcome: str, reason: str, seconds: float) -> None:
    """Count an attempt as its audit row is written (``face_attempts``)."""
    result = attempt_result(outcome, reason)
    ATTEMPTS.labels(result).inc()
    if result == "recognised":
        SIGN_IN_SECONDS.observe(seconds)


class _LiveFigures:
    """Read at scrape time: nothing on the sign-in path pays for figures nobody asks for."""

    def collect(self):
        yield _gauge("facelogin_face_engine_ready", "1 once this process's face models are loaded and warm.", int(recognition.engine_ready()))
        yield _gauge("facelogin_sign_in_sockets_open", "Face sign-in sockets open in this process.", throttle.open_connections())
        engine = recognition.loaded_engine()
        if engine is not None:
            batcher = engine.batcher
            yield _counter("facelogin_frames_analysed", "Sign-in frames analysed in this process.", batcher.frames)
            yield _counter("facelogin_frame_batches", "Batches the frames were analysed in (frames / batches: the mean batch).", batcher.batches)
            yield _counter(
                "facelogin_frames_refused", "Sign-in frames refused unanalysed because the frame queue was full.", batcher.refused
            )
            yield _counter(
                "facelogin_analyser_busy_seconds",
                "Seconds the analyser threads spent analysing frames; its rate over facelogin_analyser_threads is how full they are.",
                batcher.busy_seconds,
            )
            yield _gauge("facelogin_frames_waiting", "Sign-in frames waiting for analysis now.", batcher.waiting)
            yield _gauge("facelogin_frame_queue_capacity", "Frames that may wait before attempts end busy (FACELOGIN_FRAME_QUEUE).", batcher.max_waiting)
            yield _gauge("facelogin_analyser_threads", "Frame analysis threads (FACELOGIN_RECOGNITION_THREADS).", batcher.threads)
            version_id, model = engine.loaded_model()
            yield _gauge("facelogin_classifier_version", "The classifier version this process decides with (0: none).", version_id or 0)
            students = model.gallery.n_labels if model is not None else 0
            rows = model.gallery.n_rows if model is not None else 0
            yield _gauge("facelogin_classifier_students", "Students in the loaded classifier's gallery.", students)
            yield _gauge("facelogin_classifier_embeddings", "Face embeddings in the loaded classifier's gallery.", rows)
        yield from _enrolment_backlog()
        yield from _retraining()


def _enrolment_backlog():
    states = (EnrolmentPhoto.State.QUEUED, EnrolmentPhoto.State.PROCESSING)
    waiting = EnrolmentPhoto.objects.filter(state__in=states).order_by()  # both on the state index
    counts = dict(waiting.values_list("state").annotate(n=Count("id")))
    family = GaugeMetricFamily("facelogin_enrolment_photos_waiting", "Enrolment photos not yet processed by a worker, by state.", labels=["state"])
    for state in states:
        family.add_metric([str(state)], counts.get(state, 0))
    yield family
    oldest = waiting.order_by("created_at").values_list("created_at", flat=True).first()
    yield _gauge(
        "facelogin_enrolment_oldest_waiting_seconds",
        "Age of the oldest enrolment photo still waiting for a worker (0: none); if it keeps growing, no worker is taking them.",
        max(0.0, (timezone.now() - oldest).total_seconds()) if oldest is not None else 0.0,
    )


def _retraining():
    Status = ClassifierVersion.Status
    yield _gauge(
        "facelogin_classifier_active_version",
        "The classifier version active in the database (0: none); a process whose facelogin_classifier_version "
        "stays different while students sign in through it is deciding with an old one.",
        active_version_id(model_name=recognition.model_name()) or 0,
    )
    versions = ClassifierVersion.objects.order_by()
    running = versions.filter(status=Status.TRAINING)
    yield _gauge("facelogin_retrains_running", "Classifier retrains a worker is running now.", running.count())
    finished = versions.exclude(status=Status.TRAINING)
    newest = finished.order_by("-created_at").values_list("status", flat=True).first()
    family = GaugeMetricFamily(
        "facelogin_retrain_last_result", "1 for how the newest finished retrain ended (all 0 before the first).", labels=["result"]
    )
    for status in (Status.READY, Status.FAILED, Status.REJECTED):
        family.add_metric([str(status)], int(newest == status))
    yield family
    yield _gauge(
        "facelogin_retrain_waiting_seconds",
        "Age of the newest retrain request while no finished retrain has answered it (0: none waiting); it includes "
        "FACELOGIN_RETRAIN_DEBOUNCE_SECONDS and the training itself. If it keeps growing, no worker is retraining.",
        _retrain_waiting_seconds(finished, running),
    )


def _retrain_waiting_seconds(finished, running) -> float:
    request = RetrainRequest.objects.filter(singleton=1, token__gt=0).values_list("token", "requested_at").first()
    if request is None or request[1] is None:
        return 0.0
    token, requested_at = request
    # A retry of the same request (a full retrain after a failed incremental one) is still an answer pending.
    answered = finished.filter(request_token__gte=token).exists() and not running.filter(request_token__gte=token).exists()
    return 0.0 if answered else max(0.0, (timezone.now() - requested_at).total_seconds())


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


REGISTRY.register(_LiveFigures())


def metrics_enabled() -> bool:
    return bool(settings.FACELOGIN["METRICS_TOKEN"])


def scrape_allowed(authorization: str) -> bool:
    """Whether an ``Authorization`` header carries the metrics token (compared in constant time)."""
    token = settings.FACELOGIN["METRICS_TOKEN"]
    scheme, _, offered = authorization.partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(offered.strip().encode(), token.encode())


def metrics_text() -> bytes:
    return generate_latest(REGISTRY)
