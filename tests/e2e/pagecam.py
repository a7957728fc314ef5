"""A camera that answers the page: a script injected into the sign-in page stands in for the webcam and
draws frames that respond to what the page shows, as a person (or an attacker) in front of it would.

``getUserMedia`` returns a canvas's stream. The canvas shows pictures made beforehand in Python from a real
held-out photo: the student's head turned in 3-D (bench.head3d, every 2 degrees) or flat photos. A script
watches the page: the prompt in ``#face-challenge`` (its ``data-step``) and the colour of ``#face-flash``,
and draws accordingly:

* ``student``: after a person's reaction time, turns the head the way the prompt asks, at a person's
  speed; the screen's colour shows on the face (a face reflects it);
* ``still``: a printed photo held up, a hand's jitter; it reflects the screen too, but cannot turn;
* ``swap``: a photo on a tablet swapped for a turned photo of the student when the first turn is asked;
  a tablet glows with its own picture (the page's colour does not show on it);
* ``recording``: a video of the student turning left and right at their own pace, on a phone.

Each drawn frame moves by a pixel or so, so no two frames the page sends have the same bytes.
"""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

STEP_DEGREES = 2


def _data_url(image: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def head_frames(photo: Path, *, face_height: int = 240, max_yaw: int = 28) -> dict[int, str]:
    """The student's head turned from -max_yaw to +max_yaw degrees (bench.head3d), as JPEG data URLs."""
    from bench.head3d import Head, load_photo, place

    head = Head.from_canvas(place(load_photo(photo), face_height))
    assert head is not None, f"no face in {photo}"
    return {yaw: _data_url(head.render(float(yaw)).image) for yaw in range(-max_yaw, max_yaw + 1, STEP_DEGREES)}


def photo_frame(photo: Path, *, face_height: int = 240, mirror: bool = False) -> str:
    from bench.head3d import load_photo, place

    return _data_url(place(load_photo(photo, mirror), face_height))


def recording_frames(photo: Path, seed: int = 0) -> list[tuple[float, str]]:
    """A filmed turn left, then right, at the student's own pace: (seconds, frame) for 6 s."""
    frames = head_frames(photo)
    rng = random.Random(seed)
    timeline = [(0.0, 0), (1.2, 0), (1.7, 24), (2.6, 24), (3.4, -24), (4.3, -24), (4.8, 0), (6.0, 0)]
    out = []
    t = 0.0
    while t < 6.0:
        (t0, y0), (t1, y1) = next((a, b) for a, b in zip(timeline, timeline[1:]) if a[0] <= t <= b[0])
        yaw = y0 + (y1 - y0) * (t - t0) / (t1 - t0)
        out.append((round(t, 2), frames[int(round(yaw / STEP_DEGREES) * STEP_DEGREES)]))
        t += 0.1 + rng.uniform(-0.01, 0.01)
    return out


SCRIPT = r"""
(() => {
  const config = __CONFIG__;
  const canvas = document.createElement("canvas");
  canvas.width = 640; canvas.height = 480;
  const context = canvas.getContext("2d");
  const images = {};
  const load = (key, url) => { const image = new Image(); image.src = url; images[key] = image; };
  for (const [key, url] of Object.entries(config.frames || {})) load(key, url);
  (config.recording || []).forEach(([, url], index) => load(`rec${index}`, url));
  const started = performance.now();
  let yaw = 0, target = 0, prompt = "", promptSeenAt = 0, swapped = false;

  function pagePrompt() {
    const box = document.getElementById("face-challenge");
    return box && !box.hidden ? (box.dataset.step || "") : "";
  }
  function pageColour() {
    const layer = document.getElementById("face-flash");
    if (!layer) return null;
    const match = getComputedStyle(layer).backgroundColor.match(/\d+/g);
    return match && layer.style.backgroundColor ? match.slice(0, 3).map(Number) : null;
  }
  function picture(now) {
    const seconds = (now - started) / 1000;
    if (config.mode === "recording") {
      const cycle = config.recording[config.recording.length - 1][0] + 0.1;
      const t = seconds % cycle;
      let index = 0;
      while (index + 1 < config.recording.length && config.recording[index + 1][0] <= t) index += 1;
      return images[`rec${index}`];
    }
    const step = pagePrompt();
    if (step !== prompt) { prompt = step; promptSeenAt = now; }
    const reacted = now - promptSeenAt > config.reactionMs;
    if (config.mode === "still") return images.front;
    if (config.mode === "swap") {
      if ((step === "turn_left" || step === "turn_right") && reacted) swapped = true;
      return swapped ? images.turned : images.front;
    }
    // The student: turn as asked once the prompt has been read, at a person's speed.
    if (reacted) {
      if (step === "turn_left") target = config.amplitude;
      else if (step === "turn_right") target = -config.amplitude;
      else if (step === "look") target = 0;
    }
    return images[String(Math.round(yaw / 2) * 2)];
  }
  let last = performance.now();
  function draw() {
    const now = performance.now();
    const dt = Math.min(0.1, (now - last) / 1000);
    last = now;
    const move = config.speed * dt;
    yaw += Math.max(-move, Math.min(move, target - yaw));
    const image = picture(now);
    if (!image || !image.complete) return;
    context.fillStyle = "rgb(118,122,128)";
    context.fillRect(0, 0, 640, 480);
    context.drawImage(image, Math.random() * 2 - 1, Math.random() * 2 - 1, 640, 480);
    const colour = config.reflects ? pageColour() : null;
    if (colour) {  // the screen's light on a face or on paper
      context.globalCompositeOperation = "multiply";
      context.globalAlpha = config.reflection;
      context.fillStyle = `rgb(${colour.join(",")})`;
      context.fillRect(0, 0, 640, 480);
      context.globalAlpha = 1;
      context.globalCompositeOperation = "source-over";
    }
  }
  setInterval(draw, 30);
  const stream = canvas.captureStream(30);
  navigator.mediaDevices.getUserMedia = async () => stream;
})();
"""


def page_camera(mode: str, *, frames: dict | None = None, recording: list | None = None, reaction_ms: int = 450,
                speed: float = 60.0, amplitude: float = 24.0, reflection: float = 0.18) -> str:
    """The init script for ``page.add_init_script``."""
    config = {
        "mode": mode,
        "frames": {str(k): v for k, v in (frames or {}).items()},
        "recording": recording or [],
        "reactionMs": reaction_ms,
        "speed": speed,
        "amplitude": amplitude,
        "reflects": mode in ("student", "still"),  # a face and paper reflect the screen; tablets and phones glow
        "reflection": reflection,
    }
    return SCRIPT.replace("__CONFIG__", json.dumps(config))
