"""Records every sign-in, whichever way it happened, and ends campus-app sessions at sign-out."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver

from facelogin.services.signins import client_ip, record_sign_in


@receiver(user_logged_in, dispatch_uid="facelogin.record_sign_in")
def _record_sign_in(sender, request, user, **kwargs) -> None:
    record_sign_in(user=user, request=request)


@receiver(user_logged_out, dispatch_uid="facelogin.end_campus_sessions")
def _end_campus_sessions(sender, request, user, **kwargs) -> None:
    """Signing out of the portal signs out of the campus apps this session signed in to."""
    if user is None or request is None or not hasattr(request, "session"):
        return
    from facelogin.services.auth_context import SID_SESSION_KEY
    from facelogin.services.sso import session_logout

    session_logout(user=user, sid=request.session.get(SID_SESSION_KEY), ip=client_ip(request))

