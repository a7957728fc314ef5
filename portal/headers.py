"""Response headers for powerful browser features (the Content-Security-Policy comes from django-csp)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

# The sign-in page and the registrar's capture use the camera, on the portal's own origin only. Every
# other powerful feature is switched off by name, for the portal and anything it might ever embed.
PERMISSIONS_POLICY = ", ".join(
    ["camera=(self)"]
    + [
        f"{feature}=()"
        for feature in (
            "accelerometer",
            "ambient-light-sensor",
            "bluetooth",
            "display-capture",
            "geolocation",
            "gyroscope",
            "hid",
            "idle-detection",
            "magnetometer",
            "microphone",
            "midi",
            "payment",
            "screen-wake-lock",
            "serial",
            "usb",
            "xr-spatial-tracking",
        )
    ]
)


class PermissionsPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response
