"""Keep the audit log bounded: delete entries older than FACELOGIN_AUDIT_RETENTION_DAYS."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from facelogin.services.audit import audit_purge
from facelogin.services.password_lockout import password_failures_purge
from facelogin.services.sso import sso_purge_expired
from facelogin.services.tickets import tickets_purge_expired


class Command(BaseCommand):
    help = (
        "Delete audit entries (face attempts, biometric actions, failed password sign-ins, campus-app events) "
        "older than the retention period, expired sign-in tickets, and expired campus-app codes and tokens. Run daily."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--days", type=int, default=None, help="override FACELOGIN_AUDIT_RETENTION_DAYS")

    def handle(self, *args, days: int | None, **options) -> None:
        days = days or settings.FACELOGIN["AUDIT_RETENTION_DAYS"]
        deleted = audit_purge(older_than_days=days)
        deleted += password_failures_purge(older_than_days=days)
        tickets = tickets_purge_expired()
        authorizations = sso_purge_expired(older_than_days=days)
        self.stdout.write(
            f"deleted {deleted} audit entries older than {days} days, {tickets} expired tickets, "
            f"expired campus-app tokens and {authorizations} old campus-app authorizations"
        )
