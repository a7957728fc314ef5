"""The face sign-in websocket protocol: the one place its codes are defined (docs/protocol.md).

Close codes are sent with the websocket close frame; error codes inside JSON ``{"type": "error"}``
messages. The page's JavaScript receives both lists in the ``hello`` message, so it never hard-codes them.
"""

from __future__ import annotations

WEBSOCKET_PATH = "ws/face-login/"


class Close:
    NORMAL = 1000  # after a final "success" or "failed" message
    NO_SESSION = 4001  # the browser has no session cookie: reload the page
    NO_CLAIM = 4002  # verify mode: no student number was given before the camera started
    UNAVAILABLE = 4003  # face sign-in is not available (no trained classifier, model missing)
    TIMEOUT = 4008  # the attempt's deadline passed without a decision
    PROTOCOL = 4400  # a text frame or another message the protocol does not allow
    NOT_RECOGNISED = 4403  # the attempt ended without recognising an enrolled, active student
    FRAME_TOO_LARGE = 4413  # a frame over the byte cap
    BAD_IMAGES = 4415  # too many frames that are not images
    THROTTLED = 4429  # too many attempts or frames; "retry_after" was sent first
    BUSY = 4503  # the server is overloaded and could not judge the attempt; not counted as a failure
    SERVER_ERROR = 4500


class Error:
    """Non-fatal per-frame problems; the attempt goes on."""

    BAD_IMAGE = "bad_image"  # not a decodable JPEG/PNG/WebP
    TOO_FAST = "too_fast"  # over the frame-rate cap; the frame was dropped
    BUSY = "busy"  # sent before the previous frame was answered; dropped
    DUPLICATE = "duplicate"  # the same bytes as an earlier frame; counted once


class Guidance:
    """What the page tells the person in front of the camera, by key."""

    FACE_FOUND = "face_found"
    NO_FACE = "no_face"
    MOVE_CLOSER = "move_closer"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    HOLD_STILL = "hold_still"
    LOOK_AT_CAMERA = "look_at_camera"
    SEVERAL_FACES = "several_faces"


def codes_for_client() -> dict:
    return {
        "close": {k.lower(): v for k, v in vars(Close).items() if k.isupper()},
        "error": {k.lower(): v for k, v in vars(Error).items() if k.isupper()},
    }
