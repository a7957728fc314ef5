"""bench.latency compares daphne with a bare pipeline built as daphne builds it in each mode."""

from __future__ import annotations

import types

from bench.latency import engine_as_served
from facelogin.pipeline.analyze import FaceAnalyzer


def test_with_liveness_off_the_bare_pipeline_has_no_face_mesh_like_daphne_and_the_engine_keeps_its_own() -> None:
    mesher, pad, embedder = object(), object(), object()
    engine = types.SimpleNamespace(analyzer=FaceAnalyzer(None, embedder, mesher=mesher, pad=pad))
    off = engine_as_served(engine, liveness=False)
    assert off.analyzer.mesher is None
    assert (off.analyzer.embedder, off.analyzer.detector, off.analyzer.pad) == (embedder, engine.analyzer.detector, pad)
    assert engine.analyzer.mesher is mesher  # the liveness-on mode still meshes
    assert engine_as_served(engine, liveness=True) is engine
