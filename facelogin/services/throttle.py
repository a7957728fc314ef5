"""Limits on face sign-in attempts, keyed by strings (after healthchecks' TokenBucket).

Each websocket connection is one attempt. Attempts are counted per IP address and per browser session;
recognitions per matched student. Repeated failures put the IP address and the session into a
cool-down. Counters live in Django's cache: per process in the embedded run, shared through Redis
when ``REDIS_URL`` is set.
"""

from __future__ import annotations

import hashlib
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


def _scopes(ip: str | None, session_key: str | None, claim: str | None = None) -> list[tuple[str, str]]:
    scopes = []
    if ip:
        scopes.append(("ip", ip))
    if session_key:
        scopes.append(("session", session_key))
    if claim:  # verify mode: attempts at one student's account, from anywhere
        scopes.append(("claim", claim))
    return scopes


def attempt_start(*, ip: str | None, session_key: str | None, claim: str | None = None) -> Verdict:
    """Count one attempt; refuse it when a cool-down or a limit applies."""
    config = settings.FACELOGIN
    window = config["THROTTLE_WINDOW_SECONDS"]
    limits = {
        "ip": config["THROTTLE_IP_ATTEMPTS"],
        "session": config["THROTTLE_SESSION_ATTEMPTS"],
        "claim": config["THROTTLE_STUDENT_ATTEMPTS"],
    }
    scopes = _scopes(ip, session_key, claim)
    for scope, value in scopes:
        left = _cooldown_left(_key("cooldown", scope, value))
        if left:
            return Verdict(False, left, scope)
    for scope, value in scopes:
        if _count(_key("attempts", scope, value), window) > limits[scope]:
            return Verdict(False, window, scope)
    return Verdict(True)


def attempt_failed(*, ip: str | None, session_key: str | None, claim: str | None = None) -> None:
    """A failed attempt; enough of them within the window start a cool-down."""
    config = settings.FACELOGIN
    for scope, value in _scopes(ip, session_key, claim):
        failures = _count(_key("failures", scope, value), config["THROTTLE_WINDOW_SECONDS"])
        if failures >= config["THROTTLE_FAILURES_BEFORE_COOLDOWN"]:
            cooldown = config["THROTTLE_COOLDOWN_SECONDS"]
            cache.set(_key("cooldown", scope, value), time.time() + cooldown, timeout=cooldown)
            cache.delete(_key("failures", scope, value))


def student_recognised(*, student_id: int) -> Verdict:
    """Count a recognition of this student; many in a window suggest someone trying their face."""
    config = settings.FACELOGIN
    window = config["THROTTLE_WINDOW_SECONDS"]
    if _count(_key("attempts", "student", str(student_id)), window) > config["THROTTLE_STUDENT_ATTEMPTS"]:
        return Verdict(False, window, "student")
    return Verdict(True)


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
