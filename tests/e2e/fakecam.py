"""A fake webcam for headless Chromium, fed with real face photos.

Chromium plays a ``.y4m`` file as its camera with ``--use-fake-device-for-media-stream
--use-file-for-fake-video-capture=<absolute path>`` (see /work/shared/notes/browser-e2e.md). The file
must be 4:2:0 (tag ``C420jpeg``), even-sized, limited-range BT.601 (Y 16–235), with exactly ``FRAME\\n``
before each frame; anything else gives "Requested device not found" or a camera that sends black.

Typical use::

    frame = face_on_background(photo, face_height=300)
    write_y4m(tmp_path / "cam.y4m", webcam_frames(frame))
    browser = playwright.chromium.launch(**chromium_launch_kwargs(tmp_path / "cam.y4m"))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

CHROMIUM = "/usr/bin/chromium"

# Verified flags (browser-e2e.md). No --disable-features here: Chromium keeps only the last one given,
# which would drop Playwright's own.
CHROMIUM_QUIET_FLAGS = (
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# BT.601 RGB → Y'CbCr, limited range (Y 16–235, Cb/Cr 16–240), for 8-bit RGB input.
_RGB_TO_YCBCR = np.array(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ]
) / 255.0
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])


def _check_frame(frame: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"a frame must be H x W x 3 RGB, not {frame.shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"a frame must be uint8, not {frame.dtype}")
    height, width = frame.shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"y4m 4:2:0 needs an even width and height, not {width}x{height}")
    if shape is not None and frame.shape != shape:
        raise ValueError(f"every frame must have the size of the first: {frame.shape} != {shape}")
    return frame


def rgb_to_yuv420(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Y, Cb, Cr planes (uint8) of an RGB frame: limited-range BT.601, chroma averaged over 2x2 (JPEG siting)."""
    ycc = frame.astype(np.float64) @ _RGB_TO_YCBCR.T + _YCBCR_OFFSET
    y = ycc[..., 0]
    h, w = y.shape
    chroma = ycc[..., 1:].reshape(h // 2, 2, w // 2, 2, 2).mean(axis=(1, 3))
    to8 = lambda plane: np.clip(np.rint(plane), 0, 255).astype(np.uint8)  # noqa: E731
    return to8(y), to8(chroma[..., 0]), to8(chroma[..., 1])


def yuv420_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_yuv420` (chroma repeated over 2x2), as uint8 RGB."""
    cb = cb.astype(np.float64).repeat(2, axis=0).repeat(2, axis=1)
    cr = cr.astype(np.float64).repeat(2, axis=0).repeat(2, axis=1)
    ycc = np.stack([y.astype(np.float64), cb, cr], axis=-1) - _YCBCR_OFFSET
    rgb = ycc @ np.linalg.inv(_RGB_TO_YCBCR).T
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def write_y4m(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: int = 15) -> Path:
    """Write RGB frames (uint8, H x W x 3, even sizes, all the same size) as a Chromium-ready y4m file.

    Header ``YUV4MPEG2 W<w> H<h> F<fps>:1 Ip A1:1 C420jpeg``; each frame is ``FRAME\\n`` and the Y, Cb,
    Cr planes. Chromium loops the file forever. Returns the absolute path (what Chromium needs).
    """
    if not frames:
        raise ValueError("at least one frame is needed")
    if int(fps) != fps or fps <= 0:
        raise ValueError(f"fps must be a positive whole number, not {fps}")
    first = _check_frame(frames[0], None)
    height, width = first.shape[:2]
    path = Path(path).resolve()
    with path.open("wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{int(fps)}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for frame in frames:
            frame = _check_frame(frame, first.shape)
            handle.write(b"FRAME\n")
            for plane in rgb_to_yuv420(frame):
                handle.write(np.ascontiguousarray(plane).tobytes())
    return path


def read_y4m(path: str | os.PathLike) -> tuple[dict[str, str], list[np.ndarray]]:
    """Read a 4:2:0 y4m file: (header fields by tag letter, plus ``"raw"`` for the whole line; RGB frames)."""
    data = Path(path).read_bytes()
    end = data.index(b"\n")
    header_line = data[:end].decode("ascii")
    parts = header_line.split(" ")
    if parts[0] != "YUV4MPEG2":
        raise ValueError(f"not a y4m file: {header_line!r}")
    header = {part[0]: part[1:] for part in parts[1:]}
    header["raw"] = header_line
    if not header.get("C", "420").startswith("420"):
        raise ValueError(f"only 4:2:0 is supported, not C{header['C']}")
    width, height = int(header["W"]), int(header["H"])
    y_size, c_size = width * height, (width // 2) * (height // 2)
    frames: list[np.ndarray] = []
    offset = end + 1
    while offset < len(data):
        marker_end = data.index(b"\n", offset)
        if data[offset:marker_end] != b"FRAME":
            raise ValueError(f"expected FRAME at byte {offset}, found {data[offset:marker_end][:20]!r}")
        offset = marker_end + 1
        planes = data[offset : offset + y_size + 2 * c_size]
        if len(planes) != y_size + 2 * c_size:
            raise ValueError("truncated frame")
        y = np.frombuffer(planes[:y_size], np.uint8).reshape(height, width)
        cb = np.frombuffer(planes[y_size : y_size + c_size], np.uint8).reshape(height // 2, width // 2)
        cr = np.frombuffer(planes[y_size + c_size :], np.uint8).reshape(height // 2, width // 2)
        frames.append(yuv420_to_rgb(y, cb, cr))
        offset += y_size + 2 * c_size
    return header, frames


def face_on_background(
    photo_path: str | os.PathLike,
    size: tuple[int, int] = (640, 480),
    face_height: int = 300,
    background: tuple[int, int, int] = (196, 202, 208),
    center: tuple[int, int] | None = None,
) -> np.ndarray:
    """A webcam-sized RGB frame (``size`` = (width, height)) showing a photo on a plain background.

    The photo is scaled (Lanczos) so that its height is ``face_height`` pixels: the 150x150 johns
    crops are almost all face, so ``face_height=300`` gives a face about as big as someone sitting
    at a laptop. A photo that would not fit is shrunk to fit. ``center`` (x, y) defaults to the
    middle of the frame.
    """
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"the frame needs an even width and height, not {width}x{height}")
    with Image.open(photo_path) as opened:
        photo = ImageOps.exif_transpose(opened).convert("RGB")
    scale = min(face_height / photo.height, width / photo.width, height / photo.height)
    new_size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
    photo = photo.resize(new_size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height), background)
    cx, cy = center or (width // 2, height // 2)
    left = min(max(0, cx - new_size[0] // 2), width - new_size[0])
    top = min(max(0, cy - new_size[1] // 2), height - new_size[1])
    canvas.paste(photo, (left, top))
    return np.asarray(canvas, dtype=np.uint8).copy()


def webcam_frames(frame: np.ndarray, count: int = 20, noise: float = 2.0, seed: int = 0) -> list[np.ndarray]:
    """``count`` copies of a still frame with a little sensor noise each, like a webcam pointed at a photo.

    The server counts byte-identical frames only once (replay protection, docs/protocol.md), and a
    single still y4m frame makes the browser send the same JPEG again and again; noise keeps every
    frame distinct, as it is with a real camera.
    """
    rng = np.random.default_rng(seed)
    base = np.asarray(frame, dtype=np.int16)
    if count < 1:
        raise ValueError("count must be at least 1")
    if noise <= 0:
        return [np.asarray(frame, dtype=np.uint8)] * count
    return [
        np.clip(base + np.rint(rng.normal(0.0, noise, base.shape)), 0, 255).astype(np.uint8) for _ in range(count)
    ]


def chromium_args(video_file: str | os.PathLike | None = None, *, fake_ui: bool = True, fake_device: bool = True) -> list[str]:
    """Command-line flags for headless Chromium with a fake camera.

    ``video_file``: the y4m the camera plays (made absolute; Chromium needs that). ``fake_ui=False``
    leaves the permission prompt in place, which headless Chromium answers "denied" (unless the
    context grants ``permissions=["camera"]``). Without ``fake_device`` there is no camera at all.
    """
    args = list(CHROMIUM_QUIET_FLAGS)
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    if fake_device:
        args.append("--use-fake-device-for-media-stream")
    if fake_ui:
        args.append("--use-fake-ui-for-media-stream")
    if video_file is not None:
        path = Path(video_file).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"fake camera file {path} does not exist")
        args.append(f"--use-file-for-fake-video-capture={path}")
    return args


def chromium_launch_kwargs(video_file: str | os.PathLike | None = None, *, fake_ui: bool = True, fake_device: bool = True, executable: str = CHROMIUM) -> dict:
    """Keyword arguments for Playwright's ``chromium.launch``: Debian's Chromium, headless, fake camera."""
    return {
        "executable_path": executable,
        "headless": True,
        "args": chromium_args(video_file, fake_ui=fake_ui, fake_device=fake_device),
    }
