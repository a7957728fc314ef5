"""Presentation-attack benchmark: what someone with a student's photos or videos gets from the face door,
and how often the real student is refused.

    python -m bench.attacks                    # 5 seeds, the issue's protocol (about 80 minutes here at --people 16)
    python -m bench.attacks --quick            # 1 seed, 4 people: a smoke run of every attack
    python -m bench.attacks --json F           # JSON with a "summary" list (attack, attempts, accepted)
    python -m bench.attacks --first-seed 5     # seeds 5-9: draws no threshold was ever looked at on

Every attempt goes through what production runs: the portal served by daphne in its own process, a page
load for the session and CSRF token, the websocket driven as ``static/js/face_login.js`` drives it (one
frame in flight, no faster than the server's ``frame_interval_ms``, a new screen colour on the face before
the next frame: 90 ms), every frame a JPEG from a simulated webcam (``bench.actors``: the screen's light on
what reflects it, motion blur, sensor noise), and the ticket posted to ``/login/face/complete/``. The portal
is a throw-away one (SQLite in a temporary directory, ``migrate``), configured only by environment
variables, with the live defaults except the throttles (lifted: one client makes every attempt): liveness
with the screen colours on, ``FACELOGIN_DEVICE_POLICY=known``. The gallery is ORL + Yale + johns, each person's first ``--enroll``
photos enrolled through the enrolment services, then a classifier trained and calibrated for
``--target-fpir``.

The liveness attacks run as at a registered kiosk, where device binding does not help (the attacker stands
in front of the terminal with the student's pictures); ``device`` runs from the attacker's own browser.
Per seed, ``--people`` enrolled people are drawn (a different draw per seed); per person, one attempt of each
attack and ``--genuine-per-person`` genuine sign-ins:

* ``genuine``: the student (``bench.head3d``: a frontal held-out photo lifted to 3-D with the face mesh)
  following the prompts: a human reaction time, smooth turns of 20-30 degrees at 30-90 degrees a second,
  the face 120-250 px tall, the screen at 4-25 % of the room's light on the face, sensor noise and blur;
* ``still``: a held-out photo printed and held up (a hand's jitter; paper reflects the screen);
* ``replay``: one frame's bytes sent again and again;
* ``recorded``: a video of one of this student's genuine sign-ins (any challenge order) played on a phone,
  blind to this attempt's prompts and colours;
* ``every_move``: a video of the student turning left, right, left, right at their own pace, on a phone;
* ``mirror_print`` / ``mirror_tablet``: ONE photo and its mirror image (and the photo tilted in between, to
  have a frame inside the turn), shown as the prompts ask: printed (every swap of prints is seen: the new
  one slides over the old) or on a tablet (instant, but it glows instead of reflecting);
* ``pair_print`` / ``pair_tablet``: a frontal photo, tilted as a print for a frame inside the turn, then the
  student's most turned photo (or its mirror image) for each side;
* ``flipbook_print`` / ``flipbook_tablet``: the student's photos (and their mirror images) in order of yaw,
  stepped through towards the side asked for;
* ``warp``: one frontal photo printed and turned as a flat picture, smoothly, up to 50 degrees;
* ``other_head``: the student's photo held over the attacker's face, lowered when a turn is asked for,
  the attacker's own head (another person, in 3-D) doing the turns;
* ``device``: a perfect genuine sequence from the attacker's own browser (not a kiosk, never remembered).

The attackers know the portal's code: they plan with the same MTCNN and face mesh (which photos turn how
far), follow the prompts as a person would, and never send what they know the server refuses (the same
bytes twice, several faces).

Prints one table row per attack (attempts and accepted over all seeds, accepted in the worst seed, the
reasons refused, the median time from a recognised face to a passed challenge for ``genuine``) and writes
JSON (default ``bench/results/attacks.json``, git-ignored) with every attempt.
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
import re
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from bench.accuracy import Identity, find_identities
from bench.actors import (
    Actor,
    Camera,
    OtherHeadActor,
    Pose,
    PuppetActor,
    Print,
    PromptFollower,
    ReplayActor,
    ScreenReplayActor,
    StillActor,
    Student,
    StudentActor,
    WarpedPrintActor,
    prompt_of,
)
from bench.head3d import Head, load_photo, place
from bench.portal import write_json

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FACELOGIN_SHARED_DIR", REPO.parent / "shared")).resolve()
DEFAULT_DATASETS = [SHARED / "faces" / name for name in ("orl", "yale", "johns")]
DEFAULT_JSON = REPO / "bench" / "results" / "attacks.json"
ATTACKS = (
    "still",
    "replay",
    "recorded",
    "every_move",
    "mirror_print",
    "mirror_tablet",
    "pair_print",
    "pair_tablet",
    "flipbook_print",
    "flipbook_tablet",
    "warp",
    "other_head",
    "device",
)
# Beyond the list: the check's limits, measured. A face animated in real time from the student's
# photo defeats the head-turn geometry and the timing by construction; only the screen colours stand.
BEYOND = ("puppet_tablet", "puppet_forged")
TITLES = {
    "genuine": "genuine: the student follows the prompts",
    "still": "(a) still photo, hand jitter",
    "replay": "(b) one frame replayed",
    "recorded": "(c) recorded genuine sign-in on a phone",
    "every_move": "(d) recording of every movement",
    "mirror_print": "(e) one photo + mirror image, prints",
    "mirror_tablet": "(e') one photo + mirror image, tablet",
    "pair_print": "(f) frontal then turned photo, prints",
    "pair_tablet": "(f') frontal then turned photo, tablet",
    "flipbook_print": "(g) flip-book by yaw, prints",
    "flipbook_tablet": "(g') flip-book by yaw, tablet",
    "warp": "(h) one print turned in perspective",
    "other_head": "(i) photo for identity, other head turns",
    "device": "(j) perfect sequence, attacker's browser",
    "puppet_tablet": "(k) live 3-D puppet on a tablet [beyond]",
    "puppet_forged": "(l) live puppet, colours forged late [beyond]",
}
FACE_HEIGHTS = (120, 250)  # px: the face in a 640x480 webcam frame
SCREEN_LIGHT = (0.04, 0.25)  # the screen's light on the face, relative to the room's (log-uniform)
MAX_SENDS = 80  # the client gives up after this many frames (the server ends an attempt at its budget first)

BENCH_ENV = {
    "FACELOGIN_LIVENESS": "1",
    "FACELOGIN_LIVENESS_FLASH": "1",
    "FACELOGIN_DEVICE_POLICY": "known",
    "FACELOGIN_THROTTLE_IP_ATTEMPTS": "1000000",
    "FACELOGIN_THROTTLE_SESSION_ATTEMPTS": "1000000",
    "FACELOGIN_THROTTLE_STUDENT_ATTEMPTS": "1000000",
    "FACELOGIN_THROTTLE_FAILURES": "1000000",
    "FACELOGIN_SOCKETS_PER_ADDRESS": "1000",
    "FACELOGIN_WARM_UP": "0",  # no daphne here; the engine loads on first use
}
# A production environment must not leak into the bench portal (portal/env.py reads NAME_FILE first).
DROPPED_ENV = ("DATABASE_URL", "REDIS_URL", "DJANGO_DEBUG", "DJANGO_SECRET_KEY", "FACELOGIN_BIOMETRIC_KEYS", "FACELOGIN_OIDC_KEY")


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


def register_kiosk() -> str:
    """A kiosk as staff would register it; the bench's kiosk browser sends this credential."""
    import hashlib

    from facelogin.models import Kiosk

    token = secrets.token_urlsafe(32)
    Kiosk.objects.create(name="bench kiosk", token_hash=hashlib.sha256(token.encode()).hexdigest())
    return token


# --- what the attackers know about the photos ------------------------------------------------------


@dataclass(frozen=True)
class Survey:
    """A photo as the server sees it on a webcam canvas (no jitter): MTCNN's yaw, the face mesh, identity."""

    photo: Path
    mirror: bool
    yaw: float
    mesh: np.ndarray
    similarity: float  # to the person's enrolled photos


@lru_cache(maxsize=4096)
def survey(photo: Path, mirror: bool, label: str) -> Survey | None:
    from facelogin.pipeline.decide import similarity_to
    from facelogin.services.recognition import engine

    engine_ = engine()
    frame = io.BytesIO()
    Image.fromarray(place(load_photo(photo, mirror), 200)).save(frame, format="JPEG", quality=92)
    analysis = engine_.analyzer.analyze_bytes(frame.getvalue(), purpose="login")
    if analysis.face is None or analysis.mesh is None or analysis.quality is None:
        return None
    model = engine_.current_model()
    similarity = similarity_to(model, analysis.embedding, label) if analysis.embedding is not None else -1.0
    return Survey(photo, mirror, analysis.quality.pose.yaw, analysis.mesh, similarity)


def frontal_photo(person: Person, photos: tuple[Path, ...]) -> Path | None:
    """The photo an attacker (or the genuine stand-in) shows as "looking at the camera": recognised as
    the person, and the most frontal."""
    surveyed = [s for s in (survey(p, False, person.label) for p in photos) if s is not None]
    voting = [s for s in surveyed if s.similarity > 0.55]
    best = min(voting or surveyed, key=lambda s: abs(s.yaw), default=None)
    return best.photo if best is not None and abs(best.yaw) <= 12 else None


def fitted_yaw(base: Survey, other: Survey) -> float:
    from facelogin.pipeline.headpose import motion

    return motion(base.mesh, other.mesh).yaw


def plans(person: Person, front: Path) -> dict[str, dict[str, list[Pose]]]:
    """Per picture attack, the pictures it shows for "front", "left" and "right" (see the module doc)."""
    base = survey(front, False, person.label)
    everything = [s for p in person.identity.images for m in (False, True) if (s := survey(p, m, person.label)) is not None]
    yaws = [(fitted_yaw(base, s), s) for s in everything]
    front_pose = Pose(front)
    tilt = {"left": Pose(front, tilt=40.0), "right": Pose(front, tilt=-40.0)}

    def most(side: str) -> Survey | None:
        sign = 1.0 if side == "left" else -1.0
        turned = [(sign * y, s) for y, s in yaws if sign * y > 0]
        return max(turned, key=lambda pair: pair[0])[1] if turned else None

    def chain(side: str) -> list[Pose]:
        """Photos stepping towards ``side`` in fitted yaw, each step at most ~10 degrees further."""
        sign = 1.0 if side == "left" else -1.0
        ladder = sorted(((sign * y, s) for y, s in yaws if sign * y > 1.0), key=lambda pair: pair[0])
        steps, reached = [], 0.0
        for value, s in ladder:
            if value - reached >= 3.0 and value - reached <= 10.0:
                steps.append(Pose(s.photo, s.mirror))
                reached = value
        return steps

    mirror_of_front = {"left": Pose(front, mirror=True), "right": Pose(front, mirror=True)}
    result = {
        "mirror": {"front": [front_pose], **{side: [front_pose, tilt[side], mirror_of_front[side]] for side in ("left", "right")}},
        "pair": {"front": [front_pose]},
        "flipbook": {"front": [front_pose], "left": [front_pose, *chain("left")], "right": [front_pose, *chain("right")]},
    }
    for side in ("left", "right"):
        turned = most(side)
        result["pair"][side] = [front_pose, tilt[side], Pose(turned.photo, turned.mirror) if turned else tilt[side]]
    return result


# --- one attempt over the websocket --------------------------------------------------------------


@dataclass
class Result:
    seed: int
    person: str
    dataset: str
    attack: str
    accepted: bool = False
    final: str = ""  # "success", "failed: <reason>", "throttled", "gave up", or "closed"
    close_code: int | None = None
    audit_reason: str = ""
    challenge: dict = field(default_factory=dict)
    frames_sent: int = 0
    seconds: float = 0.0
    recognised_to_passed_s: float | None = None
    signed_in: bool | None = None  # after posting the ticket (genuine at the kiosk, device at its own browser)
    note: str = ""


class Attempt:
    """One browser page against the portal's daphne: the page load (session cookie, CSRF token), the
    websocket with the page's pacing, then the ticket posted as the page posts it. Each attempt sends a
    user agent of its own, which names its audit row."""

    def __init__(self, *, url: str, kiosk_token: str | None, pool: ThreadPoolExecutor) -> None:
        self.url, self.kiosk_token, self.pool = url, kiosk_token, pool

    async def run(self, actor: Actor, result: Result, *, recording: list | None = None) -> Result:
        from asgiref.sync import sync_to_async
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        from bench.portal import Browser

        loop = asyncio.get_running_loop()
        agent = f"bench.attacks {secrets.token_hex(8)}"
        browser = Browser(self.url, timeout=120)
        if self.kiosk_token:
            browser.cookies["portal_kiosk"] = self.kiosk_token
        page = await asyncio.to_thread(browser.get, "/login/face/", **{"User-Agent": agent})
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        ws_path = re.search(r'data-ws-path="([^"]+)"', page.text)
        if page.status != 200 or csrf is None or ws_path is None:
            raise RuntimeError(f"the sign-in page answered {page.status}")
        ticket, started = None, time.monotonic()
        headers = {"Cookie": browser.cookie_header(), "User-Agent": agent}
        try:
            async with connect(self.url.replace("http://", "ws://", 1) + ws_path.group(1), origin=self.url,
                               additional_headers=headers, proxy=None, open_timeout=120, max_size=2**20) as ws:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 120))
                interval = reply.get("frame_interval_ms", 150) / 1000
                screen, changed_at, last_sent = None, started, 0.0
                actor.observe(reply, 0.0)
                while reply.get("type") in ("hello", "frame", "error"):
                    colour = (reply.get("challenge") or {}).get("flash")
                    if colour and tuple(colour) != screen:
                        screen, changed_at = tuple(colour), time.monotonic()
                    # The page captures no sooner than the interval after the last frame, and a new colour must be on
                    # the face first (90 ms). A browser's capture is instant: this camera films the moment ahead,
                    # while waiting for it.
                    capture_at = max(time.monotonic(), last_sent + interval, changed_at + 0.09)
                    filming = loop.run_in_executor(self.pool, actor.frame, capture_at - started, screen) if result.frames_sent < MAX_SENDS else None
                    await asyncio.sleep(max(0.0, capture_at - time.monotonic()))
                    t = capture_at - started
                    data = await filming if filming is not None else None
                    if data is None:
                        result.final = "gave up"
                        break
                    last_sent = time.monotonic()
                    await ws.send(data)
                    result.frames_sent += 1
                    if recording is not None:
                        recording.append((t, data))
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 180))
                    actor.observe(reply, time.monotonic() - started)
                if reply.get("type") in ("success", "failed", "throttled"):
                    result.accepted = reply["type"] == "success"
                    ticket = reply.get("ticket")
                    result.final = reply["type"] + (f": {reply['reason']}" if reply["type"] == "failed" else "")
        except ConnectionClosed as closed:
            result.final, result.close_code = "closed", closed.rcvd.code if closed.rcvd else None
        result.seconds = round(time.monotonic() - started, 2)
        if ticket is not None:
            done = await asyncio.to_thread(
                browser.post, "/login/face/complete/", {"ticket": ticket, "csrfmiddlewaretoken": csrf.group(1), "next": ""},
                Origin=self.url, Referer=f"{self.url}/login/face/", **{"User-Agent": agent},
            )
            result.signed_in = done.status == 302 and "/login/" not in done.headers.get("location", "")
        browser.close()
        row = await sync_to_async(_audit_row, thread_sensitive=False)(agent)
        if row is not None:
            result.audit_reason = row["outcome"] + (f": {row['reason']}" if row["reason"] else "")
            result.challenge = row["challenge"] or {}
            result.recognised_to_passed_s = result.challenge.get("recognised_to_passed_s")
        return result


def _audit_row(agent: str) -> dict | None:
    from facelogin.models import FaceAttempt

    return FaceAttempt.objects.filter(user_agent=agent).order_by("id").values("outcome", "reason", "challenge").first()


# --- the attacks for one person --------------------------------------------------------------------


def _student(photo: Path, face_height: int, rng: random.Random) -> Student | None:
    head = Head.from_canvas(place(load_photo(photo), face_height))
    return None if head is None else Student(head, rng)


def _camera(rng: random.Random, seed: int) -> Camera:
    low, high = SCREEN_LIGHT
    return Camera(np.random.default_rng(seed), noise=rng.uniform(1.5, 4.0), reflection=10 ** rng.uniform(math.log10(low), math.log10(high)))


async def attack_person(person: Person, seed: int, attacks: tuple[str, ...], *, genuine: int, kiosk: Attempt, browser: Attempt,
                        strangers: list[Path], results: list[Result]) -> None:
    """Every attack on one person (and their genuine sign-ins). Whatever runs the models or renders frames
    to prepare an attacker runs on the camera threads, never on the event loop the server shares."""
    loop = asyncio.get_running_loop()

    def off_loop(function, *args):
        return loop.run_in_executor(kiosk.pool, function, *args)

    rng = random.Random(f"{seed}:{person.number}")
    front = await off_loop(frontal_photo, person, person.held_out)
    any_front = front or await off_loop(frontal_photo, person, person.identity.images)

    def result(attack: str, **extra) -> Result:
        return Result(seed, person.identity.name, person.dataset, attack, **extra)

    def skipped(attack: str, why: str) -> None:
        results.append(result(attack, final="not possible", note=why))

    async def new_student(photo: Path) -> Student | None:
        return await off_loop(_student, photo, rng.randint(*FACE_HEIGHTS), rng)

    recordings = []
    for _ in range(genuine if "genuine" in attacks else 0):
        student = await new_student(front) if front else None
        if student is None:
            skipped("genuine", "no frontal held-out photo with a face")
            continue
        recording: list = []
        results.append(await kiosk.run(StudentActor(student, _camera(rng, rng.randrange(2**32))), result("genuine"), recording=recording))
        recordings.append(recording)

    face_height = rng.randint(*FACE_HEIGHTS)
    paper = Print(any_front, face_height, rng) if any_front else None
    picture_plans = await off_loop(plans, person, any_front) if any_front else {}
    for attack in attacks:
        if attack == "genuine":
            continue
        if any_front is None:
            skipped(attack, "no frontal photo with a face")
            continue
        camera = _camera(rng, rng.randrange(2**32))
        if attack == "still":
            actor: Actor = StillActor(paper, camera)
        elif attack == "replay":
            actor = ReplayActor(await off_loop(camera.shoot, paper.scene(), None))
        elif attack == "recorded":
            if not recordings:  # a video of the student from elsewhere: a genuine sign-in of theirs, recorded now
                recording = []
                student = await new_student(any_front)
                await kiosk.run(StudentActor(student, _camera(rng, rng.randrange(2**32))), result("genuine"), recording=recording)
                recordings.append(recording)
            actor = ScreenReplayActor(await off_loop(decoded, rng.choice(recordings)), camera)
        elif attack == "every_move":
            actor = ScreenReplayActor(await off_loop(every_move_recording, await new_student(any_front), rng), camera)
        elif attack.split("_")[0] in ("mirror", "pair", "flipbook"):
            kind, medium = attack.split("_")
            actor = PromptFollower(picture_plans[kind], face_height=face_height, medium=medium, rng=rng, camera=camera)
        elif attack == "warp":
            actor = WarpedPrintActor(paper, camera, rng)
        elif attack == "other_head":
            other = await off_loop(_student, rng.choice(strangers), face_height, rng)
            if other is None:
                skipped(attack, "no head for the attacker")
                continue
            actor = OtherHeadActor(paper, other, camera, rng)
        elif attack in ("puppet_tablet", "puppet_forged"):
            lag = rng.uniform(0.12, 0.25) if attack == "puppet_forged" else None
            actor = PuppetActor(await new_student(any_front), camera, forge_lag=lag)
        elif attack == "device":
            outcome = await browser.run(StudentActor(await new_student(any_front), camera), result("device"))
            outcome.accepted = bool(outcome.signed_in)  # the face was recognised; did the browser get in?
            outcome.note = "recognised, then the password was asked" if outcome.final == "success" and not outcome.signed_in else ""
            results.append(outcome)
            continue
        else:
            raise ValueError(attack)
        results.append(await kiosk.run(actor, result(attack)))


def decoded(recording: list[tuple[float, bytes]]) -> list[tuple[float, np.ndarray]]:
    return [(t, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))) for t, data in recording]


def every_move_recording(student: Student | None, rng: random.Random) -> list[tuple[float, np.ndarray]]:
    """A video of the student turning left, right, left, right at their own pace (not to any prompt),
    under colours of its own, as a phone would have filmed it."""
    if student is None:
        return [(0.0, np.zeros((480, 640, 3), dtype=np.uint8))]
    from facelogin.pipeline.flash import PALETTE

    camera = Camera(np.random.default_rng(rng.randrange(2**32)))
    frames, t, colour = [], 0.0, rng.choice(PALETTE)
    schedule = [(0.0, "look"), (1.0, "turn_left"), (2.2, "turn_right"), (3.6, "turn_left"), (5.0, "turn_right"), (6.4, "look")]
    for when, prompt in schedule:
        student.observe({"challenge": {"step": prompt}}, when)
    while t < 7.5:
        if rng.random() < 0.3:
            colour = rng.choice(PALETTE)
        frames.append((t, np.asarray(Image.open(io.BytesIO(camera.shoot(student.scene(t), colour))).convert("RGB"))))
        t += 0.1
    return frames


# --- report --------------------------------------------------------------------------------------


def summarise(results: list[Result], attacks: tuple[str, ...], seeds: list[int]) -> list[dict]:
    rows = []
    for attack in ("genuine", *[a for a in attacks if a != "genuine"]):
        ran = [r for r in results if r.attack == attack and r.final != "not possible"]
        if not ran and attack != "genuine":
            continue
        accepted = [r for r in ran if r.accepted]
        per_seed = {seed: sum(r.accepted for r in ran if r.seed == seed) for seed in seeds}
        per_seed_attempts = {seed: sum(1 for r in ran if r.seed == seed) for seed in seeds}
        refused = Counter(_reason(r) for r in ran if not r.accepted)
        row = {
            "attack": attack,
            "title": TITLES[attack],
            "attempts": len(ran),
            "accepted": len(accepted),
            "refused": len(ran) - len(accepted),
            "not_possible": sum(r.attack == attack and r.final == "not possible" for r in results),
            "accepted_per_seed": per_seed,
            "attempts_per_seed": per_seed_attempts,
            "worst_seed_accepted": max(per_seed.values(), default=0),
            "refusals": dict(refused.most_common()),
            # Attempts that completed both turns: the head-turn geometry and timing did not stop them.
            "both_turns_done": sum(1 for r in ran if isinstance(r.challenge, dict) and r.challenge.get("completed") == 2),
            "frames_median": statistics.median([r.frames_sent for r in ran]) if ran else None,
            "seconds_median": round(statistics.median([r.seconds for r in ran]), 2) if ran else None,
        }
        if attack == "genuine":
            times = [r.recognised_to_passed_s for r in ran if r.accepted and r.recognised_to_passed_s is not None]
            row["false_rejection_rate"] = round(row["refused"] / len(ran), 4) if ran else None
            row["worst_seed_false_rejection_rate"] = max(
                ((per_seed_attempts[s] - per_seed[s]) / per_seed_attempts[s] for s in seeds if per_seed_attempts[s]), default=None
            )
            row["recognised_to_passed_median_s"] = round(statistics.median(times), 2) if times else None
            row["recognised_to_passed_p90_s"] = round(float(np.percentile(times, 90)), 2) if times else None
            row["signed_in_at_kiosk"] = sum(bool(r.signed_in) for r in ran)
        rows.append(row)
    return rows


def _reason(r: Result) -> str:
    liveness = r.challenge.get("reason") if isinstance(r.challenge, dict) else ""
    base = r.audit_reason or r.final
    if r.note and r.attack == "device":
        return "password asked (device binding)"
    return f"{base} ({liveness})" if liveness and "liveness" in base else base


def print_table(rows: list[dict], seeds: list[int], file=sys.stdout) -> None:
    head = f"{'attack':<44} {'attempts':>8} {'accepted':>8} {'worst seed':>10} {'turned':>6} {'frames':>6} {'s':>5}  refusals"
    print(head, file=file)
    print("-" * len(head), file=file)
    for row in rows:
        refusals = ", ".join(f"{reason} {count}" for reason, count in list(row["refusals"].items())[:4])
        frames = "-" if row["frames_median"] is None else f"{row['frames_median']:g}"
        seconds = "-" if row["seconds_median"] is None else f"{row['seconds_median']:g}"
        print(
            f"{row['title']:<44} {row['attempts']:>8} {row['accepted']:>8} {row['worst_seed_accepted']:>10} {row['both_turns_done']:>6} {frames:>6} {seconds:>5}  {refusals}",
            file=file,
        )
    attacks = [r for r in rows if r["attack"] in ATTACKS]
    genuine = next((r for r in rows if r["attack"] == "genuine"), None)
    total = sum(r["attempts"] for r in attacks)
    accepted = sum(r["accepted"] for r in attacks)
    worst = max((sum(r["accepted_per_seed"][s] for r in attacks) for s in seeds), default=0)
    print(f"\nattacks (a)-(j): {accepted} accepted of {total} attempts over {len(seeds)} seeds (worst seed {worst})", file=file)
    if genuine and genuine["attempts"]:
        print(
            f"genuine: false rejection {genuine['refused']}/{genuine['attempts']} = {genuine['false_rejection_rate']:.3f} "
            f"(worst seed {genuine['worst_seed_false_rejection_rate']:.3f}); recognised face -> challenge passed "
            f"median {genuine['recognised_to_passed_median_s']} s, p90 {genuine['recognised_to_passed_p90_s']} s",
            file=file,
        )


def settings_used(args: argparse.Namespace, version) -> dict:
    from dataclasses import asdict as as_dict

    from django.conf import settings

    from facelogin.services.recognition import liveness_config

    config = settings.FACELOGIN
    return {
        "target_fpir": config["TARGET_FPIR"],
        "threshold": (version.thresholds or {}).get("similarity"),
        "gallery_students": version.gallery_students,
        "min_frames": config["MIN_FRAMES"],
        "max_frames": config["MAX_FRAMES"],
        "attempt_seconds": config["ATTEMPT_SECONDS"],
        "liveness": as_dict(liveness_config()),
        "identity_margin": config["LIVENESS_IDENTITY_MARGIN"],
        "device_policy": config["DEVICE_POLICY"],
        "throttles": "lifted (one client makes every attempt)",
        "enroll": args.enroll,
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        "people_per_seed": args.people,
        "face_heights_px": FACE_HEIGHTS,
        "screen_light": SCREEN_LIGHT,
    }


# --- main ----------------------------------------------------------------------------------------


def interleave(groups: list[list[Identity]]) -> list[Identity]:
    """Round-robin over datasets, so every draw holds people of every dataset."""
    out = []
    for index in range(max((len(g) for g in groups), default=0)):
        out.extend(g[index] for g in groups if index < len(g))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attacks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", action="append", type=Path, help="DIR/<identity>/<images> (repeatable; default orl, yale, johns)")
    parser.add_argument("--enroll", type=int, default=5, help="first K photos per person are enrolled (default 5)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds (default 5); each draws its own people and randomness")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed, first-seed+1, ... (default 0): a fresh draw to check a run on")
    parser.add_argument("--people", type=int, default=16, help="people attacked per seed (default 16)")
    parser.add_argument("--genuine-per-person", type=int, default=2, help="genuine sign-ins per person per seed (default 2)")
    parser.add_argument("--attack", action="append", choices=("genuine", *ATTACKS, *BEYOND), help="run only these (repeatable; default all)")
    parser.add_argument("--concurrency", type=int, default=2, help="people attacked at once (default 2)")
    parser.add_argument("--target-fpir", type=float, default=0.001, help="FACELOGIN_TARGET_FPIR for the gallery (default 0.001)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, 4 people, 1 genuine each")
    parser.add_argument("--workdir", type=Path, default=None, help="the throw-away portal's data directory (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results (default bench/results/attacks.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.people, args.genuine_per_person = 1, 4, 1
    attacks = tuple(a for a in ("genuine", *ATTACKS, *BEYOND) if a in (args.attack or ("genuine", *ATTACKS, *BEYOND)))
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))

    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # scikit-learn and numpy threads oversubscribe 2 cores

    groups = [[i for i in find_identities(root) if len(i.images) > args.enroll] for root in (args.dataset or DEFAULT_DATASETS)]
    gallery = interleave(groups)
    strangers = [p for p in sorted((SHARED / "faces" / "photos").glob("*.jpg")) if p.stem not in ("multiface", "group_bald_guys", "noface_dogs")]

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
        version = classifier_train(trigger="bench.attacks")
        if not version.is_active:
            raise SystemExit(f"the classifier was not activated: {version.status} {version.error}")
        engine().current_model()
        used = settings_used(args, version)
        print("settings: " + json.dumps(used, default=str))
        kiosk_token = register_kiosk()
        candidates = [p for p in people if p.accepted >= 1]
        print(f"gallery: {len(people)} people, {photos} photos, threshold {used['threshold']:.3f}; {len(seeds)} seeds x {args.people} people", flush=True)
        from tests.live import DaphneProcess

        # The portal in its own process, as in production: its frames analysed on one core while this
        # process films the next ones on the other.
        daphne = DaphneProcess({**os.environ, "FACELOGIN_WARM_UP": "1", "PYTHONUNBUFFERED": "1"}, log_path=workdir / "daphne.log")
        daphne.start()
        daphne.wait_for_log("face engine ready", timeout=180)

        async def run_all() -> list[Result]:
            results: list[Result] = []
            pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bench-camera")
            kiosk = Attempt(url=daphne.url, kiosk_token=kiosk_token, pool=pool)
            browser = Attempt(url=daphne.url, kiosk_token=None, pool=pool)
            draws = [(seed, person) for seed in seeds for person in random.Random(seed).sample(candidates, min(args.people, len(candidates)))]
            limit = asyncio.Semaphore(args.concurrency)
            with tqdm(total=len(draws), desc="attacking", unit="person", file=sys.stderr) as progress:

                async def one(seed: int, person: Person) -> None:
                    async with limit:
                        await attack_person(person, seed, attacks, genuine=args.genuine_per_person, kiosk=kiosk, browser=browser,
                                            strangers=strangers, results=results)
                        progress.update(1)

                await asyncio.gather(*(one(seed, person) for seed, person in draws))
            pool.shutdown()
            return results

        try:
            results = asyncio.run(run_all())
        finally:
            daphne.stop()
        elapsed = time.monotonic() - started

    rows = summarise(results, attacks, seeds)
    print()
    print_table(rows, seeds)
    print(f"\n{len(results)} attempts in {elapsed:.0f} s")
    write_json(
        args.json,
        {
            "command": "python -m bench.attacks " + " ".join(argv if argv is not None else sys.argv[1:]),
            "settings": used,
            "summary": rows,
            "attempts": [asdict(r) for r in results],
            "seconds": round(elapsed, 1),
        },
    )
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
