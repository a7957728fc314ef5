"""Enrolling one more student at university scale, in the app: from upload to "active and recognised".

    python -m bench.enrol_scale                      # 30,000 students (issue 7)
    python -m bench.enrol_scale --students 1000      # a quick run

A throw-away portal in a temporary directory (SQLite, the embedded defaults, the fixed test secrets
of ``tests/live.py``) runs as three processes, as in production:

* **seed**: migrates, then creates N students the way the app stores them: real ``User`` and
  ``Student`` rows, each with 5 accepted ``EnrolmentPhoto`` rows for the current FaceNet model,
  holding a synthetic unit-norm embedding (``bench.gallery``'s generator; ``--dims``: the face model's
  own length by default, SFace's 128 spread over the stored 512 columns as ``embed.spread`` does) sealed by
  ``biometrics.seal_embedding`` and a sealed crop-sized blob in place of the face crop (training
  never reads crops, but SQLite reads past them). Then the real retrain service
  (``training.classifier_train``) trains and activates the first classifier: "full retrain at N".
* **serve**: follows the active version as every daphne process does (``Engine.current_model``,
  which asks the database every ``FACELOGIN_MODEL_REFRESH_SECONDS``), face models warm, and tries
  the new student's held-out photo as webcam frames through the login's decision once the version
  changes.
* **worker**: face models warm, as a running Celery worker's are. Creates one more student (with
  consent) and submits the first six photos of a real person from ``../shared/faces/johns`` through
  ``enrolment.photos_submit``; the tasks run in-process (eager Celery, the embedded default).
  Eager Celery runs the debounced retrain at once, so the worker waits out the countdown first, as a
  real worker would, then runs the retrain task.

Every stage is timed by wrapping the app's own functions (nothing is re-implemented): photo
processing, the debounce, then the retrain's parts, which depend on the path ``classifier_train``
takes. Incremental (a large gallery): the gallery's photo counts, loading the active version, the
changed students' embeddings, copying the gallery and applying the changes, recalibrating, storing
the changes. Full (the first classifier): every embedding, train + calibrate with the held-out check,
pickling, sealing and storing the whole model. Then activation until the serving process sees it,
its load, and the sign-in decision on the held-out photo (the vote of each frame with a face is the
"identify" cost; the face analysis per frame is reported beside it), with the total from upload to
recognised, the stored version's size and each process's peak RSS. Prints a table and writes JSON
(default ``bench/results/enrol_scale.json``).

The synthetic students are wide clusters (photos at cosine ~0.8 to their centre) in random
directions, so a real face's search bound is near 0.6 for each of them: probes scoring below that
(a stranger; the threshold here is the 0.55 floor) cannot prune the search, see ``Gallery.search``.

SQLite, not PostgreSQL: the stages measured are the app's Python (unsealing, training, pickling,
loading); the database's part is reading 150,000 small blobs and writing one large one, which the
embedded SQLite does locally without a network hop. PostgreSQL (production) stores the crops out of
line (TOAST), so reading the embeddings there does not wade through them as SQLite does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from bench.portal import write_json
from facelogin.pipeline.decide import NO_FACE, POOR_QUALITY, SEVERAL_FACES
from tests.live import REPO, portal_env, python_executable

PER_STUDENT = 5
NEW_STUDENT = "BENCH-NEW-0001"
DEFAULT_PERSON = REPO.parent / "shared" / "faces" / "johns" / "John_Simm"
SERVE_TIMEOUT_S = 900
GATED = (NO_FACE, SEVERAL_FACES, POOR_QUALITY)  # a frame the gallery is not searched for


# --- timing the app's own functions -------------------------------------------------------------
class Stages:
    """Wall-clock spans of wrapped functions, by stage name (time.time(): comparable across processes)."""

    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[float, float]]] = {}

    def wrap(self, owner: Any, name: str, stage: str, when: Callable[..., bool] | None = None) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if when is not None and not when(*args, **kwargs):
                return original(*args, **kwargs)
            started = time.time()
            try:
                return original(*args, **kwargs)
            finally:
                self.spans.setdefault(stage, []).append((started, time.time()))

        setattr(owner, name, timed)

    def seconds(self, stage: str) -> float | None:
        spans = self.spans.get(stage)
        return round(sum(b - a for a, b in spans), 3) if spans else None

    def first(self, stage: str) -> tuple[float, float] | None:
        spans = self.spans.get(stage)
        return spans[0] if spans else None

    def last(self, stage: str) -> tuple[float, float] | None:
        spans = self.spans.get(stage)
        return spans[-1] if spans else None

    def seconds_within(self, stage: str, within: tuple[float, float] | None) -> float | None:
        """The stage's spans inside ``within`` (e.g. the parts unsealed during one load), summed."""
        spans = [(a, b) for a, b in self.spans.get(stage, []) if within and within[0] <= a and b <= within[1]]
        return round(sum(b - a for a, b in spans), 3) if spans else None


def sealing_the_classifier(*args: Any, **kwargs: Any) -> bool:
    # the version's head (b"classifier") and its parts (b"classifier-part:<version>:<index>")
    return kwargs.get("context", b"").startswith(b"classifier")


def time_training(stages: Stages) -> None:
    """Wrap what ``classifier_train`` calls, looked up at call time, so its stages are timed."""
    from facelogin.pipeline import calibrate, decide
    from facelogin.services import biometrics, classifier_store, training

    stages.wrap(training, "classifier_train", "retrain task")
    stages.wrap(training, "gallery_state", "gallery state")
    stages.wrap(training, "load_trained_model", "active version load")
    stages.wrap(training, "_train_incremental", "incremental update")
    stages.wrap(training, "gallery_arrays", "gallery load + unseal")
    stages.wrap(calibrate, "calibrate", "recalibrate")
    stages.wrap(decide, "train_model", "train + calibrate")
    stages.wrap(decide.TrainedModel, "to_parts", "pickle")
    stages.wrap(biometrics, "seal", "seal", when=sealing_the_classifier)
    stages.wrap(classifier_store, "classifier_model_write", "write model")
    stages.wrap(training, "classifier_activate", "activate")


def training_stages(stages: Stages) -> dict[str, float | None]:
    """The retrain's stages; "store" is what is left of writing the model (pickle, seal and store its
    parts and head) and saving the row until activation: the database's part."""
    names = (
        "retrain task", "incremental update", "gallery state", "active version load", "gallery load + unseal",
        "recalibrate", "train + calibrate", "pickle", "seal", "activate",
    )
    out = {name: stages.seconds(name) for name in names}
    written, activated = stages.last("write model"), stages.last("activate")
    within = (written[0], written[1]) if written else None
    if written and activated:
        out["seal"] = stages.seconds_within("seal", within)  # this version's, not the earlier ones'
        out["pickle"] = stages.seconds_within("pickle", within)
        out["store"] = round(activated[0] - written[0] - (out["pickle"] or 0) - (out["seal"] or 0), 3)
    else:
        out["store"] = None
    if out["recalibrate"] is not None:  # incremental; what is left: copying, removing and adding students
        parts = ("gallery state", "active version load", "gallery load + unseal", "recalibrate")
        out["update gallery"] = round(out["incremental update"] - sum(out[p] or 0 for p in parts), 3)
    return out


def span(times: tuple[float, float] | None) -> float | None:
    return round(times[1] - times[0], 3) if times else None


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0)


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 0)
    return float("nan")


def reset_peak_rss() -> bool:
    """Start VmHWM (the peak RSS) afresh, so ``rss_mb("VmHWM")`` is the peak since (Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


# --- the seed process ---------------------------------------------------------------------------
def role_seed(args: argparse.Namespace) -> None:
    import hashlib
    from datetime import timedelta

    import numpy as np
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone
    from tqdm import tqdm

    from bench.gallery import DIM, synthetic_gallery
    from facelogin.pipeline.embed import SFaceEmbedder
    from facelogin import models
    from facelogin.services import biometrics, classifier_store, training
    from facelogin.services.recognition import model_name

    call_command("migrate", verbosity=0)
    User = get_user_model()
    consent_model = getattr(models, "FaceConsent", None)  # consent records, where the app has them
    rng = np.random.default_rng(args.seed)
    name = model_name()
    dims = args.dims or (SFaceEmbedder.dims if name == "sface" else DIM)  # SFace's are spread over DIM columns
    crop = os.urandom(args.crop_bytes)  # sealed like a crop; its content is never read
    started = time.time()
    with tqdm(total=args.students, desc="seeding students", unit=" students", file=sys.stderr) as bar:
        for first in range(0, args.students, args.batch):
            count = min(args.batch, args.students - first)
            X, _ = synthetic_gallery(count, rng, dims)
            enrolled_at = timezone.now() - timedelta(days=30)  # the gallery was enrolled before today
            with transaction.atomic():
                users = User.objects.bulk_create(
                    [User(username=f"S{first + i:07d}", password="!bench-unusable") for i in range(count)]
                )
                students = models.Student.objects.bulk_create(
                    [
                        models.Student(user=user, student_number=user.username, full_name=f"Student {user.username}")
                        for user in users
                    ]
                )
                if consent_model is not None:
                    consent_model.objects.bulk_create(
                        [consent_model(student=s, text_version="bench", method="import") for s in students]
                    )
                photos = []
                for i, student in enumerate(students):
                    for j in range(PER_STUDENT):
                        vector = X[i * PER_STUDENT + j]
                        photos.append(
                            models.EnrolmentPhoto(
                                student=student,
                                state=models.EnrolmentPhoto.State.ACCEPTED,
                                source_name=f"{j + 1}.jpg",
                                content_sha256=hashlib.sha256(vector.tobytes()).hexdigest(),
                                crop=biometrics.seal(crop, context=b"crop"),
                                embedding=biometrics.seal_embedding(vector),
                                model_name=name,
                                progress=100,
                                processed_at=enrolled_at,
                            )
                        )
                models.EnrolmentPhoto.objects.bulk_create(photos, batch_size=1000)
            bar.update(count)
    seed_s = time.time() - started

    stages = Stages()
    time_training(stages)
    print(f"training the first classifier on {args.students:,} students ...", file=sys.stderr, flush=True)
    version = training.classifier_train(trigger="bench: first classifier", full=True)
    version.refresh_from_db()
    if not version.is_active:
        raise SystemExit(f"the first classifier was not activated: {version.status} {version.error}")
    db = Path(os.environ["FACELOGIN_DATA_DIR"]) / "portal.sqlite3"
    write_json(
        args.workdir / "seed.json",
        {
            "students": args.students,
            "face_model": name,
            "dims": dims,
            "embeddings": version.gallery_embeddings,
            "seed_s": round(seed_s, 1),
            "full_retrain_s": stages.seconds("retrain task"),
            "full_retrain_stages": training_stages(stages),
            "version": version.pk,
            "threshold": version.thresholds.get("similarity"),
            "model_blob_mb": round(classifier_store.stored_model_bytes(version.pk) / 1e6, 1),
            "database_mb": round(sum(p.stat().st_size for p in db.parent.glob("portal.sqlite3*")) / 1e6, 0),
            "peak_rss_mb": peak_rss_mb(),
        },
    )


# --- the serving process ------------------------------------------------------------------------
def attempt(engine: Any, model: Any, photo: Path) -> dict:
    """The login's decision on webcam frames of one photo (tests/web/test_enrolment.py's path)."""
    from facelogin.services import recognition
    from tests import faces

    decider = recognition.new_decider(model)
    analyse_ms, vote_ms, vote_cpu_ms, reasons, best, searched, decision = [], [], [], [], [], [], None
    for shift in (0, 6, 12, 18, 24, 30, 36):
        frame = faces.webcam_frame(photo, shift=shift)
        t0 = time.perf_counter()
        analysis = engine.analyzer.analyze_bytes(frame, purpose="login")
        t1, c1 = time.perf_counter(), time.thread_time()
        vote = recognition.frame_vote(model, analysis)
        vote_ms.append((time.perf_counter() - t1) * 1000)
        vote_cpu_ms.append((time.thread_time() - c1) * 1000)  # the work, without waits for a busy CPU
        analyse_ms.append((t1 - t0) * 1000)
        reasons.append(vote.reason)
        best.append(round(vote.best_similarity, 3) if vote.reason not in GATED else None)
        if vote.reason not in GATED:
            searched.append(analysis)
        decision = decider.observe(vote)
        if decision.final:
            break
    # The same frames voted again, 20 times each: the steady per-frame cost (the attempt's own votes
    # are three or so, the first of them building the gallery's index after the change).
    again, again_cpu = [], []
    for analysis in searched * 20:
        t0, c0 = time.perf_counter(), time.thread_time()
        recognition.frame_vote(model, analysis)
        again.append((time.perf_counter() - t0) * 1000)
        again_cpu.append((time.thread_time() - c0) * 1000)
    return {
        "label": decision.label if decision is not None and decision.accepted else None,
        "frames": len(vote_ms),
        "reasons": reasons,
        "best_similarity": best,
        # Frames the gallery was searched for (a frame without a usable face costs nothing here).
        "searched": [i for i, r in enumerate(reasons) if r not in GATED],
        "vote_ms": [round(v, 2) for v in vote_ms],
        "vote_cpu_ms": [round(v, 2) for v in vote_cpu_ms],
        "analyse_ms": [round(v, 1) for v in analyse_ms],
        "identify_ms": round(statistics.median(again), 2) if again else None,
        "identify_cpu_ms": round(statistics.median(again_cpu), 2) if again else None,
    }


def role_serve(args: argparse.Namespace) -> None:
    from facelogin.pipeline import decide
    from facelogin.services import biometrics, training
    from facelogin.services.recognition import engine
    from facelogin.models import Student

    stages = Stages()
    stages.wrap(training, "load_trained_model", "load")
    stages.wrap(biometrics, "unseal", "unseal", when=sealing_the_classifier)
    stages.wrap(decide.TrainedModel, "from_parts", "unpickle")

    t0 = time.time()
    eng = engine()
    eng.warm_up()
    models_s = time.time() - t0
    rss_face_models = rss_mb()
    t0 = time.time()
    first_model = eng.current_model()
    first_version = eng._version_id
    first_load_s = time.time() - t0
    photo = faces_held_out(args.person)
    # The student is not enrolled yet: the photo must not sign anyone in. (Also what a serving
    # process has done before: its analyser and the gallery's index are warm.)
    before = attempt(eng, first_model, photo)
    rss_before = rss_mb()
    write_json(args.workdir / "serve-ready.json", {"version": first_version, "at": time.time()})

    peak_reset = reset_peak_rss()  # the peak while the new version is applied, below
    deadline = time.time() + SERVE_TIMEOUT_S
    while eng._version_id == first_version:
        if time.time() > deadline:
            raise SystemExit("serve: no new classifier version appeared")
        eng.current_model()
        time.sleep(0.02)
    noticed = stages.last("load")
    model = eng.current_model()
    rss_update_peak = rss_mb("VmHWM") if peak_reset else None
    rss_after_update = rss_mb()
    student = Student.objects.get(student_number=NEW_STUDENT)
    started = time.time()
    after = attempt(eng, model, photo)
    recognised_at = time.time()
    write_json(
        args.workdir / "serve.json",
        {
            "face_models_load_s": round(models_s, 1),
            "first_model_load_s": round(first_load_s, 2),
            "first_version": first_version,
            "version": eng._version_id,
            "before": before,
            "load_started_at": noticed[0],
            "load_s": round(noticed[1] - noticed[0], 3),
            # the head and every part unsealed in this load; from_parts (which unseals the parts) less those
            "unseal_s": stages.seconds_within("unseal", noticed),
            "unpickle_s": round(span(stages.last("unpickle")) - (stages.seconds_within("unseal", stages.last("unpickle")) or 0), 3)
            if stages.last("unpickle")
            else None,
            "attempt": after,
            "attempt_s": round(recognised_at - started, 3),
            "recognised": after["label"] == str(student.pk),
            "recognised_at": recognised_at,
            "rss_before_mb": rss_before,
            "peak_rss_mb": peak_rss_mb(),
            # what the serving process holds: the face models alone (before any classifier), then
            # steady with the first version (after an attempt), the peak while it applied the new
            # version (from when it started waiting for it until it held it), and right after
            "rss_face_models_mb": rss_face_models,
            "rss_steady_mb": rss_before,
            "rss_update_peak_mb": rss_update_peak,
            "rss_after_update_mb": rss_after_update,
        },
    )


def faces_held_out(person: Path) -> Path:
    from tests import faces

    held = faces.held_out_photos(person)
    if not held:
        raise SystemExit(f"{person} has no held-out photo (needs more than {faces.ENROL_COUNT})")
    return held[0]


# --- the worker process -------------------------------------------------------------------------
def role_worker(args: argparse.Namespace) -> None:
    from django.conf import settings

    from facelogin.models import ClassifierVersion, EnrolmentPhoto
    from facelogin.services import classifier_store, enrolment, training
    from facelogin.services.recognition import engine
    from facelogin.services.students import student_create
    from tests import faces

    t0 = time.time()
    engine().warm_up()
    models_s = time.time() - t0

    stages = Stages()
    time_training(stages)
    stages.wrap(enrolment, "photos_enqueue", "photo processing")
    debounce: dict[str, float] = {}
    schedule = training._schedule

    def schedule_after_countdown(token: int, reason: str, actor_id: int | None, delay: int) -> None:
        # Eager Celery ignores a countdown; a worker would hold the task this long. Wait it out.
        debounce.update(countdown=delay, started=time.time())
        time.sleep(delay)
        debounce["ended"] = time.time()
        schedule(token, reason, actor_id, delay)

    training._schedule = schedule_after_countdown

    student = student_create(student_number=NEW_STUDENT, full_name=args.person.name)
    try:
        from facelogin.services.consent import consent_record
    except ImportError:  # an app without consent records
        pass
    else:
        consent_record(student=student, method="signed_form")
    uploads = [enrolment.Upload(p.name, p.read_bytes()) for p in faces.enrol_photos(args.person)]
    rss_before = rss_mb()
    uploaded_at = time.time()
    enrolment.photos_submit(student=student, uploads=uploads)
    returned_at = time.time()

    photos = EnrolmentPhoto.objects.filter(student=student)
    accepted = photos.filter(state=EnrolmentPhoto.State.ACCEPTED)
    version = ClassifierVersion.objects.order_by("-pk").first()
    activated = stages.last("activate")
    crops = [len(bytes(c)) for c in accepted.values_list("crop", flat=True)]
    write_json(
        args.workdir / "worker.json",
        {
            "face_models_load_s": round(models_s, 1),
            "uploaded_at": uploaded_at,
            "returned_at": returned_at,
            "photos": photos.count(),
            "accepted": accepted.count(),
            "rejected": sorted(photos.exclude(state=EnrolmentPhoto.State.ACCEPTED).values_list("reason", flat=True)),
            "real_crop_bytes": round(statistics.mean(crops)) if crops else None,
            "store_upload_s": round(stages.first("photo processing")[0] - uploaded_at, 3),
            "photo_processing_s": stages.seconds("photo processing"),
            "debounce_countdown_s": debounce.get("countdown"),
            "debounce_s": round(debounce["ended"] - debounce["started"], 3) if "ended" in debounce else None,
            "request_to_debounce_s": round(debounce["started"] - stages.last("photo processing")[1], 3)
            if "started" in debounce
            else None,
            "task_start_delay_s": round(stages.first("retrain task")[0] - debounce["ended"], 3)
            if "ended" in debounce and stages.first("retrain task")
            else None,
            "stages": training_stages(stages),
            "activate_started_at": activated[0] if activated else None,
            "activated_at": activated[1] if activated else None,
            "version": version.pk,
            "version_status": version.status,
            "version_active": version.is_active,
            "version_error": version.error,
            "gallery_students": version.gallery_students,
            "threshold": version.thresholds.get("similarity"),
            "holdout": (version.metrics or {}).get("holdout"),
            "incremental": (version.metrics or {}).get("incremental"),
            "reloaded": f"{version.metrics['incremental']['students_reloaded']} students"
            if (version.metrics or {}).get("incremental")
            else "every student",
            "model_blob_mb": round(classifier_store.stored_model_bytes(version.pk) / 1e6, 3),
            "debounce_setting_s": settings.FACELOGIN["RETRAIN_DEBOUNCE_SECONDS"],
            "rss_before_mb": rss_before,
            "peak_rss_mb": peak_rss_mb(),
        },
    )


# --- the orchestrating process ------------------------------------------------------------------
def child(role: str, args: argparse.Namespace, env: dict[str, str]) -> subprocess.Popen:
    command = [python_executable(), "-m", "bench.enrol_scale", "--role", role, "--workdir", str(args.workdir)]
    command += ["--students", str(args.students), "--seed", str(args.seed), "--person", str(args.person)]
    command += ["--batch", str(args.batch), "--crop-bytes", str(args.crop_bytes), "--dims", str(args.dims or 0)]
    return subprocess.Popen(command, cwd=REPO, env=env)


def wait_file(path: Path, process: subprocess.Popen, timeout: float) -> dict:
    deadline = time.time() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise SystemExit(f"{path.stem}: the process ended ({process.returncode}) without writing {path.name}")
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {path.name}")
        time.sleep(0.2)
    return json.loads(path.read_text())


def run(args: argparse.Namespace) -> dict:
    env = portal_env(
        args.workdir / "data",
        FACELOGIN_WARM_UP=False,
        DJANGO_LOG_LEVEL="WARNING",
        CELERY_TASK_ALWAYS_EAGER=True,
        FACELOGIN_RETRAIN_DEBOUNCE_SECONDS=args.debounce,
        PYTHONPATH=str(REPO),
    )
    if child("seed", args, env).wait() != 0:
        raise SystemExit("seeding failed")
    seed = json.loads((args.workdir / "seed.json").read_text())
    serve = child("serve", args, env)
    try:
        wait_file(args.workdir / "serve-ready.json", serve, SERVE_TIMEOUT_S)
        if child("worker", args, env).wait() != 0:
            raise SystemExit("the worker failed")
        worker = json.loads((args.workdir / "worker.json").read_text())
        served = wait_file(args.workdir / "serve.json", serve, SERVE_TIMEOUT_S)
    finally:
        if serve.poll() is None:
            serve.terminate()
            serve.wait(timeout=30)
    return summarise(seed, worker, served)


def summarise(seed: dict, worker: dict, served: dict) -> dict:
    t = worker["stages"]
    upload = worker["uploaded_at"]
    attempt_ = served["attempt"]
    stages = [
        ("store the upload (seal originals)", worker["store_upload_s"]),
        (f"photo processing ({worker['accepted']} of {worker['photos']} accepted)", worker["photo_processing_s"]),
        ("retrain request", worker["request_to_debounce_s"]),
        (f"debounce (countdown {worker['debounce_countdown_s']} s)", worker["debounce_s"]),
        ("gallery state (photo counts, no embeddings)", t["gallery state"]),
        ("active version load + unseal + unpickle", t["active version load"]),
        (f"gallery load + unseal ({worker['reloaded']})", t["gallery load + unseal"]),
        ("copy the gallery, apply the changes", t.get("update gallery")),
        ("recalibrate", t["recalibrate"]),
        ("train + calibrate (incl. held-out check)", t["train + calibrate"]),
        ("pickle", t["pickle"]),
        ("seal", t["seal"]),
        ("store the version", t["store"]),
        # One row: the serving process can see the commit before SQLite's checkpoint lets the
        # activation return, so the two overlap. Refresh: every FACELOGIN_MODEL_REFRESH_SECONDS.
        ("activate, until the serving process sees it", round(served["load_started_at"] - worker["activate_started_at"], 3)),
        (
            "serving process loads it"
            + (" (applies the changes)" if worker["incremental"] else " (unseal + unpickle)"),
            served["load_s"],
        ),
        (f"sign-in decision ({attempt_['frames']} frames)", served["attempt_s"]),
    ]
    return {
        "students": seed["students"],
        "face_model": seed["face_model"],
        "dims": seed["dims"],
        "embeddings": seed["embeddings"],
        "seed": seed,
        "worker": worker,
        "serve": served,
        "stages": stages,
        "total_s": round(served["recognised_at"] - upload, 2),
        "recognised": served["recognised"],
        "before_enrolment_label": served["before"]["label"],
        "load_average": os.getloadavg(),
    }


def print_report(result: dict) -> None:
    seed, worker, served = result["seed"], result["worker"], result["serve"]
    load = ", ".join(f"{v:.1f}" for v in result["load_average"])
    print(
        f"\n{result['students']:,} students, {result['embeddings']:,} embeddings ({result['face_model']}: "
        f"{result['dims']} numbers each); machine load average {load}"
    )
    print(f"seeding: {seed['seed_s']} s; database {seed['database_mb']:.0f} MB")
    fr = seed["full_retrain_stages"]
    print(
        f"full retrain at {result['students']:,} (first classifier): {seed['full_retrain_s']} s "
        f"(gallery load + unseal {fr['gallery load + unseal']} s, train + calibrate {fr['train + calibrate']} s, "
        f"pickle {fr['pickle']} s, seal {fr['seal']} s, store {fr['store']} s), peak RSS {seed['peak_rss_mb']:.0f} MB"
    )
    print(f"\n{'stage':<48} {'seconds':>9}")
    for name, seconds in result["stages"]:
        print(f"{name:<48} {seconds if seconds is not None else '-':>9}")
    print(f"{'total: upload to active and recognised':<48} {result['total_s']:>9}")
    attempt_, before = served["attempt"], served["before"]

    def searched(run: dict, key: str) -> str:
        values = [run[key][i] for i in run["searched"]]
        return f"{statistics.median(values):.2f}" if values else "-"

    print(
        f"\nrecognised: {result['recognised']} (before enrolment: {result['before_enrolment_label']}); "
        f"identify (the vote of a frame with a face): in the attempt {searched(attempt_, 'vote_ms')} ms median "
        f"(CPU {searched(attempt_, 'vote_cpu_ms')} ms) over {len(attempt_['searched'])} frames, "
        f"steady {attempt_['identify_ms']} ms (CPU {attempt_['identify_cpu_ms']} ms); "
        f"before enrolment, a stranger then: steady {before['identify_ms']} ms (CPU {before['identify_cpu_ms']} ms); "
        f"face analysis {statistics.median(attempt_['analyse_ms']):.0f} ms per frame"
    )
    print(
        f"serving: unseal {served['unseal_s']} s, unpickle {served['unpickle_s']} s; "
        f"RSS {served['rss_face_models_mb']:.0f} MB with the face models alone, {served['rss_steady_mb']:.0f} MB steady with "
        f"the first version, peak {served['rss_update_peak_mb'] or float('nan'):.0f} MB while applying the new one, "
        f"{served['rss_after_update_mb']:.0f} MB after; peak over its life {served['peak_rss_mb']:.0f} MB"
    )
    print(
        f"worker: peak RSS {worker['peak_rss_mb']:.0f} MB ({worker['rss_before_mb']:.0f} MB before the upload); "
        f"stored version {worker['model_blob_mb']} MB (the full model: {seed['model_blob_mb']} MB); "
        f"threshold {worker['threshold']}; version {worker['version']} "
        f"{worker['version_status']}, held-out {worker['holdout'] and worker['holdout'].get('rank1_accuracy')}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=30_000)
    parser.add_argument("--person", type=Path, default=DEFAULT_PERSON, help="folder of a real person's photos")
    parser.add_argument("--debounce", type=int, default=10, help="FACELOGIN_RETRAIN_DEBOUNCE_SECONDS (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=2_000, help="students per bulk insert")
    parser.add_argument("--crop-bytes", type=int, default=7_000, help="size of the stand-in for each face crop")
    parser.add_argument("--dims", type=int, default=0, help="numbers per synthetic embedding (default: the face model's own: 128 for SFace, 512 for FaceNet)")
    parser.add_argument("--json", type=Path, default=Path("bench/results/enrol_scale.json"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary portal directory")
    parser.add_argument("--role", choices=["seed", "serve", "worker"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.person = args.person.resolve()

    if args.role:
        import django

        django.setup()
        {"seed": role_seed, "serve": role_serve, "worker": role_worker}[args.role](args)
        return 0

    args.workdir = Path(tempfile.mkdtemp(prefix="enrol-scale-"))
    try:
        result = run(args)
    finally:
        if args.keep:
            print(f"kept {args.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(args.workdir, ignore_errors=True)
    result["command"] = "python -m bench.enrol_scale " + " ".join(sys.argv[1:] if argv is None else argv)
    print_report(result)
    write_json(args.json, result)
    print(f"wrote {args.json}", file=sys.stderr)
    return 0 if result["recognised"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
