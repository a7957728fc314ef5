"""Send photos that are still queued to the workers again, and ask for a retrain.

Run automatically when a Celery worker starts (facelogin.tasks), and by hand after a broker outage.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from facelogin.services.enrolment import photos_requeue
from facelogin.services.training import retrain_request


class Command(BaseCommand):
    help = "Re-send queued enrolment photos to the workers (safe to repeat) and request a retrain."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--older-than", type=int, default=0, help="only photos queued at least this many seconds ago")

    def handle(self, *args, older_than: int, **options) -> None:
        sent = photos_requeue(older_than_seconds=older_than)
        retrain_request(reason=f"requeue_photos: {sent} photo(s) re-sent")
        self.stdout.write(f"re-sent {sent} queued photo(s); retrain requested")
