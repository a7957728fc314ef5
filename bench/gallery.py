"""Large-gallery benchmark: training, identifying and enrolling one more student as the gallery grows.

    python -m bench.gallery --students 1000 --students 10000 --students 30000

Synthetic unit-norm 512-d embeddings, 5 per student: each student has a random direction, and the
photos scatter around it (cosine to their centre about 0.8, strangers near 0), which is the shape of
real FaceNet galleries without needing 150,000 faces. Per size it measures, with the decision code the
login uses (``decide.train_model`` with the default nearest-centroid classifier and calibration):

* ``train_s``: a full retrain (classifier + calibration, no held-out split), what a retrain task costs;
* ``identify_ms``: one probe through ``TrainedModel.vote`` (search + gate), median of 200 probes
  near enrolled photos (genuine); ``identify_cpu_ms`` the same in this thread's CPU time, which a
  busy machine (other processes on the 2 cores) inflates much less than wall-clock time;
* ``stranger_ms``: the same for 200 random directions (nobody enrolled): the search can prune
  almost nothing for them, and ``stranger_floor_ms`` is ``Gallery.search`` for them with the
  decision threshold as its floor (what the vote costs when it passes one);
* ``identify_in_batches_of_8_ms`` / ``stranger_in_batches_of_8_ms``: the same probes voted eight at a
  time (``decide.vote_frames``, one search for the batch), per probe: daphne's batcher votes the frames
  waiting together this way, off the event loop;
* ``top1_agrees``: the fraction of those 400 probes whose top student from ``Gallery.search``
  equals the exact answer (every row scored); must be 1.0;
* ``add_student_s``: enrolling one more student without a retrain (``TrainedModel.add_student``) plus
  the threshold for the new gallery size (``Calibration.threshold_for``), what keeps enrolment quick;
* ``model_mb``: the serialised model, and ``rss_mb``: this process's peak memory so far;
* ``ceiling_ms``: the bare matrix product of one probe against every stored embedding, in the same
  run, so the figures read as ratios of the machine's own speed.

Prints a table and writes JSON (default ``bench/results/gallery.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facelogin.pipeline.decide import train_model, vote_frames

PER_STUDENT = 5
DIM = 512


def synthetic_gallery(students: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    centres = rng.standard_normal((students, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.standard_normal((students, PER_STUDENT, DIM)).astype(np.float32) * 0.033
    X = (centres[:, None, :] + noise).reshape(-1, DIM)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = [str(i) for i in range(students) for _ in range(PER_STUDENT)]
    return X, labels


def measure(students: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    X, labels = synthetic_gallery(students, rng)

    started = time.perf_counter()
    model = train_model(X, labels, holdout=0.0, seed=seed)
    train_s = time.perf_counter() - started

    probes = X[rng.integers(0, len(X), 200)] + rng.standard_normal((200, DIM)).astype(np.float32) * 0.02
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    times, cpu, correct = [], [], 0
    for probe in probes:
        t0, c0 = time.perf_counter(), time.thread_time()
        vote = model.vote(probe)
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
        correct += vote.label is not None
    stranger_probes = rng.standard_normal((200, DIM)).astype(np.float32)
    stranger_probes /= np.linalg.norm(stranger_probes, axis=1, keepdims=True)
    stranger_times, stranger_cpu, strangers_accepted = [], [], 0
    for probe in stranger_probes:
        t0, c0 = time.perf_counter(), time.thread_time()
        vote = model.vote(probe)
        stranger_times.append((time.perf_counter() - t0) * 1000)
        stranger_cpu.append((time.thread_time() - c0) * 1000)
        strangers_accepted += vote.label is not None
    floor = float(model.threshold) - model.config.margin
    floor_times = []
    for probe in stranger_probes:
        t0 = time.perf_counter()
        model.gallery.search(probe[None, :], k=2, floor=floor)
        floor_times.append((time.perf_counter() - t0) * 1000)
    both = np.vstack([probes, stranger_probes])
    found, _ = model.gallery.search(both, k=1)
    exact = [model.gallery.labels[j] for j in np.argmax(model.gallery.similarities(both), axis=1)]
    agree = sum(f[0] == e for f, e in zip(found, exact)) / len(both)
    ceiling = []
    for probe in probes[:50]:
        t0 = time.perf_counter()
        _ = X @ probe
        ceiling.append((time.perf_counter() - t0) * 1000)

    def per_frame_in_batches(rows: np.ndarray, size: int = 8) -> float:
        # daphne votes a batch of frames at once (decide.recognise_batch): one search for all of them
        times = []
        for i in range(0, len(rows) - size + 1, size):
            t0 = time.perf_counter()
            vote_frames(model, rows[i : i + size])
            times.append((time.perf_counter() - t0) * 1000 / size)
        return round(statistics.median(times), 3)

    identify_batched_ms, stranger_batched_ms = per_frame_in_batches(probes), per_frame_in_batches(stranger_probes)

    newcomer, _ = synthetic_gallery(1, rng)
    started = time.perf_counter()
    model.add_student(f"new-{students}", newcomer)
    threshold = model.calibration.threshold_for(gallery_size=students + 1)
    add_s = time.perf_counter() - started

    blob = model.to_bytes()
    return {
        "students": students,
        "embeddings": len(X),
        "train_s": round(train_s, 2),
        "identify_ms": round(statistics.median(times), 3),
        "identify_p95_ms": round(sorted(times)[int(0.95 * len(times))], 3),
        "identify_cpu_ms": round(statistics.median(cpu), 3),
        "stranger_ms": round(statistics.median(stranger_times), 3),
        "stranger_p95_ms": round(sorted(stranger_times)[int(0.95 * len(stranger_times))], 3),
        "stranger_cpu_ms": round(statistics.median(stranger_cpu), 3),
        "stranger_floor_ms": round(statistics.median(floor_times), 3),
        "identify_in_batches_of_8_ms": identify_batched_ms,
        "stranger_in_batches_of_8_ms": stranger_batched_ms,
        "strangers_accepted": strangers_accepted,
        "top1_agrees": round(agree, 4),
        "ceiling_ms": round(statistics.median(ceiling), 3),
        "add_student_s": round(add_s, 4),
        "threshold": round(float(model.threshold), 4),
        "threshold_after_add": round(float(threshold), 4),
        "genuine_frame_accept": round(correct / len(probes), 3),
        "model_mb": round(len(blob) / 1e6, 1),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, action="append", help="gallery sizes (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("bench/results/gallery.json"))
    args = parser.parse_args(argv)
    sizes = args.students or [1000, 10000, 30000]

    try:  # scikit-learn and numpy threads oversubscribe 2 cores (measured: 4-10x slower fits)
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass

    rows = [measure(n, args.seed) for n in tqdm(sizes, desc="gallery sizes", file=sys.stderr)]
    header = (
        f"{'students':>9} {'train s':>8} {'identify ms':>12} {'p95 ms':>8} {'CPU ms':>7} {'stranger ms':>12} {'p95 ms':>8} {'CPU ms':>7} "
        f"{'w/ floor':>9} {'id/8 ms':>8} {'str/8 ms':>9} {'top-1 ok':>9} {'ceiling ms':>11} {'add one s':>10} {'threshold':>10} {'model MB':>9} {'RSS MB':>7}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['students']:>9} {r['train_s']:>8} {r['identify_ms']:>12} {r['identify_p95_ms']:>8} {r['identify_cpu_ms']:>7} "
            f"{r['stranger_ms']:>12} {r['stranger_p95_ms']:>8} {r['stranger_cpu_ms']:>7} {r['stranger_floor_ms']:>9} "
            f"{r['identify_in_batches_of_8_ms']:>8} {r['stranger_in_batches_of_8_ms']:>9} {r['top1_agrees']:>9} "
            f"{r['ceiling_ms']:>11} {r['add_student_s']:>10} {r['threshold']:>10} {r['model_mb']:>9} {r['rss_mb']:>7}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"machine load average at the end: {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}")
    args.json.write_text(
        json.dumps({"command": "python -m bench.gallery " + " ".join(sys.argv[1:]), "load_average": load, "rows": rows}, indent=2)
    )
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
