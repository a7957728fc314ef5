"""Password sign-in lock-out rules, as a django-axes handler (settings.AXES_HANDLER).

axes records every failed password sign-in (portal ``/login/`` and ``/admin/login/``) in the database
and refuses a locked-out request in its authentication backend, before the password hasher runs. axes
compares one number with one limit; the portal wants two: an account (the username typed) may fail
``ACCOUNT_FAILURES`` times and a client address ``ADDRESS_FAILURES`` times (many students can share an
address), each counted over the cool-down before the latest failure. So ``get_failures`` answers 1 when
some scope has reached its own limit (``AXES_FAILURE_LIMIT = 1``), else 0.

The lock ends ``COOLOFF_SECONDS`` after the failure that made the count reach the limit: attempts
during a lock-out are refused, not recorded (``AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT=False``),
so the time the student is told holds.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest

SCOPES = ("username", "ip_address")  # the order of settings.AXES_LOCKOUT_PARAMETERS


def cooloff(request: HttpRequest | None = None) -> timedelta:
    """settings.AXES_COOLOFF_TIME: read when called, so a changed setting applies at once."""
    return timedelta(seconds=settings.PASSWORD_LOCKOUT["COOLOFF_SECONDS"])


def _limits() -> dict[str, int]:
    config = settings.PASSWORD_LOCKOUT
    return {"username": config["ACCOUNT_FAILURES"], "ip_address": config["ADDRESS_FAILURES"]}


class PasswordLockoutHandler(AxesDatabaseHandler):
    def get_failures(self, request, credentials: dict | None = None) -> int:
        counts = self._scope_counts(request, credentials)
        limits = _limits()
        return int(any(counts[scope] >= limits[scope] for scope in counts))

    def _scope_counts(self, request, credentials) -> dict[str, int]:
        querysets = self.get_user_attempts(request, credentials)
        return {
            scope: attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0
            for scope, attempts in zip(SCOPES, querysets, strict=True)
        }

    def locked_until(self, request, credentials: dict | None = None) -> datetime | None:
        """When the lock on this request's account or address ends (the latest of them), or None."""
        limits, ends = _limits(), []
        for scope, attempts in zip(SCOPES, self.get_user_attempts(request, credentials), strict=True):
            rows = list(attempts.order_by("attempt_time").values_list("attempt_time", "failures_since_start"))
            total = sum(failures for _, failures in rows)
            # The lock lifts once enough of the oldest records have aged out to bring the count under the limit.
            for at, failures in rows:
                if total < limits[scope]:
                    break
                total -= failures
                ends.append(at + cooloff(request))
        return max(ends, default=None)

    # Successful sign-ins and sign-outs: the portal records them itself (SignIn), and the face sign-in
    # redemption must not pay axes' clean-up statement (tests/web/test_tickets.py counts them).
    def user_logged_in(self, sender, request, user, **kwargs) -> None:
        return None

    def user_logged_out(self, sender, request, user, **kwargs) -> None:
        return None


def password_locked_until(request: HttpRequest, credentials: dict | None = None) -> datetime | None:
    AxesProxyHandler.update_request(request)
    handler = AxesProxyHandler.get_implementation()
    return handler.locked_until(request, credentials) if isinstance(handler, PasswordLockoutHandler) else None


def password_failures_purge(*, older_than_days: int) -> int:
    """The failure records axes keeps for the audit, bounded like the portal's own audit log."""
    from axes.models import AccessFailureLog

    from django.utils import timezone

    deleted, _ = AccessFailureLog.objects.filter(attempt_time__lt=timezone.now() - timedelta(days=older_than_days)).delete()
    return deleted
