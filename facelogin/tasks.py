"""Celery tasks. Each takes ids, calls one service and owns only retries (HackSoft's styleguide).

``acks_late`` with ``reject_on_worker_lost`` (settings): a worker killed mid-task leaves the message
unacknowledged, so another worker runs it again; the services make a second run harmless.
"""

from __future__ import annotations

import logging
from smtplib import SMTPException

from celery import shared_task
from celery.signals import worker_ready
from django.contrib.auth import get_user_model
from django.db import OperationalError, InterfaceError

from facelogin.pipeline.errors import ModelUnavailable

logger = logging.getLogger(__name__)

# Passing errors worth retrying: a database restart or lock, a model file still being written.
TRANSIENT = (OperationalError, InterfaceError, ModelUnavailable)


@shared_task(acks_late=True, autoretry_for=TRANSIENT, retry_backoff=2, retry_backoff_max=120, max_retries=8)
def process_enrolment_photo(photo_id: int) -> str | None:
    from facelogin.services.enrolment import photo_process

    photo = photo_process(photo_id=photo_id)
    return photo.state if photo is not None else None


@shared_task(acks_late=True, autoretry_for=TRANSIENT, retry_backoff=2, retry_backoff_max=120, max_retries=5)
def retrain_classifier(token: int | None = None, *, trigger: str = "", actor_id: int | None = None) -> int | None:
    from facelogin.services.training import classifier_train

    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    version = classifier_train(trigger=trigger or "enrolment changed", actor=actor, token=token)
    return version.pk if version is not None else None


@worker_ready.connect
def _requeue_after_outage(**kwargs) -> None:
    """A worker coming up sends again what a broker outage left queued (idempotent)."""
    from facelogin.services.enrolment import photos_requeue
    from facelogin.services.training import retrain_request

    if photos_requeue(older_than_seconds=30):
        retrain_request(reason="photos re-sent after a queue outage")


@shared_task(acks_late=True, autoretry_for=TRANSIENT, retry_backoff=2, retry_backoff_max=120, max_retries=5)
def reembed_photos(model: str, path: str | None = None, actor_id: int | None = None) -> int:
    """The same as ``manage.py reembed_photos``, for a worker (a model change on a large gallery)."""
    from facelogin.services.enrolment import photos_reembed
    from facelogin.services.training import retrain_request

    actor = get_user_model().objects.filter(pk=actor_id).first() if actor_id else None
    count = photos_reembed(model=model, path=path, actor=actor).count
    retrain_request(reason=f"re-embedded {count} photo(s) for {model}", actor=actor, countdown=0)
    return count


# A mail server that is down or refuses for a while (OSError, SMTPException) is retried too, by a
# worker. Run in-process (the embedded default: no broker), a retry would run again at once, inside the
# sign-in's request: up to 8 more mail timeouts before the student's page answers. There, one attempt.
@shared_task(
    bind=True, acks_late=True, autoretry_for=TRANSIENT + (OSError, SMTPException), retry_backoff=5, retry_backoff_max=600, max_retries=8
)
def notify_new_browser(self, sign_in_id: int, language: str | None = None) -> None:
    from facelogin.services.signins import notify_new_browser

    try:
        notify_new_browser(sign_in_id=sign_in_id, language=language)
    except (OSError, SMTPException):
        if not self.request.is_eager:
            raise
        logger.warning("new-browser email for sign-in %s not sent: the mail server did not answer", sign_in_id, exc_info=True)


# Like the new-browser email: a worker retries an app that is down for about 20 minutes; run
# in-process (embedded), one attempt, so a sign-out waits for at most one timeout per app.
@shared_task(bind=True, acks_late=True, autoretry_for=TRANSIENT + (OSError,), retry_backoff=5, retry_backoff_max=600, max_retries=8)
def send_backchannel_logout(self, application_id: int, user_id: int, sid: str) -> bool:
    from facelogin.services.sso import backchannel_logout_send

    try:
        return backchannel_logout_send(application_id=application_id, user_id=user_id, sid=sid)
    except OSError:
        if not self.request.is_eager:
            raise
        logger.warning("logout token for app %s not delivered: the app did not take it", application_id, exc_info=True)
        return False
