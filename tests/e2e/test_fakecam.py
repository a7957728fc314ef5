"""The fake camera file: what write_y4m writes must be what Chromium's camera shows."""

from __future__ import annotations

import base64
import io
import sys

import numpy as np
import pytest
from PIL import Image

from tests.e2e.fakecam import (
    chromium_launch_kwargs,
    face_on_background,
    read_y4m,
    rgb_to_yuv420,
    webcam_frames,
    write_y4m,
)


def blocks(seed: int, width: int = 64, height: int = 48, block: int = 8) -> np.ndarray:
    """Random flat colour blocks aligned to the 2x2 chroma grid, so 4:2:0 loses nothing but rounding."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // block, width // block, 3), dtype=np.uint8)
    return small.repeat(block, axis=0).repeat(block, axis=1)


def test_y4m_header_layout_and_frames_round_trip(tmp_path):
    frames = [blocks(1), blocks(2), blocks(3)]
    path = write_y4m(tmp_path / "cam.y4m", frames, fps=15)

    assert path.is_absolute()
    data = path.read_bytes()
    header_line = b"YUV4MPEG2 W64 H48 F15:1 Ip A1:1 C420jpeg\n"
    assert data.startswith(header_line)
    frame_bytes = 64 * 48 * 3 // 2
    assert len(data) == len(header_line) + 3 * (len(b"FRAME\n") + frame_bytes)
    for index in range(3):  # exactly "FRAME\n" before each frame, nothing else
        start = len(header_line) + index * (6 + frame_bytes)
        assert data[start : start + 6] == b"FRAME\n"

    header, decoded = read_y4m(path)
    assert header["raw"] == header_line.decode().strip()
    assert (header["W"], header["H"], header["F"], header["C"]) == ("64", "48", "15:1", "420jpeg")
    assert len(decoded) == 3
    for original, back in zip(frames, decoded):
        error = np.abs(original.astype(int) - back.astype(int))
        assert error.max() <= 3, f"round trip off by {error.max()}"
    # Each frame is its own content (not the first frame repeated).
    assert np.abs(decoded[0].astype(int) - decoded[1].astype(int)).mean() > 20


def test_y4m_is_limited_range_bt601():
    black = np.zeros((4, 4, 3), np.uint8)
    white = np.full((4, 4, 3), 255, np.uint8)
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    y, cb, cr = rgb_to_yuv420(black)
    assert (y == 16).all() and (cb == 128).all() and (cr == 128).all()
    y, cb, cr = rgb_to_yuv420(white)
    assert (y == 235).all() and (cb == 128).all() and (cr == 128).all()
    y, cb, cr = rgb_to_yuv420(red)  # BT.601: Y 81, Cb 90, Cr 240
    assert (y == 81).all() and (cb == 90).all() and (cr == 240).all()
    assert y.shape == (4, 4) and cb.shape == (2, 2)


def test_y4m_refuses_what_chromium_would_play_as_black(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_y4m(tmp_path / "odd.y4m", [np.zeros((481, 640, 3), np.uint8)])
    with pytest.raises(ValueError, match="size of the first"):
        write_y4m(tmp_path / "mixed.y4m", [np.zeros((480, 640, 3), np.uint8), np.zeros((240, 320, 3), np.uint8)])
    with pytest.raises(ValueError, match="uint8"):
        write_y4m(tmp_path / "float.y4m", [np.zeros((480, 640, 3), np.float32)])
    with pytest.raises(ValueError):
        write_y4m(tmp_path / "none.y4m", [])


def test_face_on_background_places_the_scaled_photo(faces_dir):
    photo_path = sorted((faces_dir / "johns" / "John_Salley").glob("*.jpg"))[0]
    background = (196, 202, 208)
    frame = face_on_background(photo_path, size=(640, 480), face_height=300, background=background)

    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    for corner in (frame[0, 0], frame[0, -1], frame[-1, 0], frame[-1, -1]):
        assert tuple(corner) == background
    # The photo fills a centred 300x300 square, and is the photo (not a blank or a crop of it).
    placed = frame[90:390, 170:470].astype(int)
    expected = np.asarray(Image.open(photo_path).convert("RGB").resize((300, 300), Image.Resampling.LANCZOS), int)
    assert np.abs(placed - expected).mean() < 1.0
    assert (frame[:, :170] == background).all() and (frame[:, 470:] == background).all()


def test_webcam_frames_are_distinct_but_close():
    still = blocks(7)
    frames = webcam_frames(still, count=5, noise=2.0)
    assert len(frames) == 5
    assert len({f.tobytes() for f in frames}) == 5  # replay protection would count equal frames once
    for frame in frames:
        assert np.abs(frame.astype(int) - still.astype(int)).mean() < 3


CAPTURE_PAGE = """<!doctype html><meta charset=utf-8><video id=v autoplay muted playsinline></video>
<script>
window.grab = async () => {
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}});
  const video = document.getElementById("v");
  video.srcObject = stream;
  await video.play();
  // Let a few frames through: the first one can still be black while the capturer starts.
  await new Promise((resolve) => setTimeout(resolve, 700));
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return canvas.toDataURL("image/png");
};
</script>"""


@pytest.mark.browser
def test_chromium_camera_shows_the_y4m_face(tmp_path, faces_dir, playwright_instance):
    """The real browser's camera delivers our picture, not black frames (a wrong file still 'works')."""
    photo_path = sorted((faces_dir / "johns" / "John_Savage").glob("*.jpg"))[0]
    still = face_on_background(photo_path, face_height=300)
    video = write_y4m(tmp_path / "cam.y4m", webcam_frames(still, count=3))

    browser = playwright_instance.chromium.launch(**chromium_launch_kwargs(video))
    try:
        page = browser.new_page()
        # A page "on" 127.0.0.1 (a secure context, so getUserMedia exists) without any server.
        page.route("http://127.0.0.1:9/cam", lambda route: route.fulfill(content_type="text/html", body=CAPTURE_PAGE))
        page.goto("http://127.0.0.1:9/cam")
        data_url = page.evaluate("grab()")
    finally:
        browser.close()

    png = base64.b64decode(data_url.split(",", 1)[1])
    shown = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), int)
    assert shown.shape == (480, 640, 3)
    assert shown.mean() > 60, "the camera sent (nearly) black frames"
    face_error = np.abs(shown[90:390, 170:470] - still[90:390, 170:470].astype(int)).mean()
    background_error = np.abs(shown[:, :150] - still[:, :150].astype(int)).mean()
    print(f"camera vs source: face area off by {face_error:.2f}, background by {background_error:.2f}", file=sys.stderr)
    assert face_error < 6, f"the camera's picture differs from the y4m by {face_error:.1f} on average"
    assert background_error < 4
