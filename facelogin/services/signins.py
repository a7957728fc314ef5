"""Recording sign-ins and reading them back for the portal home."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest
from django.utils import translation

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
    sign_in = SignIn.objects.create(
        user=user,
        method=method,
        ip=client_ip(request) if request else None,
        user_agent=user_agent(request) if request else "",
        scores=getattr(request, SCORES_ATTR, None) if request else None,
    )
    if method == SignIn.Method.FACE and user.email and is_new_browser(sign_in):
        # By a task once the sign-in is committed: the mail server's latency stays out of the sign-in.
        language = translation.get_language()  # the page's language, for the mail
        transaction.on_commit(lambda: _notify_later(sign_in.pk, language), robust=True)
    return sign_in


def _notify_later(sign_in_id: int, language: str | None) -> None:
    from facelogin import tasks

    tasks.notify_new_browser.delay(sign_in_id, language)


def is_new_browser(sign_in: SignIn) -> bool:
    return not SignIn.objects.filter(user=sign_in.user, user_agent=sign_in.user_agent).exclude(pk=sign_in.pk).exists()


def notify_new_browser(*, sign_in_id: int, language: str | None = None) -> None:
    """Tell the student by email: a face sign-in they did not make is their cue to report it.

    A mail server that cannot be reached raises, so the task retries."""
    sign_in = SignIn.objects.select_related("user").filter(pk=sign_in_id).first()
    if sign_in is None or not sign_in.user.email:
        return
    from django.core.mail import send_mail
    from django.utils.translation import gettext as _

    with translation.override(language):
        send_mail(
            _("New face sign-in to your university portal"),
            _(
                "Your face was used to sign in to the university portal from a browser not seen before.\n\n"
                "Time: %(time)s\nIP address: %(ip)s\nBrowser: %(browser)s\n\n"
                "If this was not you, open the portal and press “This was not me” next to this sign-in."
            )
            % {"time": sign_in.at.strftime("%Y-%m-%d %H:%M"), "ip": sign_in.ip or "-", "browser": sign_in.user_agent or "-"},
            None,
            [sign_in.user.email],
        )


def recent_sign_ins(*, user, limit: int = 10) -> list[SignIn]:
    return list(SignIn.objects.filter(user=user).order_by("-at")[:limit])
