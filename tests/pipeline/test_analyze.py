"""facelogin.pipeline.analyze: the whole path on real photos with the real FaceNet weights."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from facelogin.pipeline import errors
from facelogin.pipeline.analyze import STAGES, AnalyzerConfig, FaceAnalyzer
from facelogin.pipeline.decode import LIVE_FORMATS, decode_image
from facelogin.pipeline.types import FrameAnalysis

JOHN = "johns/John_Salley/000179_02159509.jpg"
TOM = "photos/Tom_Cruise_avp_2014_4.jpg"


class CountingEmbedder:
    """The real embedder, counting its calls."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def embed(self, crops: np.ndarray) -> np.ndarray:
        self.calls.append(len(crops))
        return self.inner.embed(crops)


@pytest.fixture(scope="module")
def counting(embedder) -> CountingEmbedder:
    import torch

    torch.set_num_threads(1)  # see test_detect.py: one thread per process on these 2 shared cores
    return CountingEmbedder(embedder)


@pytest.fixture(scope="module")
def analyzer(counting: CountingEmbedder) -> FaceAnalyzer:
    return FaceAnalyzer(AnalyzerConfig(), counting)


def read(faces_dir: Path, name: str) -> bytes:
    return (faces_dir / name).read_bytes()


def jpeg(image: np.ndarray | Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_a_portrait_gives_a_face_a_report_a_crop_and_a_unit_embedding(analyzer: FaceAnalyzer, faces_dir: Path) -> None:
    analysis = analyzer.analyze_bytes(read(faces_dir, "photos/kate_siegel.jpg"))
    assert analysis.detection.count == 1 and analysis.face is analysis.detection.largest
    assert analysis.quality is not None and analysis.quality.ok
    assert analysis.crop is not None and analysis.crop.shape == (160, 160, 3) and analysis.crop.dtype == np.uint8
    assert analysis.embedding is not None and analysis.embedding.shape == (512,)
    assert analysis.embedding.dtype == np.float32
    assert np.linalg.norm(analysis.embedding) == pytest.approx(1.0, abs=1e-5)


def test_every_stage_is_timed(analyzer: FaceAnalyzer, faces_dir: Path) -> None:
    timings = analyzer.analyze_bytes(read(faces_dir, JOHN)).timings_ms
    assert set(STAGES) <= set(timings) and STAGES == ("decode", "detect", "quality", "align", "embed")
    assert all(timings[stage] > 0 for stage in STAGES)


def test_a_big_photo_is_analysed_at_the_configured_size(analyzer: FaceAnalyzer, faces_dir: Path) -> None:
    analysis = analyzer.analyze_bytes(read(faces_dir, "photos/paul_rudd.jpg"), embed=False)  # 1638x2048
    assert max(analysis.detection.image_size) == 1280
    assert analysis.embedding is None and analysis.timings_ms["embed"] == 0.0


def test_the_same_person_is_closer_than_another(analyzer: FaceAnalyzer, faces_dir: Path) -> None:
    simm = sorted((faces_dir / "johns" / "John_Simm").glob("*.jpg"))
    a, b = (analyzer.analyze_bytes(p.read_bytes()).embedding for p in simm[:2])
    other = analyzer.analyze_bytes(read(faces_dir, JOHN)).embedding
    assert a is not None and b is not None and other is not None
    assert float(a @ b) > 0.6 > float(a @ other)


# --- face count rules ----------------------------------------------------------------------------
def test_login_with_several_faces_uses_the_largest_and_reports_the_count(analyzer: FaceAnalyzer, faces_dir: Path) -> None:
    analysis = analyzer.analyze_bytes(read(faces_dir, "photos/multiface.jpg"))
    assert analysis.detection.count == 6
    assert analysis.face == analysis.detection.faces[0]
    assert analysis.face.area == max(face.area for face in analysis.detection.faces)


def two_people(faces_dir: Path) -> bytes:
    left = Image.open(faces_dir / JOHN).convert("RGB")
    right = Image.open(faces_dir / "johns" / "John_Simm" / "000288_00470387.jpg").convert("RGB")
    canvas = Image.new("RGB", (320, 160), (90, 90, 90))
    canvas.paste(left, (5, 5))
    canvas.paste(right, (165, 5))
    return jpeg(canvas)


def test_an_enrolment_photo_with_two_faces_is_refused(analyzer: FaceAnalyzer, faces_dir: Path) -> None:
    data = two_people(faces_dir)
    with pytest.raises(errors.TooManyFaces) as info:
        analyzer.analyze_bytes(data, purpose="enrol")
    assert info.value.details["count"] == 2 and info.value.code == "several_faces"
    assert analyzer.analyze_bytes(data, purpose="login").detection.count == 2  # login only reports it


def test_an_enrolment_group_photo_is_refused(analyzer: FaceAnalyzer, faces_dir: Path) -> None:
    with pytest.raises(errors.TooManyFaces):
        analyzer.analyze_bytes(read(faces_dir, "photos/multiface.jpg"), purpose="enrol")


def test_an_enrolment_photo_without_a_face_is_no_face(analyzer: FaceAnalyzer, faces_dir: Path) -> None:
    with pytest.raises(errors.NoFace):
        analyzer.analyze_bytes(read(faces_dir, "photos/noface_dogs.jpg"), purpose="enrol")


def test_a_login_frame_without_a_face_is_an_answer_not_an_error(analyzer: FaceAnalyzer, faces_dir: Path) -> None:
    analysis = analyzer.analyze_bytes(read(faces_dir, "photos/noface_dogs.jpg"))
    assert analysis.face is None and analysis.quality is None
    assert analysis.crop is None and analysis.embedding is None
    assert analysis.detection.count == 0


def test_an_unknown_purpose_is_a_programming_error(analyzer: FaceAnalyzer, faces_dir: Path) -> None:
    with pytest.raises(ValueError):
        analyzer.analyze_bytes(read(faces_dir, JOHN), purpose="signup")


# --- inputs --------------------------------------------------------------------------------------
def test_bad_bytes_raise_the_decoders_error(analyzer: FaceAnalyzer, faces_dir: Path) -> None:
    with pytest.raises(errors.NotAnImage):
        analyzer.analyze_bytes(b"GIF89a nonsense")
    data = read(faces_dir, TOM)
    with pytest.raises(errors.TruncatedImage):
        analyzer.analyze_bytes(data[: len(data) // 2])


def test_pgm_is_refused_live_but_accepted_when_asked(analyzer: FaceAnalyzer, counting: CountingEmbedder, faces_dir: Path) -> None:
    data = read(faces_dir, "orl/s3/4.pgm")
    with pytest.raises(errors.NotAnImage):
        analyzer.analyze_bytes(data)
    assert analyzer.analyze_bytes(data, formats=(*LIVE_FORMATS, "PPM")).embedding is not None
    wide = FaceAnalyzer(AnalyzerConfig(formats=(*LIVE_FORMATS, "PPM")), counting)
    assert wide.analyze_bytes(data).embedding is not None


def test_analyze_image_matches_analyze_bytes(analyzer: FaceAnalyzer, faces_dir: Path) -> None:
    data = read(faces_dir, TOM)
    from_bytes = analyzer.analyze_bytes(data)
    from_array = analyzer.analyze_image(decode_image(data, max_side=1280))
    assert from_array.face == from_bytes.face
    assert np.array_equal(from_array.crop, from_bytes.crop)
    assert np.allclose(from_array.embedding, from_bytes.embedding, atol=1e-6)
    assert from_array.timings_ms["decode"] == 0.0


# --- quality and embedding -----------------------------------------------------------------------
def test_a_poor_face_is_not_embedded_unless_asked(analyzer: FaceAnalyzer, counting: CountingEmbedder, faces_dir: Path) -> None:
    blurred = jpeg(Image.open(faces_dir / JOHN).convert("RGB").filter(ImageFilter.GaussianBlur(3)))
    analysis = analyzer.analyze_bytes(blurred)
    assert analysis.quality is not None and "blurred" in analysis.quality.reasons
    assert analysis.crop is not None and analysis.embedding is None
    eager = FaceAnalyzer(replace(AnalyzerConfig(), embed_poor_quality=True), counting)
    assert eager.analyze_bytes(blurred).embedding is not None
    # liveness: every login face is embedded (who it is gets judged on every frame), an enrolment photo not
    liveness = FaceAnalyzer(replace(AnalyzerConfig(), embed_every_login_face=True), counting)
    assert liveness.analyze_bytes(blurred).embedding is not None
    assert liveness.analyze_batch([blurred])[0].embedding is not None
    assert liveness.analyze_bytes(blurred, purpose="enrol").embedding is None


def test_a_dark_frame_is_brightened_retried_and_recognised(analyzer: FaceAnalyzer, counting: CountingEmbedder, faces_dir: Path) -> None:
    original = decode_image(read(faces_dir, TOM), max_side=640)
    rng = np.random.default_rng(1)
    dark = jpeg(np.clip(original * 0.15 + rng.normal(0, 2, original.shape), 0, 255).astype(np.uint8), quality=80)
    reference = analyzer.analyze_image(original).embedding

    rescued = analyzer.analyze_bytes(dark)
    assert "brighten" in rescued.timings_ms or "expose" in rescued.timings_ms  # found first, or only once brightened
    assert rescued.quality is not None and rescued.quality.ok
    assert rescued.embedding is not None and float(rescued.embedding @ reference) > 0.75

    plain = FaceAnalyzer(replace(AnalyzerConfig(), brighten_dark=False, expose_dark_below=None), counting).analyze_bytes(dark)
    assert "brighten" not in plain.timings_ms
    assert plain.face is None or "too_dark" in plain.quality.reasons
    assert plain.embedding is None


def _webcam(
    photo: np.ndarray, *, exposure: float, noise: float, seed: int, face_height: int = 150, background: int = 120, face_exposure: float = 1.0
) -> bytes:
    """The photo on a plain 640x480 frame (most of it background, as at a desk), exposed and noisy;
    ``face_exposure`` darkens the photo alone (a face against a bright window)."""
    image = Image.fromarray(np.clip(photo * face_exposure, 0, 255).astype(np.uint8))
    image = image.resize((round(image.width * face_height / image.height), face_height), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (640, 480), (background,) * 3)
    canvas.paste(image, ((640 - image.width) // 2, (480 - image.height) // 2))
    pixels = np.asarray(canvas, dtype=np.float32) * exposure + np.random.default_rng(seed).normal(0, noise, (480, 640, 3))
    return jpeg(np.clip(pixels, 0, 255).astype(np.uint8), quality=80)


def test_a_backlit_face_is_exposed_for_the_face_not_for_the_frame(analyzer: FaceAnalyzer, counting: CountingEmbedder, faces_dir: Path) -> None:
    # A dark face against a bright window: the frame already spans black to white, so stretching the
    # whole frame cannot lift the face, which stays "too dark" and never votes. Metering on the face can.
    photo = decode_image(read(faces_dir, "photos/paul_rudd.jpg"), max_side=640)
    reference = analyzer.analyze_image(photo).embedding
    frame_wide = FaceAnalyzer(replace(AnalyzerConfig(), expose_dark_below=None), counting)
    for seed in range(3):
        backlit = _webcam(photo, exposure=1.0, noise=4.0, seed=seed, background=235, face_exposure=0.25, face_height=220)
        old = frame_wide.analyze_bytes(backlit)
        assert old.face is not None and "too_dark" in old.quality.reasons and old.embedding is None
        exposed = analyzer.analyze_bytes(backlit)
        assert "expose" in exposed.timings_ms and exposed.quality.ok
        assert float(exposed.embedding @ reference) > 0.8


def test_login_frames_are_judged_more_kindly_than_enrolment_photos(analyzer: FaceAnalyzer, faces_dir: Path) -> None:
    photo = decode_image(read(faces_dir, "johns/John_Savage/000290_01099067.jpg"), max_side=640)
    bright = _webcam(photo, exposure=1.8, noise=2.0, seed=1, face_height=200)
    login, enrol = analyzer.analyze_bytes(bright), analyzer.analyze_bytes(bright, purpose="enrol")
    assert 210 < login.quality.brightness <= 245 and login.quality.ok and login.embedding is not None
    assert "too_bright" in enrol.quality.reasons
    small = _webcam(photo, exposure=1.0, noise=2.0, seed=2, face_height=68)  # the face box about 55 px
    login, enrol = analyzer.analyze_bytes(small), analyzer.analyze_bytes(small, purpose="enrol")
    assert 50 <= login.quality.face_px < 60 and login.quality.ok
    assert "too_small" in enrol.quality.reasons


def test_a_black_frame_is_not_brightened_into_noise(analyzer: FaceAnalyzer) -> None:
    analysis = analyzer.analyze_bytes(jpeg(np.full((480, 640, 3), 3, dtype=np.uint8)))
    assert analysis.face is None and "brighten" not in analysis.timings_ms


# --- batches -------------------------------------------------------------------------------------
def assert_same_face(a, b) -> None:
    assert (a is None) == (b is None)
    if a is not None:
        assert np.allclose(a.box, b.box, atol=0.01) and np.allclose(a.landmarks, b.landmarks, atol=0.01)
        assert abs(a.probability - b.probability) < 1e-4


def test_a_batch_embeds_in_one_call_and_equals_single_analysis(analyzer: FaceAnalyzer, counting: CountingEmbedder, faces_dir: Path) -> None:
    simm = sorted((faces_dir / "johns" / "John_Simm").glob("*.jpg"))
    frames = [
        simm[0].read_bytes(),
        b"not an image",
        read(faces_dir, "photos/noface_dogs.jpg"),
        read(faces_dir, JOHN),
        read(faces_dir, "photos/multiface.jpg"),
        simm[1].read_bytes(),
    ]
    singles = [analyzer.analyze_bytes(f) if i != 1 else None for i, f in enumerate(frames)]
    counting.calls.clear()
    results = analyzer.analyze_batch(frames)
    assert len(counting.calls) == 1 and counting.calls[0] == 4  # four good faces, one call

    assert isinstance(results[1], errors.NotAnImage)
    for single, batched in zip(singles, results):
        if single is None:
            continue
        assert isinstance(batched, FrameAnalysis)
        assert_same_face(batched.face, single.face)  # detected together in the batch: float noise only
        assert batched.detection.count == single.detection.count
        if single.embedding is None:
            assert batched.embedding is None
        else:
            assert np.allclose(batched.embedding, single.embedding, atol=1e-5)
            assert float(batched.embedding @ single.embedding) > 0.99999
    assert results[2].face is None


def test_a_batch_for_enrolment_returns_face_count_errors_in_place(analyzer: FaceAnalyzer, faces_dir: Path) -> None:
    results = analyzer.analyze_batch(
        [read(faces_dir, "photos/noface_dogs.jpg"), read(faces_dir, JOHN)], purpose="enrol"
    )
    assert isinstance(results[0], errors.NoFace)
    assert isinstance(results[1], FrameAnalysis) and results[1].embedding is not None


def test_an_empty_batch_is_empty(analyzer: FaceAnalyzer) -> None:
    assert analyzer.analyze_batch([]) == []


def test_the_portals_login_frames_have_their_own_small_limits_and_enrolment_keeps_its_own(counting: CountingEmbedder, faces_dir: Path) -> None:
    from facelogin.pipeline.decode import DecodeLimits

    portal = FaceAnalyzer(AnalyzerConfig(login_decode=DecodeLimits.login_frame()), counting)
    photo = read(faces_dir, "photos/paul_rudd.jpg")  # 1638x2048, 0.6 MB: a photo, not a webcam frame
    wide = jpeg(Image.open(io.BytesIO(photo)).convert("RGB").resize((1300, 1625)), quality=60)
    assert len(wide) < DecodeLimits.login_frame().max_bytes
    assert isinstance(portal.analyze_batch([wide], purpose="login")[0], errors.TooManyPixels)
    refused = portal.analyze_batch([photo, jpeg(Image.open(io.BytesIO(photo)).convert("RGB").resize((480, 600)))], purpose="login")
    assert isinstance(refused[0], (errors.ImageTooLarge, errors.TooManyPixels)) and refused[1].face is not None  # the batch goes on
    assert portal.analyze_bytes(photo, purpose="enrol", embed=False).face is not None
