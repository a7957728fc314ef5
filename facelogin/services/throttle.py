"""Limits on face sign-in attempts, keyed by strings (after healthchecks' TokenBucket).

Each websocket connection is one attempt. Attempts are counted per IP address and per browser session;
recognitions per matched student. Repeated failures put the IP address and the session into a
cool-down. Counters live in Django's cache: per process in the embedded run, shared through Redis
when ``REDIS_URL`` is set.

Who pays for a failure:
* the address and the session it came from, always;
* a student only when the face was recognised as that student in the failed attempt (liveness failed
  after recognition, a conflict, ...): someone holding up that student's photo. A student number typed
  in verify mode is a claim anyone can make, so failures under a claim alone never lock the student out
  (five addresses claiming a number and breaking the protocol locked the student out of face sign-in);
* an attempt abandoned after sending frames counts as failed (closing the socket before the decision
  would otherwise be a free try, again and again);
* an attempt the server could not serve (its frames refused or held by an overloaded queue) is not the
  student's failure and counts against nobody.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


def _key(kind: str, scope: str, value: str) -> str:
    return f"facelogin:throttle:{kind}:{scope}:" + hashlib.sha256(value.encode()).hexdigest()[:32]


def _count(key: str, window: int) -> int:
    cache.add(key, 0, timeout=window)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)
        return 1


def _cooldown_left(key: str) -> int:
    until = cache.get(key)
    if until is None:
        return 0
    return max(0, int(until - time.time()) + 1)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0
    scope: str = ""


def _scopes(ip: str | None, session_key: str | None, student: str | None = None) -> list[tuple[str, str]]:
    scopes = []
    if ip:
        scopes.append(("ip", ip))
    if session_key:
        scopes.append(("session", session_key))
    if student:  # a student's id (the classifier's label), as a string
        scopes.append(("student", student))
    return scopes


def attempt_start(*, ip: str | None, session_key: str | None, student: str | None = None) -> Verdict:
    """Count one attempt; refuse it when a cool-down or a limit applies.

    ``student``: verify mode's claimed student (id), when the number names one. Their cool-down (earned
    only by failures after their face was recognised) applies; the attempt is not counted against them.
    """
    config = settings.FACELOGIN
    window = config["THROTTLE_WINDOW_SECONDS"]
    limits = {"ip": config["THROTTLE_IP_ATTEMPTS"], "session": config["THROTTLE_SESSION_ATTEMPTS"]}
    for scope, value in _scopes(ip, session_key, student):
        left = _cooldown_left(_key("cooldown", scope, value))
        if left:
            return Verdict(False, left, scope)
    for scope, value in _scopes(ip, session_key):
        if _count(_key("attempts", scope, value), window) > limits[scope]:
            return Verdict(False, window, scope)
    return Verdict(True)


def attempt_failed(*, ip: str | None, session_key: str | None, recognised: str | None = None) -> None:
    """A failed attempt; enough of them within the window start a cool-down.

    ``recognised``: the student (id) the face was recognised as before the attempt failed, if any.
    """
    config = settings.FACELOGIN
    for scope, value in _scopes(ip, session_key, recognised):
        failures = _count(_key("failures", scope, value), config["THROTTLE_WINDOW_SECONDS"])
        if failures >= config["THROTTLE_FAILURES_BEFORE_COOLDOWN"]:
            cooldown = config["THROTTLE_COOLDOWN_SECONDS"]
            cache.set(_key("cooldown", scope, value), time.time() + cooldown, timeout=cooldown)
            cache.delete(_key("failures", scope, value))


def attempt_abandoned(*, ip: str | None, session_key: str | None, frames: int, recognised: str | None = None) -> bool:
    """The client left before a decision. With frames sent, that is a failed attempt (True)."""
    if frames <= 0:
        return False
    attempt_failed(ip=ip, session_key=session_key, recognised=recognised)
    return True


def ending_counts(*, server_seconds: float, attempt_seconds: float) -> bool:
    """Does an attempt that ran out of time count as the student's failure? Not when the server held its
    frames (queued behind others, being analysed) for more than half of the attempt's time."""
    return server_seconds <= attempt_seconds / 2


def student_recognised(*, student_id: int) -> Verdict:
    """Count a recognition of this student; many in a window suggest someone trying their face. A
    student in a cool-down (failures after their face was recognised) is refused too."""
    config = settings.FACELOGIN
    window = config["THROTTLE_WINDOW_SECONDS"]
    left = _cooldown_left(_key("cooldown", "student", str(student_id)))
    if left:
        return Verdict(False, left, "student")
    if _count(_key("attempts", "student", str(student_id)), window) > config["THROTTLE_STUDENT_ATTEMPTS"]:
        return Verdict(False, window, "student")
    return Verdict(True)


# Sign-in sockets open at once per address, in this process (what one process's frame batcher serves).
_open_sockets: dict[str, int] = {}
_open_sockets_lock = threading.Lock()
SOCKET_RETRY_SECONDS = 5


def connection_open(*, ip: str | None) -> bool:
    """Count one more open sign-in socket from ``ip``; False (and not counted) over the cap."""
    if not ip:
        return True
    with _open_sockets_lock:
        if _open_sockets.get(ip, 0) >= settings.FACELOGIN["SOCKETS_PER_ADDRESS"]:
            return False
        _open_sockets[ip] = _open_sockets.get(ip, 0) + 1
        return True


def open_connections() -> int:
    """Sign-in sockets open in this process (those from a known address: every real connection has one)."""
    with _open_sockets_lock:
        return sum(_open_sockets.values())


def connection_closed(*, ip: str | None) -> None:
    if not ip:
        return
    with _open_sockets_lock:
        left = _open_sockets.get(ip, 0) - 1
        if left > 0:
            _open_sockets[ip] = left
        else:
            _open_sockets.pop(ip, None)
def token_request_start(*, client_id: str | None, ip: str | None) -> Verdict:
    """Count one request to the single sign-on token endpoint, per client and per address.

    Checked before the client is authenticated, so a flood of wrong secrets is refused as early as a
    flood of right ones; the client's own count bounds what one app (or its leaked secret) can mint."""
    config = settings.SSO
    window = config["TOKEN_RATE_WINDOW_SECONDS"]
    limits = (("client", client_id, config["TOKEN_RATE_CLIENT"]), ("ip", ip, config["TOKEN_RATE_IP"]))
    for scope, value, limit in limits:
        if value and _count(_key("token", scope, value), window) > limit:
            return Verdict(False, window, scope)
    return Verdict(True)
