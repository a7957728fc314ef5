"""Per-response additions to the Content-Security-Policy (django-csp builds the header)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class CampusAppFormActionMiddleware:
    """Lets a portal form lead to a registered campus app.

    CSP's ``form-action`` also governs where a form submission is redirected: the password and face
    sign-in forms, and the consent form, end at a campus app's callback when the student came from one
    (POST /login/ → /o/authorize/ → the app). Listed after django-csp's middleware, so its response
    hook runs first and the policy is built with these origins added.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Pages, not redirects: only a page can hold a form (and a redirect must not cost a query).
        if settings.SSO["ENABLED"] and response.status_code == 200 and response.get("Content-Type", "").startswith("text/html"):
            from facelogin.services.sso import campus_app_origins

            origins = campus_app_origins()
            if origins:
                update = dict(getattr(response, "_csp_update", None) or {})
                update["form-action"] = [*update.get("form-action", []), *origins]
                response._csp_update = update
        return response
