"""Screenshots for the docs, taken from a live portal in headless Chromium with a fake camera.

    .venv/bin/python -m bench.screenshots [--out docs]

Starts a throw-away portal exactly as the browser tests do (tests/e2e/conftest.py: temp SQLite,
three enrolled students, daphne with liveness off) and writes:

* ``screenshot-login.png``        the password sign-in page
* ``screenshot-face-login.png``   the face sign-in page, with the face box over the live preview
* ``screenshot-face-login-ko.png`` the same in Korean (skipped while there is no Korean catalogue)
* ``screenshot-dashboard.png``    the admin's face sign-in dashboard, after bench/dashboard_seed.py has
                                  written 30 days of made-up activity and 240 made-up students
* ``screenshot-classifier-version.png`` the charts on the active classifier version's admin page

The camera shows a person who is *not* enrolled, so the page stays on the preview (a recognised
face would sign in within a second). Real photos come from the shared faces folder; only the
screenshots are written into the repository.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from tests.conftest import FACES
from tests.e2e.conftest import start_live_portal
from tests.e2e.fakecam import chromium_launch_kwargs, face_on_background, webcam_frames, write_y4m
from tests.live import REPO, manage

VIEWPORT = {"width": 960, "height": 760}
ADMIN_VIEWPORT = {"width": 1280, "height": 1500}
ADMIN_USER, ADMIN_PASSWORD = "screenshots", "screenshots-only-2026"
SEED = (
    "from bench.dashboard_seed import seed\n"
    "from django.contrib.auth import get_user_model\n"
    f"get_user_model().objects.create_superuser({ADMIN_USER!r}, 'screenshots@example.org', {ADMIN_PASSWORD!r})\n"
    "print(seed())\n"
)
CHARTS_LOADED = "() => [...document.querySelectorAll('.figure-chart img')].every(i => i.complete && i.naturalWidth > 0)"
CAMERA_PERSON = "John_Simm"  # not enrolled by start_live_portal
MAX_PNG_BYTES = 150_000  # larger screenshots are re-encoded with a 256-colour palette (median cut)

# The overlay canvas has drawn something (the server's first "frame" answer had a face box).
BOX_DRAWN = """() => {
  const canvas = document.getElementById("face-overlay");
  if (!canvas || !canvas.width || !canvas.height) return false;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) return true;
  return false;
}"""


def save_png(png: bytes, path: Path) -> int:
    """Write a screenshot, re-encoded smaller (optimised, then a 256-colour palette if still big)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    if buffer.tell() > MAX_PNG_BYTES:
        buffer = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(buffer, "PNG", optimize=True)
    path.write_bytes(buffer.getvalue())
    return len(buffer.getvalue())


def korean_available() -> bool:
    return any((REPO / "locale").glob("ko/LC_MESSAGES/*.po"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="folder for the PNGs (default docs/)")
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright

    photos = sorted((FACES / "johns" / CAMERA_PERSON).glob("*.jpg"))
    if not photos:
        print(f"no photos in {FACES / 'johns' / CAMERA_PERSON}", file=sys.stderr)
        return 1
    written: list[str] = []
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        root = Path(tmp)
        # Very little sensor noise: enough for distinct frames, little enough for small PNGs.
        frames = webcam_frames(face_on_background(photos[0], face_height=300), noise=0.5)
        camera = write_y4m(root / "camera.y4m", frames)
        started = time.monotonic()
        # The .po catalogues are compiled (into git-ignored .mo files) before daphne starts, as
        # portal.sh does. Liveness stays at its default (on), so the page looks as students see it.
        portal_gen = start_live_portal(root, compile_translations=korean_available(), FACELOGIN_LIVENESS="1")
        portal = next(portal_gen)
        print(f"portal at {portal.url} ready in {time.monotonic() - started:.1f} s")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(**chromium_launch_kwargs(camera))
                try:
                    # 1. The password sign-in page.
                    page = browser.new_context(viewport=VIEWPORT).new_page()
                    page.goto(f"{portal.url}/login/")
                    page.locator("#id_username").wait_for()
                    size = save_png(page.screenshot(full_page=True), out / "screenshot-login.png")
                    written.append(f"screenshot-login.png ({size // 1024} KB)")

                    # 2. The face page, once the server has answered a frame with a face box.
                    for language, name in (("en", "screenshot-face-login.png"), ("ko", "screenshot-face-login-ko.png")):
                        if language == "ko" and not korean_available():
                            print("no Korean catalogue (locale/ko/LC_MESSAGES/django.po) yet: skipping the Korean screenshot")
                            continue
                        context = browser.new_context(viewport=VIEWPORT, locale=language)
                        context.add_cookies([{"name": "django_language", "value": language, "url": portal.url}])
                        page = context.new_page()
                        page.goto(f"{portal.url}/login/face/")
                        if language == "ko" and page.locator("html").get_attribute("lang") != "ko":
                            print("the page did not switch to Korean: skipping the Korean screenshot")
                            context.close()
                            continue
                        page.wait_for_function(BOX_DRAWN, timeout=30_000)
                        page.wait_for_timeout(300)  # let the status line and progress bar repaint
                        status = page.locator("#face-status").inner_text()
                        size = save_png(page.screenshot(full_page=True), out / name)
                        written.append(f"{name} ({size // 1024} KB; status: {status!r})")
                        context.close()

                    # 3. The admin's dashboard and the active version's charts, on made-up activity.
                    print(manage(portal.env, "shell", "-c", SEED).stdout.strip().splitlines()[-1])
                    context = browser.new_context(viewport=ADMIN_VIEWPORT)
                    page = context.new_page()
                    page.goto(f"{portal.url}/admin/login/?next=/admin/facelogin/signindashboard/")
                    page.fill("#id_username", ADMIN_USER)
                    page.fill("#id_password", ADMIN_PASSWORD)
                    page.click("input[type=submit]")
                    page.wait_for_url("**/admin/facelogin/signindashboard/")
                    page.wait_for_function(CHARTS_LOADED)
                    size = save_png(page.screenshot(), out / "screenshot-dashboard.png")  # the first panels
                    written.append(f"screenshot-dashboard.png ({size // 1024} KB)")
                    version = portal.query("SELECT id FROM facelogin_classifierversion WHERE is_active = 1")[0]["id"]
                    page.goto(f"{portal.url}/admin/facelogin/classifierversion/{version}/change/")
                    page.wait_for_function(CHARTS_LOADED)
                    figures = page.locator("#version-figures")
                    size = save_png(figures.screenshot(), out / "screenshot-classifier-version.png")
                    written.append(f"screenshot-classifier-version.png ({size // 1024} KB)")
                    context.close()
                finally:
                    browser.close()
        finally:
            portal_gen.close()
    for line in written:
        print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}/{line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
