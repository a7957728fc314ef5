"""Errors the pipeline raises. Each carries a machine-readable ``code`` and a human message.

Callers (services, consumers, tasks) map ``code`` to their own wording and protocol; the pipeline
never knows about HTTP, websockets or Django.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class: something about the input or the models stops recognition."""

    code = "pipeline_error"
    message = "The image could not be processed."

    def __init__(self, message: str | None = None, **details: object) -> None:
        self.message = message or type(self).message
        self.details = details
        super().__init__(self.message)


# --- decode -------------------------------------------------------------------------------------
class ImageError(PipelineError):
    code = "bad_image"
    message = "The file is not a usable image."


class EmptyImage(ImageError):
    code = "empty"
    message = "The image is empty."


class ImageTooLarge(ImageError):
    code = "too_large"
    message = "The image file is too large."


class TooManyPixels(ImageError):
    """Width x height over the cap: a decompression bomb, or simply an oversized photo."""

    code = "too_many_pixels"
    message = "The image has too many pixels."


class NotAnImage(ImageError):
    code = "not_an_image"
    message = "The file is not a JPEG, PNG or WebP image."


class TruncatedImage(ImageError):
    code = "truncated"
    message = "The image file is damaged or incomplete."


# --- detect -------------------------------------------------------------------------------------
class FaceCountError(PipelineError):
    code = "face_count"


class NoFace(FaceCountError):
    code = "no_face"
    message = "No face was found in the image."


class TooManyFaces(FaceCountError):
    code = "several_faces"
    message = "More than one face was found; the photo must show exactly one person."


# --- models -------------------------------------------------------------------------------------
class ModelUnavailable(PipelineError):
    """Weights missing, unreadable, or with the wrong hash. An operator problem, not the user's."""

    code = "model_unavailable"
    message = "The face recognition model is not available."


class NotTrained(PipelineError):
    code = "not_trained"
    message = "No classifier has been trained yet."
