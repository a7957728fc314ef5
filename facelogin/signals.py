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


def _campus_apps_changed(sender, **kwargs) -> None:
    from facelogin.services.sso import campus_app_origins_forget

    campus_app_origins_forget()


def connect_campus_app_signals() -> None:
    """A registered app's redirect URIs changed: forget the cached form-action origins (called from
    AppConfig.ready, once the swappable application model can be resolved)."""
    from django.db.models.signals import post_delete, post_save
    from oauth2_provider.models import get_application_model

    application = get_application_model()
    post_save.connect(_campus_apps_changed, sender=application, dispatch_uid="facelogin.campus_apps_saved")
    post_delete.connect(_campus_apps_changed, sender=application, dispatch_uid="facelogin.campus_apps_deleted")
