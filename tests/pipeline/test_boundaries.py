"""The pipeline's boundaries: no Django inside it, no model loaded on import, and no stray exception
out of the decoder whatever bytes arrive."""

from __future__ import annotations

import io
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import facelogin.pipeline
from facelogin.pipeline import errors
from facelogin.pipeline.decode import DecodeLimits, decode_image

REPO = Path(__file__).resolve().parents[2]
FACES = Path(os.environ.get("FACELOGIN_SHARED_DIR", REPO.parent / "shared")).resolve() / "faces"

# Discovered, not listed, so a module added later is covered without touching this file.
MODULES = sorted(
    f"facelogin.pipeline.{info.name}" for info in pkgutil.iter_modules(facelogin.pipeline.__path__)
)
# The stages this suite owns must not even pull in torch on import (models load on first use).
LIGHT_MODULES = [f"facelogin.pipeline.{name}" for name in ("decode", "detect", "quality", "align", "analyze")]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_every_module_is_discovered() -> None:
    assert {"facelogin.pipeline.decode", "facelogin.pipeline.analyze", "facelogin.pipeline.types"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_the_module_imports_nothing_from_django(module: str) -> None:
    result = run_python(
        f"import {module}; import sys; "
        "bad = [m for m in sys.modules if m == 'django' or m.startswith('django.')]; "
        "assert not bad, bad"
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_the_stage_loads_no_model_and_no_torch_on_import(module: str) -> None:
    result = run_python(
        f"import {module}; import sys; "
        "heavy = [m for m in ('torch', 'facenet_pytorch', 'torchvision') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    assert result.returncode == 0, result.stderr


# --- the decoder under fuzzing -------------------------------------------------------------------
def _seed_files() -> list[bytes]:
    """Small real images in each live format (fuzzing big files would only be slower)."""
    john = next((FACES / "johns").glob("*/*.jpg"))
    jpeg = john.read_bytes()
    face = Image.open(io.BytesIO(jpeg)).convert("RGB")
    out = [jpeg]
    for fmt, options in (("PNG", {}), ("WEBP", {"quality": 80}), ("JPEG", {"progressive": True, "quality": 70})):
        buf = io.BytesIO()
        face.save(buf, fmt, **options)
        out.append(buf.getvalue())
    grey = FACES / "yale" / "subject01" / "normal.png"
    out.append(grey.read_bytes())
    return out


SEEDS = _seed_files() if FACES.is_dir() else [b""]
# Keep the fuzz cheap: mutated headers may claim big sizes; a 1 MP cap refuses them before decoding.
FUZZ_LIMITS = DecodeLimits(max_bytes=200_000, max_pixels=1_000_000)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete", "header"]))
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[position:]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 64))]
        else:  # headers hold the sizes, chunk lengths and tables that crash decoders
            data[min(position, 64) % max(len(data), 1)] = draw(st.integers(0, 255))
    return bytes(data)


def check_decode(data: bytes) -> None:
    try:
        image = decode_image(data, FUZZ_LIMITS, max_side=draw_side(data))
    except errors.PipelineError:
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] * image.shape[1] <= FUZZ_LIMITS.max_pixels


def draw_side(data: bytes) -> int | None:
    return None if len(data) % 2 else 100  # exercise the draft path on about half the inputs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_real_images_raise_only_pipeline_errors(data: bytes) -> None:
    check_decode(data)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_pipeline_errors(data: bytes) -> None:
    check_decode(data)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBPVP8 "]), st.binary(max_size=512))
def test_a_real_signature_followed_by_garbage_raises_only_pipeline_errors(magic: bytes, tail: bytes) -> None:
    check_decode(magic + tail)
