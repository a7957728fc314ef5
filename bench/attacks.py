"""Attack benchmark: what an impostor with a student's photo, a replayed frame or a recorded video gets
from the live face sign-in with the liveness challenge on, and how often the real student is refused.

    python -m bench.attacks --quick      # 3 people attacked, a 17-person gallery: about 2 minutes
    python -m bench.attacks              # every enrolled person of ORL, Yale and johns: see the estimate it prints

Everything goes through the code production runs: the portal's ASGI application (``portal.asgi``) with
its real ``FaceLoginConsumer``, driven by Channels' ``WebsocketCommunicator`` exactly as the browser
page drives it (session cookie, Origin, one frame in flight, no faster than the ``frame_interval_ms``
the server announces). So the frame analysis, the duplicate-frame rule, the liveness challenge (random,
from the server), the face-track rule and the decider are the live ones, with the live defaults. The
portal is configured only by environment variables set before ``django.setup()``: a throw-away SQLite
database in a temporary directory (``migrate``), the throttles lifted (every attempt comes from one
client), liveness on. The gallery is enrolled through the enrolment services (consent recorded, each
person's first ``--enroll`` photos through ``photos_submit`` and the in-process task, rejections and
all), then ``classifier_train`` calibrates and activates a classifier for ``--target-fpir``.

Per attacked person, from their held-out photos (never enrolled), one attempt of each:

* ``still``: a photo held in front of the camera for the whole attempt: the same picture each frame,
  with a hand's jitter (a few pixels, a degree, 1 % scale) and fresh sensor noise and JPEG encoding,
  so no two frames have the same bytes;
* ``replay``: one frame's bytes sent again and again (the client stops after ``--replays``);
* ``recorded``: the frames of this person's ``genuine`` attempt (which followed that attempt's
  challenge), replayed byte for byte against a new attempt with a new random challenge;
* ``every_move``: a recording in which the person does every movement twice over (left, right,
  closer, back, left, right, closer, back), replayed whatever the challenge asks;
* ``mirror``: ONE slightly turned photo, shown as it is or flipped (a phone flips a picture in one
  tap) and held closer or further, following the announced challenge as far as a flat picture can;
  when the turn it needs goes the wrong way from where it started, it jumps aside once to start a
  new face track (the challenge restarts; the clock does not), and gives up when that is not enough
  (two turns, both ways from one baseline);
* ``genuine``: the person following the announced challenge: frontal held-out photos to look at the
  camera, a photo with a real head turn (and its mirror image) for the turns, the frontal photo
  larger or smaller for closer and back (``tests/faces.challenge_frame`` does the same). The turn
  comes from a held-out photo, else from an enrolled one (counted apart: every student can turn
  their head, few datasets hold a held-out photo of it); people with neither are "n/a".

Note what ``genuine`` is made of: photos. The liveness check sees only MTCNN's five landmarks and the
box, so an impostor who owns a frontal and a turned photo of the student, on a screen, is the same
input; the ``genuine`` row is the false-rejection rate AND the success rate of that two-photo attack.

Prints the settings, one table row per attack and writes JSON (default ``bench/results/attacks.json``,
git-ignored) with every attempt: person, challenge, outcome, the audit row's reason and challenge report.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import math
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from bench.accuracy import Identity, find_identities
from bench.portal import write_json

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FACELOGIN_SHARED_DIR", REPO.parent / "shared")).resolve()
DEFAULT_DATASETS = [SHARED / "faces" / name for name in ("orl", "yale", "johns")]
DEFAULT_JSON = REPO / "bench" / "results" / "attacks.json"
ATTACKS = ("still", "replay", "recorded", "every_move", "mirror", "genuine")
TITLES = {
    "still": "(a) still photo, hand jitter",
    "replay": "(b) one frame replayed",
    "recorded": "(c) recorded genuine, new challenge",
    "every_move": "(c2) recording of every movement",
    "mirror": "(e) one photo + its mirror image",
    "genuine": "(d) genuine: follows the challenge",
}

# The browser page (static/js/face_login.js): 640x480 camera, JPEG quality 0.8.
FRAME_SIZE = (640, 480)
BACKGROUND = (118, 122, 128)
FACE_HEIGHT = 300  # the photo's height in the frame (tests/faces.webcam_frame): a face at laptop distance
CLOSER_HEIGHT, BACK_HEIGHT = 400, 210  # x1.33 and x0.7: past the challenge's x1.2 and x0.83
JUMP_PX = 170  # sideways, past the track rule's 0.6 face widths at FACE_HEIGHT
# Held-out photos are sorted by pose for the genuine sequence and the mirror attack (yaw measured on the
# frame the server sees, degrees-like, quality.estimate_pose).
FRONTAL_YAW = 8.0  # "looks at the camera"
TURNED_YAW = 17.0  # a real head turn beyond the baseline, its mirror image the other way (the challenge asks for 15)
MIRROR_MAX_YAW = 13.0  # a picture the challenge still takes as frontal (14), with room for jitter

# Bench-only portal settings. The throttles are lifted (one client makes every attempt); everything
# else (frame budget, deadline, rate cap, liveness, classifier, thresholds) stays at the defaults.
BENCH_ENV = {
    "FACELOGIN_LIVENESS": "1",
    "FACELOGIN_THROTTLE_IP_ATTEMPTS": "1000000",
    "FACELOGIN_THROTTLE_SESSION_ATTEMPTS": "1000000",
    "FACELOGIN_THROTTLE_STUDENT_ATTEMPTS": "1000000",
    "FACELOGIN_THROTTLE_FAILURES": "1000000",
    "FACELOGIN_WARM_UP": "0",  # no daphne here; the engine loads on first use
}
# A production environment must not leak into the bench portal (portal/env.py reads NAME_FILE first).
DROPPED_ENV = ("DATABASE_URL", "REDIS_URL", "DJANGO_DEBUG", "DJANGO_SECRET_KEY", "FACELOGIN_BIOMETRIC_KEYS")


# --- the bench portal ----------------------------------------------------------------------------


def configure_portal(workdir: Path, *, target_fpir: float) -> None:
    """Environment for a throw-away portal in ``workdir``, then ``django.setup()`` and ``migrate``."""
    for name in DROPPED_ENV:
        os.environ.pop(name, None)
        os.environ.pop(f"{name}_FILE", None)
    os.environ.update(BENCH_ENV)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(40),  # bench-only, thrown away with the database
        FACELOGIN_BIOMETRIC_KEYS=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        FACELOGIN_DATA_DIR=str(workdir),
        FACELOGIN_MODEL_DIR=os.environ.get("FACELOGIN_MODEL_DIR") or str(REPO / "data" / "models"),
        FACELOGIN_TARGET_FPIR=repr(target_fpir),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


@dataclass
class Person:
    identity: Identity
    number: str  # student number
    label: str  # the classifier's label: the student's primary key
    enrolled: int  # the first this many photos were submitted for enrolment
    accepted: int  # ... and this many accepted

    @property
    def dataset(self) -> str:
        return self.identity.dataset

    @property
    def held_out(self) -> tuple[Path, ...]:
        return self.identity.images[self.enrolled :]


def enrol(identities: list[Identity], *, count: int, progress: tqdm) -> list[Person]:
    """Students, consent and their first photos, through the enrolment services (tasks in-process)."""
    from facelogin.models import EnrolmentPhoto, FaceConsent
    from facelogin.services.consent import consent_record
    from facelogin.services.enrolment import Upload, photos_submit
    from facelogin.services.students import student_create

    people = []
    for index, identity in enumerate(identities, start=1):
        student = student_create(student_number=f"B{index:05d}", full_name=identity.name)
        consent_record(student=student, method=FaceConsent.Method.IMPORT)
        uploads = [Upload(path.name, path.read_bytes()) for path in identity.images[:count]]
        photos = photos_submit(student=student, uploads=uploads, retrain=False)
        accepted = EnrolmentPhoto.objects.filter(pk__in=[p.pk for p in photos], state=EnrolmentPhoto.State.ACCEPTED).count()
        people.append(Person(identity, student.student_number, str(student.pk), count, accepted))
        progress.update(len(uploads))
    return people


# --- frames --------------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def source(path: Path, mirror: bool) -> Image.Image:
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirror else image


class Camera:
    """A webcam pointed at a picture held in a hand: every frame has new jitter, noise and JPEG bytes."""

    def __init__(self, rng: np.random.Generator, *, jitter: bool = True) -> None:
        self.rng = rng
        self.jitter = jitter

    def frame(self, photo: Path, *, mirror: bool = False, face_height: int = FACE_HEIGHT, offset: int = 0) -> bytes:
        image = source(photo, mirror)
        rng = self.rng
        scale = face_height / image.height * (1 + (rng.normal(0, 0.01) if self.jitter else 0))
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        face = image.resize(size, Image.Resampling.BICUBIC)
        if self.jitter:
            face = face.rotate(float(rng.normal(0, 1.0)), resample=Image.Resampling.BICUBIC, fillcolor=BACKGROUND)
        dx, dy = (rng.normal(0, 2, 2) if self.jitter else (0, 0))
        canvas = Image.new("RGB", FRAME_SIZE, BACKGROUND)
        left = (FRAME_SIZE[0] - size[0]) // 2 + offset + round(dx)
        top = (FRAME_SIZE[1] - size[1]) // 2 + round(dy)
        canvas.paste(face, (left, top))
        pixels = np.asarray(canvas, dtype=np.int16) + np.rint(rng.normal(0, 2.0, (FRAME_SIZE[1], FRAME_SIZE[0], 3))).astype(np.int16)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=80)
        return buffer.getvalue()


@dataclass(frozen=True)
class Pose:
    photo: Path
    yaw: float  # the photo as it is, on the frame the server sees
    mirror_yaw: float  # its mirror image: MTCNN's points are not mirror-symmetric, so not exactly -yaw
    votes_for_person: bool
    similarity: float

    def mirrored_for(self, *, larger: bool) -> bool:
        """Mirror the photo to show the larger (or the smaller) of its two yaws?"""
        return (self.mirror_yaw > self.yaw) == larger

    def yaw_as(self, mirror: bool) -> float:
        return self.mirror_yaw if mirror else self.yaw


def survey(person: Person, photos: tuple[Path, ...]) -> list[Pose]:
    """Each photo (and its mirror image) as the server sees it, one frame without jitter: the pose, and
    whether it votes for the person. An attacker can measure the same offline with the same MTCNN."""
    from facelogin.services import recognition

    engine = recognition.engine()
    model = engine.current_model()
    poses = []
    for photo in photos:
        analysis, mirrored = analyse(photo, False), analyse(photo, True)
        if analysis is None or analysis.face is None or analysis.quality is None:
            continue
        mirror_yaw = mirrored.quality.pose.yaw if mirrored is not None and mirrored.quality is not None else math.nan
        vote = recognition.frame_vote(model, analysis)
        similarity = vote.similarity if math.isfinite(vote.similarity) else -1.0
        poses.append(Pose(photo, analysis.quality.pose.yaw, mirror_yaw, vote.label == person.label, similarity))
    return poses


@lru_cache(maxsize=4096)
def analyse(photo: Path, mirror: bool):
    from facelogin.pipeline.errors import PipelineError
    from facelogin.services.recognition import engine

    frame = Camera(np.random.default_rng(0), jitter=False).frame(photo, mirror=mirror)
    try:
        return engine().analyzer.analyze_bytes(frame, purpose="login")
    except PipelineError:
        return None


@dataclass
class Plan:
    """Which held-out photos each attack uses for one person (None: the attack is not possible)."""

    still: Path | None = None
    frontal: list[Path] = field(default_factory=list)
    turned: Pose | None = None
    turn_from_enrolled: bool = False  # no held-out photo turns far enough: one of the enrolled photos does
    mirror: Pose | None = None


def turned_beyond(poses: list[Pose], baseline: float) -> Pose | None:
    """The photo whose two orientations reach furthest past ``baseline`` (the yaw the first frontal frame
    sets) both ways, if both reach TURNED_YAW."""

    def reach(p: Pose) -> float:
        return min(max(p.yaw, p.mirror_yaw) - baseline, baseline - min(p.yaw, p.mirror_yaw))

    turned = [p for p in poses if math.isfinite(p.mirror_yaw) and reach(p) >= TURNED_YAW]
    return max(turned, key=reach) if turned else None


def plan_for(person: Person) -> Plan:
    poses = survey(person, person.held_out)
    voting = sorted((p for p in poses if p.votes_for_person), key=lambda p: -p.similarity)
    plan = Plan(still=(voting[0].photo if voting else (poses[0].photo if poses else None)))
    frontal = [p for p in sorted(voting, key=lambda p: abs(p.yaw)) if abs(p.yaw) <= FRONTAL_YAW][:3]
    plan.frontal = [p.photo for p in frontal]
    if frontal:
        plan.turned = turned_beyond(poses, frontal[0].yaw)
        if plan.turned is None:
            # Every real student can turn their head; the datasets rarely hold a held-out photo of it.
            # The turn frames then come from an enrolled photo (the frontal frames, which carry the
            # identity votes, stay held-out); such attempts are counted apart.
            plan.turned = turned_beyond(survey(person, person.identity.images[: person.enrolled]), frontal[0].yaw)
            plan.turn_from_enrolled = plan.turned is not None
    # The attacker's one photo: the widest swing between it and its mirror image while the challenge
    # still takes either as frontal.
    candidates = [p for p in voting if abs(p.yaw) <= MIRROR_MAX_YAW and abs(p.mirror_yaw) <= MIRROR_MAX_YAW]
    plan.mirror = max(candidates, key=lambda p: abs(p.yaw - p.mirror_yaw)) if candidates else None
    return plan


# --- one attempt over the websocket --------------------------------------------------------------


@dataclass
class Result:
    person: str
    dataset: str
    attack: str
    accepted: bool = False
    final: str = ""  # the server's last message: "success", "failed: <reason>", "throttled", or "gave up"
    close_code: int | None = None
    audit_reason: str = ""
    challenge: list[str] = field(default_factory=list)
    challenge_report: dict = field(default_factory=dict)
    frames_sent: int = 0
    frames_analysed: int = 0  # answered with a "frame" message (not duplicate, bad image, busy)
    duplicates: int = 0
    seconds: float = 0.0
    recorded_under: list[str] = field(default_factory=list)  # "recorded": the challenge the recording followed
    note: str = ""


# policy(reply) -> next frame bytes, or None to stop sending; ``reply`` is the last message (hello first).
Policy = Callable[[dict], "bytes | None"]


async def attempt(policy: Policy, *, person: Person, attack: str, max_sends: int, recording: list[bytes] | None = None) -> Result:
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.contrib.sessions.backends.db import SessionStore

    from facelogin import protocol
    from facelogin.models import FaceAttempt
    from portal.asgi import application

    def new_session() -> tuple[str, int]:
        session = SessionStore()
        session.create()
        last = FaceAttempt.objects.order_by("-id").values_list("id", flat=True).first() or 0
        return session.session_key, last

    session_key, before = await sync_to_async(new_session)()
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), (b"cookie", f"sessionid={session_key}".encode())]
    communicator = WebsocketCommunicator(application, "/" + protocol.WEBSOCKET_PATH, headers=headers)
    result = Result(person.identity.name, person.dataset, attack)
    started = time.monotonic()
    connected, _ = await communicator.connect(timeout=60)
    if not connected:
        raise RuntimeError("the websocket refused the connection")
    try:
        reply = json.loads(await communicator.receive_from(timeout=60))
        interval = reply.get("frame_interval_ms", 150) / 1000
        if reply.get("challenge"):
            result.challenge.append(reply["challenge"]["step"])
        last_sent = 0.0
        while reply["type"] in ("hello", "frame", "error"):
            data = policy(reply) if result.frames_sent < max_sends else None
            if data is None:  # the client stops: the attempt is abandoned, not decided
                result.final = "gave up"
                break
            await asyncio.sleep(max(0.0, last_sent + interval - time.monotonic()))  # the page's pacing
            last_sent = time.monotonic()
            await communicator.send_to(bytes_data=data)
            result.frames_sent += 1
            if recording is not None:
                recording.append(data)
            message = await communicator.receive_output(timeout=120)
            if message["type"] == "websocket.close":
                result.final, result.close_code = "closed", message.get("code")
                break
            reply = json.loads(message["text"])
            if reply["type"] == "frame":
                result.frames_analysed += 1
                step = step_of(reply)
                if step and (not result.challenge or result.challenge[-1] != step):
                    result.challenge.append(step)
            elif reply["type"] == "error" and reply.get("code") == protocol.Error.DUPLICATE:
                result.duplicates += 1
        if reply["type"] in ("success", "failed", "throttled"):
            result.accepted = reply["type"] == "success"
            result.final = reply["type"] + (f": {reply['reason']}" if reply["type"] == "failed" else "")
            closing = await communicator.receive_output(timeout=30)
            result.close_code = closing.get("code")
    finally:
        await communicator.disconnect(timeout=30)
    result.seconds = round(time.monotonic() - started, 2)

    def audit_row():
        return FaceAttempt.objects.filter(id__gt=before).order_by("id").values("outcome", "reason", "challenge").first()

    row = await sync_to_async(audit_row)()
    if row is not None:
        result.audit_reason = f"{row['outcome']}" + (f": {row['reason']}" if row["reason"] else "")
        result.challenge_report = row["challenge"] or {}
        if result.challenge_report.get("steps"):
            result.challenge = list(result.challenge_report["steps"])
    return result


def step_of(reply: dict) -> str | None:
    return (reply.get("challenge") or {}).get("step")


# --- attackers and the student -------------------------------------------------------------------


def still_policy(camera: Camera, photo: Path) -> Policy:
    return lambda reply: camera.frame(photo)


def replay_policy(frame: bytes) -> Policy:
    return lambda reply: frame


def recording_policy(frames: list[bytes]) -> Policy:
    remaining = iter(frames)
    return lambda reply: next(remaining, None)


def genuine_policy(camera: Camera, plan: Plan) -> Policy:
    """Look at the camera for a few frames, then do what each answer's challenge asks."""
    turned = plan.turned
    sent = [0]

    def next_frame(reply: dict) -> bytes:
        index, sent[0] = sent[0], sent[0] + 1
        frontal = plan.frontal[index % len(plan.frontal)]
        step = step_of(reply) if index >= 4 else None
        if step in ("turn_left", "turn_right"):
            # turn_left: the yaw must grow past the baseline; turn_right: fall below it.
            return camera.frame(turned.photo, mirror=turned.mirrored_for(larger=step == "turn_left"))
        if step == "move_closer":
            return camera.frame(frontal, face_height=CLOSER_HEIGHT)
        if step == "move_back":
            return camera.frame(frontal, face_height=BACK_HEIGHT)
        return camera.frame(frontal)

    return next_frame


def every_move_recording(camera: Camera, plan: Plan) -> list[bytes]:
    """Four frames looking at the camera, then left, right, closer, back, twice over (a frontal frame between)."""
    turned, frontal = plan.turned, plan.frontal
    frames = [camera.frame(frontal[i % len(frontal)]) for i in range(4)]
    for _ in range(2):
        for move in ("turn_left", "turn_right", "move_closer", "move_back"):
            for _ in range(2):
                if move.startswith("turn"):
                    frames.append(camera.frame(turned.photo, mirror=turned.mirrored_for(larger=move == "turn_left")))
                else:
                    frames.append(camera.frame(frontal[0], face_height=CLOSER_HEIGHT if move == "move_closer" else BACK_HEIGHT))
            frames.append(camera.frame(frontal[0]))
    return frames


def mirror_policy(camera: Camera, pose: Pose, rng: random.Random) -> Policy:
    """One picture, flipped or not, nearer or further; a jump aside restarts the track when needed."""
    state = {"mirror": None, "at_baseline": 0, "offset": 0, "jumped": False}

    yaw = pose.yaw_as

    def next_frame(reply: dict) -> bytes | None:
        step = step_of(reply)
        if state["mirror"] is None:  # the first step is known from hello: start where the turn can be made
            if step == "turn_left":
                state["mirror"] = yaw(True) < yaw(False)
            elif step == "turn_right":
                state["mirror"] = yaw(True) > yaw(False)
            else:
                state["mirror"] = rng.random() < 0.5  # the turn comes second, unseen yet
        if state["at_baseline"] < 3:  # the baseline, and three identity votes on this track
            state["at_baseline"] += 1
            return camera.frame(pose.photo, mirror=state["mirror"], offset=state["offset"])
        if step in ("turn_left", "turn_right"):
            other = not state["mirror"]
            grows = yaw(other) > yaw(state["mirror"])
            if grows == (step == "turn_left"):
                return camera.frame(pose.photo, mirror=other, offset=state["offset"])
            if state["jumped"]:  # two turns, both ways from one baseline: one picture cannot; give up
                return None
            # The flip turns the wrong way from this baseline: jump aside (a new track; the challenge
            # restarts) and start again from the other side.
            state["mirror"], state["at_baseline"], state["jumped"] = other, 1, True
            state["offset"] = -JUMP_PX if state["offset"] > 0 else JUMP_PX
            return camera.frame(pose.photo, mirror=other, offset=state["offset"])
        if step == "move_closer":
            return camera.frame(pose.photo, mirror=state["mirror"], face_height=CLOSER_HEIGHT, offset=state["offset"])
        if step == "move_back":
            return camera.frame(pose.photo, mirror=state["mirror"], face_height=BACK_HEIGHT, offset=state["offset"])
        return camera.frame(pose.photo, mirror=state["mirror"], offset=state["offset"])

    return next_frame


async def attack_person(person: Person, plan: Plan, attacks: tuple[str, ...], *, camera: Camera, rng: random.Random, replays: int) -> list[Result]:
    from django.conf import settings

    max_frames = settings.FACELOGIN["MAX_FRAMES"]
    budget = max_frames + 10  # the server ends an attempt at its frame budget; this only guards the client
    results: list[Result] = []

    def skipped(attack: str, why: str) -> None:
        results.append(Result(person.identity.name, person.dataset, attack, final="not possible", note=why))

    if "still" in attacks:
        if plan.still is None:
            skipped("still", "no face found in any held-out photo")
        else:
            results.append(await attempt(still_policy(camera, plan.still), person=person, attack="still", max_sends=budget))
    if "replay" in attacks:
        if plan.still is None:
            skipped("replay", "no face found in any held-out photo")
        else:
            frame = camera.frame(plan.still)
            results.append(await attempt(replay_policy(frame), person=person, attack="replay", max_sends=replays))
    recording: list[bytes] = []
    follows = bool(plan.frontal) and plan.turned is not None
    why_not = "no photo of them turns far enough both ways" if plan.frontal else "no frontal held-out photo recognised as them"
    if "genuine" in attacks or "recorded" in attacks:
        if not follows:
            if "genuine" in attacks:
                skipped("genuine", why_not)
        else:
            genuine = await attempt(genuine_policy(camera, plan), person=person, attack="genuine", max_sends=budget, recording=recording)
            genuine.note = "turn from an enrolled photo" if plan.turn_from_enrolled else ""
            if "genuine" in attacks:
                results.append(genuine)
    if "recorded" in attacks:
        if not recording:
            skipped("recorded", why_not)
        else:
            result = await attempt(recording_policy(recording), person=person, attack="recorded", max_sends=budget)
            result.recorded_under = list(genuine.challenge)
            results.append(result)
    if "every_move" in attacks:
        if not follows:
            skipped("every_move", why_not)
        else:
            frames = every_move_recording(camera, plan)
            results.append(await attempt(recording_policy(frames), person=person, attack="every_move", max_sends=budget))
    if "mirror" in attacks:
        if plan.mirror is None:
            skipped("mirror", "no held-out photo recognised as them within the frontal range")
        else:
            result = await attempt(mirror_policy(camera, plan.mirror, rng), person=person, attack="mirror", max_sends=budget)
            result.note = f"photo yaw {plan.mirror.yaw:+.1f}, mirrored {plan.mirror.mirror_yaw:+.1f}"
            results.append(result)
    return results


# --- report --------------------------------------------------------------------------------------


def summarise(results: list[Result], attacks: tuple[str, ...]) -> list[dict]:
    rows = []
    for attack in attacks:
        ran = [r for r in results if r.attack == attack and r.final != "not possible"]
        accepted = [r for r in ran if r.accepted]
        refused = Counter((r.audit_reason or r.final) for r in ran if not r.accepted)
        row = {
            "attack": attack,
            "title": TITLES[attack],
            "attempts": len(ran),
            "accepted": len(accepted),
            "refused": len(ran) - len(accepted),
            "not_possible": sum(r.attack == attack and r.final == "not possible" for r in results),
            "refusals": dict(refused.most_common()),
            "frames_median": statistics.median([r.frames_sent for r in ran]) if ran else None,
            "seconds_median": round(statistics.median([r.seconds for r in ran]), 1) if ran else None,
        }
        by_dataset: dict[str, list[int]] = {}
        for r in ran:
            by_dataset.setdefault(r.dataset, [0, 0])
            by_dataset[r.dataset][0] += r.accepted
            by_dataset[r.dataset][1] += 1
        row["accepted_by_dataset"] = {name: f"{a}/{n}" for name, (a, n) in sorted(by_dataset.items())}
        if attack == "genuine":
            row["false_rejection_rate"] = round(row["refused"] / len(ran), 3) if ran else None
            row["turn_from_enrolled_photo"] = sum(r.note == "turn from an enrolled photo" for r in ran)
        if attack == "mirror":
            one_turn = [r for r in ran if sum(step.startswith("turn") for step in r.challenge) == 1]
            row["accepted_when_one_turn"] = f"{sum(r.accepted for r in one_turn)}/{len(one_turn)}"
            row["accepted_when_two_turns"] = f"{sum(r.accepted for r in ran if r not in one_turn)}/{len(ran) - len(one_turn)}"
        if attack == "recorded":
            same = [r for r in ran if r.challenge and r.challenge == r.recorded_under]
            row["same_challenge_as_recording"] = len(same)
            row["accepted_with_a_different_challenge"] = sum(r.accepted for r in ran if r not in same)
        rows.append(row)
    return rows


def print_table(rows: list[dict], file=sys.stdout) -> None:
    head = f"{'attack':<38} {'attempts':>8} {'accepted':>8} {'refused':>8} {'n/a':>4} {'frames':>6} {'s':>5}  refusals (audit reason)"
    print(head, file=file)
    print("-" * len(head), file=file)
    for row in rows:
        refusals = ", ".join(f"{reason} {count}" for reason, count in row["refusals"].items())
        frames = "-" if row["frames_median"] is None else f"{row['frames_median']:g}"
        seconds = "-" if row["seconds_median"] is None else f"{row['seconds_median']:g}"
        print(
            f"{row['title']:<38} {row['attempts']:>8} {row['accepted']:>8} {row['refused']:>8} {row['not_possible']:>4} {frames:>6} {seconds:>5}  {refusals}",
            file=file,
        )
    print(file=file)
    for row in rows:
        if row["accepted"] and row["attack"] != "genuine":
            shown = ", ".join(f"{name} {count}" for name, count in row["accepted_by_dataset"].items())
            print(f"{row['title']}: accepted by dataset {shown}", file=file)
        if row["attack"] == "genuine" and row["attempts"]:
            print(
                f"genuine false rejection rate: {row['false_rejection_rate']:.3f} ({row['refused']}/{row['attempts']}; "
                f"{row['turn_from_enrolled_photo']} turned with an enrolled photo, {row['not_possible']} people without a usable turn)",
                file=file,
            )
        if row["attack"] == "mirror" and row["attempts"]:
            print(
                f"one photo + mirror: accepted {row['accepted_when_one_turn']} challenges with one turn, "
                f"{row['accepted_when_two_turns']} with two",
                file=file,
            )
        if row["attack"] == "recorded" and row["attempts"]:
            print(
                f"recorded replays whose new challenge equalled the recorded one: {row['same_challenge_as_recording']}; "
                f"accepted with a different challenge: {row['accepted_with_a_different_challenge']}",
                file=file,
            )


def settings_used(args: argparse.Namespace, version) -> dict:
    from django.conf import settings

    from facelogin.pipeline.liveness import LivenessConfig

    config, liveness = settings.FACELOGIN, LivenessConfig()
    return {
        "target_fpir": config["TARGET_FPIR"],
        "threshold": (version.thresholds or {}).get("similarity"),
        "classifier": config["CLASSIFIER"],
        "embedder": config.get("EMBEDDER", "torch"),
        "gallery_students": version.gallery_students,
        "gallery_embeddings": version.gallery_embeddings,
        "min_frames": config["MIN_FRAMES"],
        "max_frames": config["MAX_FRAMES"],
        "attempt_seconds": config["ATTEMPT_SECONDS"],
        "max_frames_per_second": config["MAX_FRAMES_PER_SECOND"],
        "liveness": config["LIVENESS"],
        "liveness_steps": liveness.challenge_length,
        "liveness_seconds": liveness.seconds_per_step * liveness.challenge_length,
        "liveness_turn_degrees": liveness.turn_degrees,
        "liveness_frontal_degrees": liveness.frontal_degrees,
        "liveness_closer_ratio": liveness.closer_ratio,
        "liveness_back_ratio": liveness.back_ratio,
        "track_max_jump_face_widths": liveness.max_jump,
        "track_max_gap_seconds": liveness.max_gap_seconds,
        "throttles": "lifted (one client makes every attempt)",
        "enroll": args.enroll,
        "replays": args.replays,
        "seed": args.seed,
    }


# --- main ----------------------------------------------------------------------------------------


def interleave(groups: list[list[Identity]]) -> list[Identity]:
    """Round-robin over datasets, so --people N attacks people of every dataset."""
    out = []
    for index in range(max((len(g) for g in groups), default=0)):
        out.extend(g[index] for g in groups if index < len(g))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attacks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", action="append", type=Path, help="DIR/<identity>/<images> (repeatable; default orl, yale, johns)")
    parser.add_argument("--enroll", type=int, default=5, help="first K photos per person are enrolled (default 5)")
    parser.add_argument("--gallery-per-dataset", type=int, default=None, help="enrol at most this many people per dataset (default all)")
    parser.add_argument("--people", type=int, default=None, help="attack this many enrolled people, spread over the datasets (default all)")
    parser.add_argument("--attempts-per-person", type=int, default=1, help="repeat every attack this many times per person (default 1)")
    parser.add_argument("--attack", action="append", choices=ATTACKS, help="run only these attacks (repeatable; default all)")
    parser.add_argument("--replays", type=int, default=10, help="frames the replay attack sends (default 10)")
    parser.add_argument("--target-fpir", type=float, default=0.001, help="FACELOGIN_TARGET_FPIR for the gallery (default 0.001)")
    parser.add_argument("--seed", type=int, default=0, help="the attackers' jitter and choices (the server's challenges stay random)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 6 people per dataset enrolled, 3 attacked")
    parser.add_argument("--workdir", type=Path, default=None, help="the throw-away portal's data directory (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results (default bench/results/attacks.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.gallery_per_dataset = args.gallery_per_dataset or 6
        args.people = args.people or 3
    attacks = tuple(a for a in ATTACKS if a in (args.attack or ATTACKS))

    try:  # scikit-learn and numpy threads oversubscribe 2 cores
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass

    groups = []
    for root in args.dataset or DEFAULT_DATASETS:
        found = [i for i in find_identities(root) if len(i.images) > args.enroll]
        groups.append(found[: args.gallery_per_dataset] if args.gallery_per_dataset else found)
    gallery = interleave(groups)

    with tempfile.TemporaryDirectory(prefix="bench-attacks-") as tmp:
        workdir = (args.workdir or Path(tmp)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        configure_portal(workdir, target_fpir=args.target_fpir)
        from facelogin.services.recognition import engine
        from facelogin.services.training import classifier_train

        engine()  # load the models before timing anything
        photos = sum(min(args.enroll, len(i.images)) for i in gallery)
        with tqdm(total=photos, desc="enrolling", unit="photo", file=sys.stderr) as progress:
            people = enrol(gallery, count=args.enroll, progress=progress)
        version = classifier_train(trigger="bench.attacks")  # the first version: a full train
        if not version.is_active:
            raise SystemExit(f"the classifier was not activated: {version.status} {version.error}")
        used = settings_used(args, version)
        print("settings: " + json.dumps(used))

        targets = [p for p in people if p.accepted >= 1][: args.people] if args.people else [p for p in people if p.accepted >= 1]
        camera = Camera(np.random.default_rng(args.seed))
        rng = random.Random(args.seed)
        plans = {}
        for person in tqdm(targets, desc="surveying held-out photos", unit="person", file=sys.stderr):
            plans[person.number] = plan_for(person)
        # Roughly: 40 frames still + 1 replayed + ~15 genuine + ~15 recorded + ~30 every move + ~10-40 mirror.
        print(
            f"gallery: {len(people)} people ({photos} photos, {sum(p.accepted for p in people)} accepted) in "
            f"{time.monotonic() - started:.0f} s; attacking {len(targets)} people x {args.attempts_per_person}: "
            f"about {len(targets) * args.attempts_per_person * 130} frames (0.1-0.2 s each)",
            flush=True,
        )

        async def run_all() -> list[Result]:
            results = []
            with tqdm(total=len(targets) * args.attempts_per_person, desc="attacking", unit="person", file=sys.stderr) as progress:
                for _ in range(args.attempts_per_person):
                    for person in targets:
                        results.extend(await attack_person(person, plans[person.number], attacks, camera=camera, rng=rng, replays=args.replays))
                        progress.update(1)
            return results

        results = asyncio.run(run_all())
        elapsed = time.monotonic() - started

    rows = summarise(results, attacks)
    print()
    print_table(rows)
    print(f"\n{len(results)} attempts in {elapsed:.0f} s")
    output = {
        "command": "python -m bench.attacks " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": used,
        "people": [
            {"name": p.identity.name, "dataset": p.dataset, "accepted_photos": p.accepted, "plan": {
                "still": str(plans[p.number].still) if plans[p.number].still else None,
                "frontal": [str(x) for x in plans[p.number].frontal],
                "turned": asdict(plans[p.number].turned) if plans[p.number].turned else None,
                "turn_from_enrolled": plans[p.number].turn_from_enrolled,
                "mirror": asdict(plans[p.number].mirror) if plans[p.number].mirror else None,
            }}
            for p in targets
        ],
        "summary": rows,
        "attempts": [asdict(r) for r in results],
        "seconds": round(elapsed, 1),
    }
    write_json(args.json, output)
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
