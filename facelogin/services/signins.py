"""Recording sign-ins and reading them back for the portal home."""

from __future__ import annotations

from django.http import HttpRequest

from facelogin.models import SignIn

# Views that sign a user in by something other than a password set this on the request first.
METHOD_ATTR = "_facelogin_method"
SCORES_ATTR = "_facelogin_scores"


def client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR only: X-Forwarded-For is spoofable unless a trusted proxy rewrites it, and the
    # deployment guide puts the proxy's address translation in daphne (--proxy-headers).
    return request.META.get("REMOTE_ADDR") or None


def user_agent(request: HttpRequest) -> str:
    return request.META.get("HTTP_USER_AGENT", "")[:400]


def record_sign_in(*, user, request: HttpRequest | None) -> SignIn:
    method = getattr(request, METHOD_ATTR, SignIn.Method.PASSWORD) if request else SignIn.Method.PASSWORD
    return SignIn.objects.create(
        user=user,
        method=method,
        ip=client_ip(request) if request else None,
        user_agent=user_agent(request) if request else "",
        scores=getattr(request, SCORES_ATTR, None) if request else None,
    )


def recent_sign_ins(*, user, limit: int = 10) -> list[SignIn]:
    return list(SignIn.objects.filter(user=user).order_by("-at")[:limit])
