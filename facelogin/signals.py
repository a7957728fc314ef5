"""Records every sign-in, whichever way it happened."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from facelogin.services.signins import record_sign_in


@receiver(user_logged_in, dispatch_uid="facelogin.record_sign_in")
def _record_sign_in(sender, request, user, **kwargs) -> None:
    record_sign_in(user=user, request=request)
