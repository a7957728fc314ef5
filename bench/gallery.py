"""Large-gallery benchmark: training, identifying and enrolling one more student as the gallery grows.

    python -m bench.gallery --students 1000 --students 10000 --students 30000

Synthetic unit-norm 512-d embeddings, 5 per student: each student has a random direction, and the
photos scatter around it (cosine to their centre about 0.8, strangers near 0), which is the shape of
real FaceNet galleries without needing 150,000 faces; ``--dims 128`` draws 128 numbers and spreads
them over the 512 columns, as SFace's vectors are stored (``embed.spread``). Per size it measures, with the decision code the
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
  equals the exact answer (every row scored); must be 1.0; ``decisions_agree``: the fraction whose
  vote (the student voted for, or none, and the reason) equals the vote of the same model with an
  exact full pass for every probe; must be 1.0 too; ``strangers_accepted``: strangers voted for
  anyone; must be 0;
* ``add_student_s``: enrolling one more student without a retrain (``TrainedModel.add_student``) plus
  the threshold for the new gallery size (``Calibration.threshold_for``), what keeps enrolment quick;
* ``model_mb``: the stored model (its sealed head and parts, as ``classifier_store`` stores a
  version, with the default ``FACELOGIN_CLASSIFIER_PART_MB``), and ``rss_mb``: this process's peak
  memory so far (it made the synthetic gallery and trained on it); ``serving_rss_mb``: a fresh
  process that only loads the model from those sealed parts (files here, database rows in the app:
  unsealed one at a time into the model's arrays, ``TrainedModel.from_parts``) and votes, as daphne
  does: its peak, and ``serving_steady_rss_mb`` after the load;
* ``centroid_pass_ms``: the bare product of one probe with every student's centroid, which the
  nearest-centroid classifier computed for every probe (its softmax needs every score), and
  ``int8_centroid_pass_ms`` the same from the int8 centroids that replace it above
  ``Gallery.coarse_students``; ``row_scan_ms``: the rows' bounds checked for one stranger
  (``rowbound.candidate_rows`` from sign codes; for 128-number rows ``int4_candidate_rows`` from
  their int4 copies), the search's cost of ruling a stranger out;
* ``ceiling_ms``: the bare matrix product of one probe against every stored embedding, in the same
  run, so the figures read as ratios of the machine's own speed.

With ``--runs N`` every size is measured N times on N galleries (seeds ``--seed`` .. + N - 1); the
table then shows each run and, per size, the median of the runs and the worst run.

Prints a table and writes JSON (default ``bench/results/gallery.json``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from facelogin.pipeline import rowbound
from facelogin.pipeline.classify import Gallery
from facelogin.pipeline.decide import TrainedModel, train_model, vote_frames
from facelogin.pipeline.embed import spread

PER_STUDENT = 5
DIM = 512


def gaussian(rng: np.random.Generator, shape: tuple[int, ...], dims: int) -> np.ndarray:
    """Standard normal numbers, ``dims`` of them per vector laid over DIM columns as the face model
    stores them (``embed.spread``: SFace's 128 numbers as four copies), at the length of DIM independent
    columns (spread's copies keep unit length; times sqrt(copies) undoes that). ``dims=DIM`` draws
    exactly what this benchmark always drew."""
    short = rng.standard_normal((*shape[:-1], dims)).astype(np.float32)
    if dims == DIM:
        return short
    return spread(short, DIM) * np.float32(np.sqrt(DIM // dims))


def synthetic_gallery(students: int, rng: np.random.Generator, dims: int = DIM) -> tuple[np.ndarray, list[str]]:
    centres = gaussian(rng, (students, DIM), dims)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = gaussian(rng, (students, PER_STUDENT, DIM), dims) * 0.033
    X = (centres[:, None, :] + noise).reshape(-1, DIM)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = [str(i) for i in range(students) for _ in range(PER_STUDENT)]
    return X, labels


def measure(students: int, seed: int, *, levers: dict | None = None, faiss_levers: bool = False, dims: int = DIM) -> dict:
    """One gallery of ``students``; ``levers`` sets Gallery attributes after training (e.g.
    ``row_bound_students=10**12`` turns the rows' bounds off, ``coarse_students=10**12`` the int8
    centroids) to measure each lever on its own."""
    rng = np.random.default_rng(seed)
    X, labels = synthetic_gallery(students, rng, dims)

    started = time.perf_counter()
    model = train_model(X, labels, holdout=0.0, seed=seed)
    train_s = time.perf_counter() - started
    for name, value in (levers or {}).items():
        setattr(model.gallery, name, value)

    probes = X[rng.integers(0, len(X), 200)] + gaussian(rng, (200, DIM), dims) * 0.02
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    times, cpu, correct = [], [], 0
    for probe in probes:
        t0, c0 = time.perf_counter(), time.thread_time()
        vote = model.vote(probe)
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
        correct += vote.label is not None
    stranger_probes = gaussian(rng, (200, DIM), dims)
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
    faiss_ms = faiss_search_ms(X, both[::8]) if faiss_levers else {}
    agree, decisions = exact_agreement(model, both)
    ceiling, centroid_pass, int8_pass, row_scan = [], [], [], []
    gallery = model.gallery
    # the passes over what the gallery stores (SFace-shaped rows: their 128 numbers, see Gallery)
    L = gallery.n_labels
    rows, centroids = gallery._X[: gallery._n], gallery._centroids[:L]
    stored, stored_strangers = gallery.stored(probes[:50]), gallery.stored(stranger_probes[:50])
    for probe, stranger, full_stranger in zip(stored, stored_strangers, stranger_probes[:50], strict=True):
        t0 = time.perf_counter()
        _ = rows @ probe
        ceiling.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        cs = centroids @ probe
        centroid_pass.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        rowbound.int8_centroid_scores(gallery._c8[:L], gallery._c8_scale[:L], gallery._c8_err[:L], probe[None, :])
        int8_pass.append((time.perf_counter() - t0) * 1000)
        cs = centroids @ stranger
        t0 = time.perf_counter()
        gallery.row_candidates(full_stranger, stranger, cs, float(model.threshold))  # the search's own choice of bounds
        row_scan.append((time.perf_counter() - t0) * 1000)

    def per_frame_in_batches(rows: np.ndarray, size: int = 8) -> float:
        # daphne votes a batch of frames at once (decide.recognise_batch): one search for all of them
        times = []
        for i in range(0, len(rows) - size + 1, size):
            t0 = time.perf_counter()
            vote_frames(model, rows[i : i + size])
            times.append((time.perf_counter() - t0) * 1000 / size)
        return round(statistics.median(times), 3)

    identify_batched_ms, stranger_batched_ms = per_frame_in_batches(probes), per_frame_in_batches(stranger_probes)

    newcomer, _ = synthetic_gallery(1, rng, dims)
    started = time.perf_counter()
    model.add_student(f"new-{students}", newcomer)
    threshold = model.calibration.threshold_for(gallery_size=students + 1)
    add_s = time.perf_counter() - started

    embeddings, model_threshold = len(X), float(model.threshold)
    with tempfile.TemporaryDirectory() as stored:
        model_bytes = store_sealed(model, Path(stored))
        del model, X  # the serving process's figure is measured beside this one, not on top of it
        serving = serving_rss(Path(stored), both[:50])
    return {
        "students": students,
        "embeddings": embeddings,
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
        "decisions_agree": round(decisions, 4),
        "ceiling_ms": round(statistics.median(ceiling), 3),
        "centroid_pass_ms": round(statistics.median(centroid_pass), 3),
        "int8_centroid_pass_ms": round(statistics.median(int8_pass), 3),
        "row_scan_ms": round(statistics.median(row_scan), 3),
        "add_student_s": round(add_s, 4),
        "threshold": round(model_threshold, 4),
        "threshold_after_add": round(float(threshold), 4),
        "genuine_frame_accept": round(correct / len(probes), 3),
        "model_mb": round(model_bytes / 1e6, 1),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
        "serving_rss_mb": serving["peak_mb"],
        "serving_steady_rss_mb": serving["steady_mb"],
        **faiss_ms,
    }


def faiss_search_ms(X: np.ndarray, probes: np.ndarray) -> dict[str, float]:
    """The levers not taken, measured: faiss's exact and scalar-quantised flat indexes searching
    every row for one probe at a time (median ms; one thread, as daphne's analyser)."""
    import faiss  # only with --faiss: not a dependency of the portal

    faiss.omp_set_num_threads(1)
    out = {}
    for name, index in (
        ("faiss_flat_ms", faiss.IndexFlatIP(X.shape[1])),
        ("faiss_sq8_ms", faiss.IndexScalarQuantizer(X.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)),
        ("faiss_fp16_ms", faiss.IndexScalarQuantizer(X.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)),
    ):
        index.train(X[:100_000])
        index.add(X)
        times = []
        for probe in probes:
            t0 = time.perf_counter()
            index.search(probe[None, :], 2)
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = round(statistics.median(times), 3)
        del index
    return out


def exact_agreement(model: TrainedModel, probes: np.ndarray, chunk: int = 16) -> tuple[float, float]:
    """(top-1 agreement of ``Gallery.search`` with every row scored, vote agreement with a model whose
    gallery scores every row for every probe): the search's shortcuts must change no decision. A gallery
    that stores SFace-shaped rows folded (their 128 numbers) is checked against one that stores all 512
    columns, so the folding is proven too."""
    if model.gallery._fold > 1:
        g = model.gallery
        exact_gallery = Gallery.from_arrays(g.embeddings, g.row_labels, top_k=g.top_k, fold=False)
    else:
        exact_gallery = copy.copy(model.gallery)
    exact_gallery.exact_rows = 10**12  # the dense path: one exact pass over every row
    exact_gallery.coarse_students = 10**12  # and float32 centroids for the classifier
    exact_gallery._memo = exact_gallery._coarse_memo = None
    exact_classifier = copy.copy(model.classifier)
    if getattr(exact_classifier, "gallery", None) is model.gallery:
        exact_classifier.gallery = exact_gallery  # type: ignore[attr-defined]
    exact_model = dataclasses.replace(model, classifier=exact_classifier, gallery=exact_gallery)
    top1 = votes = 0
    for start in range(0, len(probes), chunk):  # small blocks: a 500,000-row pass makes big temporaries
        block = probes[start : start + chunk]
        found, _ = model.gallery.search(block, k=1)
        exact = np.argmax(exact_gallery.similarities(block), axis=1)
        top1 += sum(f[0] == exact_gallery.labels[e] for f, e in zip(found, exact))
        fast, slow = vote_frames(model, block), vote_frames(exact_model, block)
        votes += sum((a.label, a.reason) == (b.label, b.reason) for a, b in zip(fast, slow))
    return top1 / len(probes), votes / len(probes)


# A throw-away key: the parts are sealed (AES-256-GCM) as the app seals them, so unsealing is measured.
BENCH_KEY = bytes(range(32))
PART_BYTES = 32 * 1024 * 1024  # FACELOGIN_CLASSIFIER_PART_MB's default


def store_sealed(model: TrainedModel, folder: Path) -> int:
    """The model as ``classifier_store`` stores a version (a sealed head, sealed parts), in files;
    returns the bytes stored."""
    from facelogin.services import biometrics

    head, parts = model.to_parts(part_bytes=PART_BYTES)
    total = (folder / "head").write_bytes(biometrics.seal(head, context=b"classifier", keys=(BENCH_KEY,)))
    for index, data in enumerate(parts):
        total += (folder / f"part-{index}").write_bytes(biometrics.seal(data, context=b"part:%d" % index, keys=(BENCH_KEY,)))
    return total


_SERVE = """
import sys
from pathlib import Path
import numpy as np
from threadpoolctl import threadpool_limits
from facelogin.pipeline.decide import TrainedModel
from facelogin.services import biometrics
threadpool_limits(1)
folder, keys = Path(sys.argv[1]), (bytes.fromhex(sys.argv[3]),)

def part(index):
    return biometrics.unseal((folder / f"part-{index}").read_bytes(), context=b"part:%d" % index, keys=keys)

head = biometrics.unseal((folder / "head").read_bytes(), context=b"classifier", keys=keys)
model = TrainedModel.from_parts(head, part)
del head
for probe in np.load(sys.argv[2]):
    model.vote(probe)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through exec
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(status["VmHWM"].split()[0]) // 1024, int(status["VmRSS"].split()[0]) // 1024)
"""


def serving_rss(stored: Path, probes: np.ndarray) -> dict[str, float]:
    """Peak and steady RSS (MB) of a process that loads the model from its sealed parts and votes."""
    with tempfile.TemporaryDirectory() as tmp:
        probes_path = Path(tmp) / "probes.npy"
        np.save(probes_path, probes)
        out = subprocess.run(
            [sys.executable, "-c", _SERVE, str(stored), str(probes_path), BENCH_KEY.hex()],
            check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
        ).stdout.split()
    return {"peak_mb": float(out[0]), "steady_mb": float(out[1])}


# (key, header, worst is the largest) for the table and the per-size summary
COLUMNS = [
    ("train_s", "train s", True),
    ("identify_ms", "identify ms", True),
    ("identify_p95_ms", "p95", True),
    ("identify_cpu_ms", "CPU", True),
    ("stranger_ms", "stranger ms", True),
    ("stranger_p95_ms", "p95", True),
    ("stranger_cpu_ms", "CPU", True),
    ("identify_in_batches_of_8_ms", "id/8", True),
    ("stranger_in_batches_of_8_ms", "str/8", True),
    ("strangers_accepted", "str in", True),
    ("top1_agrees", "top-1 ok", False),
    ("decisions_agree", "votes ok", False),
    ("centroid_pass_ms", "centroids ms", True),
    ("int8_centroid_pass_ms", "int8", True),
    ("row_scan_ms", "row scan", True),
    ("ceiling_ms", "rows ms", True),
    ("add_student_s", "add one s", True),
    ("threshold", "threshold", True),
    ("model_mb", "model MB", True),
    ("rss_mb", "RSS MB", True),
    ("serving_rss_mb", "serve MB", True),
    ("serving_steady_rss_mb", "steady", True),
]


def summarise(rows: list[dict]) -> list[dict]:
    """Per size: the median of the runs and the worst run, column by column."""
    out = []
    for students in dict.fromkeys(r["students"] for r in rows):
        mine = [r for r in rows if r["students"] == students]
        for kind in ("median", "worst"):
            row: dict = {"students": students, "of": kind, "runs": len(mine)}
            for key, _, larger_is_worse in COLUMNS:
                values = [r[key] for r in mine]
                if kind == "median":
                    row[key] = round(statistics.median(values), 4)
                else:
                    row[key] = max(values) if larger_is_worse else min(values)
            out.append(row)
    return out


def print_table(rows: list[dict], summary: list[dict]) -> None:
    widths = [max(len(header), 7) for _, header, _ in COLUMNS]
    print(f"{'students':>9} {'run':>6} " + " ".join(f"{h:>{w}}" for (_, h, _), w in zip(COLUMNS, widths)))
    for r in rows + summary:
        run = r.get("of", r.get("run"))
        print(f"{r['students']:>9} {run!s:>6} " + " ".join(f"{r[k]!s:>{w}}" for (k, _, _), w in zip(COLUMNS, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, action="append", help="gallery sizes (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=1, help="galleries per size (seeds seed, seed+1, ...)")
    parser.add_argument("--no-row-bounds", action="store_true", help="lever off: no rows' bounds (an exact pass instead)")
    parser.add_argument("--no-int8", action="store_true", help="lever off: float32 centroid scores for every probe")
    parser.add_argument("--faiss", action="store_true", help="also time faiss flat/SQ8/fp16 indexes (pip install faiss-cpu)")
    parser.add_argument(
        "--dims", type=int, default=DIM, help=f"numbers per embedding (default {DIM}, FaceNet; 128: SFace, spread over {DIM} as embed.spread does)"
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/gallery.json"))
    args = parser.parse_args(argv)
    sizes = args.students or [1000, 10000, 30000]

    try:  # scikit-learn and numpy threads oversubscribe 2 cores (measured: 4-10x slower fits)
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass

    runs = [(n, args.seed + r) for n in sizes for r in range(args.runs)]
    rows = []
    for n, seed in tqdm(runs, desc="galleries", file=sys.stderr):
        levers = {}
        if args.no_row_bounds:
            levers["row_bound_students"] = 10**12
        if args.no_int8:
            levers["coarse_students"] = 10**12
        rows.append({"run": seed - args.seed, "seed": seed, **measure(n, seed, levers=levers, faiss_levers=args.faiss, dims=args.dims)})
    summary = summarise(rows)
    print_table(rows, summary)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"machine load average at the end: {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}")
    args.json.write_text(
        json.dumps(
            {
                "command": "python -m bench.gallery " + " ".join(sys.argv[1:]),
                "load_average": load,
                "rows": rows,
                "summary": summary,
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
