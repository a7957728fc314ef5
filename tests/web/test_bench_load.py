"""bench.load sets each daphne's /metrics/ beside its own counts: the change between two scrapes."""

from __future__ import annotations

from bench.load import monitoring_seen

FRAMES = ("facelogin_frames_analysed_total", ())
BUSY = ("facelogin_analyser_busy_seconds_total", ())


def attempts(result: str) -> tuple:
    return ("facelogin_face_attempts_total", (("result", result),))


def test_the_monitoring_figures_are_what_changed_between_the_scrapes_per_server_and_together() -> None:
    before = [
        {FRAMES: 10.0, BUSY: 1.0, attempts("recognised"): 2.0, attempts("busy"): 0.0},
        {FRAMES: 0.0, BUSY: 0.0, attempts("recognised"): 0.0, attempts("busy"): 1.0},
    ]
    after = [
        {FRAMES: 40.0, BUSY: 4.0, attempts("recognised"): 12.0, attempts("busy"): 0.0, ("facelogin_face_sign_in_seconds_count", ()): 10.0},
        {FRAMES: 27.0, BUSY: 2.5, attempts("recognised"): 9.0, attempts("busy"): 2.0, ("facelogin_frames_refused_total", ()): 3.0},
    ]
    seen = monitoring_seen(["http://a", "http://b"], before, after, window_s=5.0)
    assert (seen["frames_analysed"], seen["frames_refused"]) == (57, 3)
    assert seen["attempts"] == {"recognised": 19, "busy": 1}
    first, second = seen["per_server"]
    assert (first["url"], first["frames_analysed"], first["attempts"], first["recognised_timed"]) == ("http://a", 30, {"recognised": 10}, 10)
    assert (first["analyser_busy_share"], second["analyser_busy_share"]) == (0.6, 0.5)
    assert second["attempts"] == {"recognised": 9, "busy": 1}
