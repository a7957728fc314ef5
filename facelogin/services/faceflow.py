"""What the face sign-in page needs: addresses and the sentences it shows, translated."""

from __future__ import annotations

from functools import lru_cache

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from facelogin import protocol
from facelogin.services.devices import browser_may_be_known

# Verify mode: the student number the person typed, read by the websocket from the session.
CLAIM_SESSION_KEY = "face_claim"
CLAIM_MAX_LENGTH = 32


def safe_next(request: HttpRequest, value: str | None) -> str:
    if value and url_has_allowed_host_and_scheme(value, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return value
    return ""


def face_page_messages() -> dict[str, str]:
    """Every sentence the page's JavaScript can show, keyed as the protocol's guidance and reasons, in
    the active language."""
    return dict(_page_messages(get_language()))  # a copy: the cached one is shared


@lru_cache(maxsize=None)  # per language: the catalogues are fixed while the process runs
def _page_messages(language: str | None) -> dict[str, str]:
    return {
        "starting": _("Starting the camera…"),
        "start": _("Press “Start the camera” to begin."),
        "connecting": _("Connecting…"),
        "look": _("Look at the camera."),
        protocol.Guidance.FACE_FOUND: _("Face found. Hold still…"),
        protocol.Guidance.NO_FACE: _("No face found. Look at the camera."),
        protocol.Guidance.MOVE_CLOSER: _("Move closer to the camera."),
        protocol.Guidance.TOO_DARK: _("It is too dark. Turn towards a light."),
        protocol.Guidance.TOO_BRIGHT: _("It is too bright. Move away from direct light."),
        protocol.Guidance.HOLD_STILL: _("Hold still."),
        protocol.Guidance.LOOK_AT_CAMERA: _("Look straight at the camera."),
        protocol.Guidance.SEVERAL_FACES: _("More than one face is visible. Only you should be in view."),
        "challenge_turn_left": _("Turn your head to your left"),
        "challenge_turn_right": _("Turn your head to your right"),
        "challenge_look": _("Look straight at the camera"),
        "challenge_hold": _("Good. Hold your head there…"),
        "success": _("Recognised. Signing you in…"),
        "not_recognised": _("We could not recognise you. Try again in better light, or sign in with your password."),
        "timeout": _("Time is up before we could recognise you. Try again, or sign in with your password."),
        "liveness_failed": _("The liveness check was not completed. Follow the instructions on screen and try again."),
        "throttled": _("Too many attempts. Wait {seconds} seconds, or sign in with your password."),
        "unavailable": _("Face sign-in is not available right now. Please sign in with your password."),
        "busy": _("Face sign-in is very busy right now. Wait a moment and try again, or sign in with your password."),
        "camera_missing": _("No camera was found. Connect a camera, or sign in with your password."),
        "camera_denied": _("Camera access was refused. Allow the camera in your browser, or sign in with your password."),
        "camera_error": _("The camera could not be started. Sign in with your password instead."),
        "closed": _("The connection to the portal was lost. Try again."),
        "no_session": _("Your session expired. Reload the page and try again."),
        "no_claim": _("Enter your student number first."),
        "bad_image": _("A picture from your camera could not be read."),
        "server_error": _("Something went wrong on our side. Please try again or use your password."),
        "unsupported": _("This browser cannot use the camera here. Sign in with your password."),
    }


def claim_store(request: HttpRequest, student_number: str) -> bool:
    """Verify mode: remember which student the person says they are; False when it is not plausible."""
    number = (student_number or "").strip()
    if not number or len(number) > CLAIM_MAX_LENGTH:
        return False
    request.session[CLAIM_SESSION_KEY] = number
    return True


def claim_forget(request: HttpRequest) -> None:
    request.session.pop(CLAIM_SESSION_KEY, None)


def face_page_context(request: HttpRequest) -> dict:
    from django.conf import settings

    verify = settings.FACELOGIN["MODE"] == "verify"
    claim = request.session.get(CLAIM_SESSION_KEY) if verify else None
    return {
        "ws_path": "/" + protocol.WEBSOCKET_PATH,
        "next": safe_next(request, request.GET.get("next")),
        "messages_for_js": face_page_messages(),
        "liveness_off": not settings.FACELOGIN.get("LIVENESS", True),
        "flash": settings.FACELOGIN.get("LIVENESS", True) and settings.FACELOGIN.get("LIVENESS_FLASH", True),
        # FACELOGIN_DEVICE_POLICY=known on a browser no student has remembered and not a kiosk: say in
        # advance that the face will be followed by the password.
        "password_after_face": not browser_may_be_known(request),
        "verify": verify,
        "claim": claim,
        "claim_needed": verify and not claim,
    }
