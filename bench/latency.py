"""Latency benchmark: what one frame costs per stage, and how long one student waits for a ticket.

    python -m bench.latency            # 60 frames per size, 10 sign-ins with liveness off, 5 with it on
    python -m bench.latency --quick    # a smoke run: 8 frames per size, 2 + 1 sign-ins

Part 1, per stage, in this process: real held-out photos of the enrolled people (../shared/faces)
made into webcam frames (JPEG q80) at 640x480 and at 320x240 go through daphne's own analyser, built
here by ``facelogin.services.recognition.Engine`` from the portal's environment (same embedder
backend, thread settings and detection size as the server; printed with the results), as the batcher
runs it (``analyze_batch`` of one frame: decode → detect → quality → align → embed, then the vote:
``recognition.frame_vote``, classify: search + similarity gate), then the socket's decider (decide), with
the classifier version the portal serves, loaded from its database. Median and p95 over the frames;
then the same frames in batches of 8 through daphne's batch step (``Engine.recognise_batch``, as
``bench.load``'s ceiling runs it), as CPU per frame: what a frame costs when sockets wait together.

Part 2, end to end, against a real daphne (tests/live.py) on a throw-away portal seeded with
``manage.py import_faces`` (5 johns and 12 ORL people, their first photos; throttles lifted, see
``bench.portal.BENCH_SETTINGS``): one client at a time signs in like the browser page (GET
/login/face/, websocket with the session cookie and Origin, frames with backpressure, ticket posted to
/login/face/complete/) with held-out photos of John Schneider. Reported per sign-in: time from the
first frame sent to the ``success`` message, frames needed, round trip per frame, and the daphne
process's CPU time (``/proc/<pid>/stat``) against the bare pipeline's CPU for the same frames in this
process (analyse + vote + decide; measured right after each sign-in, while daphne idles), as a ratio,
and how long daphne's threads were runnable but waiting for a CPU (``/proc/<pid>/task/*/schedstat``:
the machine is shared). Two rows: liveness off (``FACELOGIN_LIVENESS=0``: recognition only) and on
(the default: ``bench.portal.ChallengeSource``, a
real frontal photo lifted to a 3-D head that looks at the camera, turns when each prompt is revealed and
reflects the page's colours). The first sign-in after daphne starts is run and reported apart (first-use costs), not in
the medians. ``--server-env NAME=VALUE`` tries an environment-only change on daphne (mirrored in this
process), e.g. ``OMP_NUM_THREADS=1``.

Prints tables and writes JSON (default ``bench/results/latency.json``, git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

from tqdm import tqdm

from bench.load import MAX_BATCH, ceiling
from bench.portal import (
    add_portal_options,
    LIVENESS_FRONTAL,
    RESULTS,
    ChallengeSource,
    FrameSource,
    Person,
    SignIn,
    cpu_seconds,
    engine_line,
    find_people,
    fmt,
    frame,
    liveness_person,
    machine_load,
    parse_env,
    percentile,
    print_settings,
    seed_portal,
    serve,
    server_engine,
    settings_shown,
    sign_in,
    write_json,
)

STAGES = ("decode", "detect", "quality", "align", "embed", "classify", "decide")
SIZES = {"640x480": (640, 480), "320x240": (320, 240)}


# --- part 1: stages in this process ---------------------------------------------------------------


def analyse(engine, model, data: bytes, decider) -> tuple[dict[str, float], object]:
    """One frame as the server handles it (the batcher's analyze_batch and vote, then the socket's
    decider); per-stage milliseconds, ``total`` wall and ``cpu`` (this process's CPU for the frame)."""
    from facelogin.services.recognition import frame_vote

    c0, t0 = time.process_time(), time.perf_counter()
    analysis = engine.analyzer.analyze_batch([data], purpose="login")[0]
    t1 = time.perf_counter()
    vote = frame_vote(model, analysis)
    t2 = time.perf_counter()
    decider.observe(vote)
    t3 = time.perf_counter()
    timings = dict(analysis.timings_ms)
    timings["detect"] = timings.get("detect", 0.0) + timings.pop("brighten", 0.0)  # a dark frame's retry
    timings.update(classify=(t2 - t1) * 1000, decide=(t3 - t2) * 1000, total=(t3 - t0) * 1000)
    timings["cpu"] = (time.process_time() - c0) * 1000  # wall above it is time spent waiting for a CPU
    return timings, vote


def stage_times(engine, model, people: list[Person], labels: dict[str, str], count: int, size: tuple[int, int], label: str) -> dict:
    """``labels``: student number → the classifier's label (the student's primary key)."""
    from facelogin.services.recognition import new_decider

    photos = [(p, photo) for p in people for photo in p.held_out]
    frames = [(photos[i % len(photos)], frame(photos[i % len(photos)][1], shift=i // len(photos), size=size)) for i in range(count)]
    per_stage: dict[str, list[float]] = {s: [] for s in (*STAGES, "total", "cpu")}
    faces = accepted = 0
    decider = new_decider(model)
    for (person, _), data in tqdm(frames, desc=f"stages at {label}", unit="frame", file=sys.stderr, disable=None):
        if decider.decision.final:
            decider = new_decider(model)
        timings, vote = analyse(engine, model, data, decider)
        for stage in per_stage:
            per_stage[stage].append(timings.get(stage, 0.0))
        faces += timings.get("align", 0.0) > 0
        accepted += vote.label == labels.get(person.number)
    # The same frames as daphne's batcher takes them when sockets wait together (bench.load's ceiling).
    engine.recognise_batch([data for _, data in frames[:MAX_BATCH]])  # first use of a batch's shapes, untimed
    batched = ceiling(engine, [data for _, data in frames], MAX_BATCH)
    return {
        "size": label,
        "frames": len(frames),
        "frames_with_face": faces,
        "frames_voting_for_their_student": accepted,
        "batched_cpu_ms_per_frame": batched["cpu_ms_per_frame"],
        "jpeg_kb_median": round(statistics.median(len(d) for _, d in frames) / 1024, 1),
        "median_ms": {s: round(statistics.median(v), 2) for s, v in per_stage.items()},
        "p95_ms": {s: round(percentile(v, 95), 2) for s, v in per_stage.items()},
    }


def bare_cpu(engine, model, frames: list[bytes]) -> float:
    """CPU seconds of this process for the pipeline alone on these frames, one at a time (as one client's are)."""
    from facelogin.services.recognition import new_decider

    decider = new_decider(model)
    started = time.process_time()
    for data in frames:
        analyse(engine, model, data, decider)
    return time.process_time() - started


# --- part 2: sign-ins against daphne ---------------------------------------------------------------


async def sign_ins(
    url: str, make_source, count: int, pid: int, timeout: float, desc: str, bare
) -> tuple[SignIn, list[SignIn], list[float]]:
    """The first sign-in, then ``count`` more, each followed at once by ``bare(frames)``: the bare
    pipeline's CPU for the frames it analysed, measured in this process while daphne idles. Measured
    side by side, the two see the same machine (its speed drifted by a fifth between runs minutes apart)."""
    first = await sign_in(url, make_source(), server_pid=pid, timeout=timeout)
    done, bare_cpus = [], []
    for _ in tqdm(range(count), desc=desc, unit="sign-in", file=sys.stderr, disable=None):
        result = await sign_in(url, make_source(), server_pid=pid, timeout=timeout)
        done.append(result)
        bare_cpus.append(bare(result.analysed) if result.ok else 0.0)
        await asyncio.sleep(0.2)  # a quiet gap, so one sign-in's CPU reading does not take the next's
    return first, done, bare_cpus


def measured_pairs(runs: list[SignIn], bare: list[float]) -> list[tuple[SignIn, float]]:
    """(sign-in, bare CPU of its frames) for the sign-ins that succeeded and were measured."""
    return [(r, b) for r, b in zip(runs, bare, strict=True) if r.ok and b > 0]


def websocket_ratio_of_sums(pairs: list[tuple[SignIn, float]]) -> float | None:
    """daphne's CPU up to the websocket's close over the bare pipeline's, summed over the sign-ins (the
    10 ms ticks of daphne's CPU clock blur a single sign-in's ratio)."""
    return sum(r.cpu["websocket"] for r, _ in pairs) / sum(b for _, b in pairs) if pairs else None


def summarise(mode: str, first: SignIn, runs: list[SignIn], bare: list[float]) -> dict:
    ok = [r for r in runs if r.ok]
    pairs = measured_pairs(runs, bare)
    ws_ratio = [r.cpu["websocket"] / b for r, b in pairs]
    total_ratio = [r.cpu["total"] / b for r, b in pairs]
    times = [r.first_frame_to_ticket_s for r in ok]
    trips = [t for r in ok for t in r.round_trips_ms]
    med = lambda v: statistics.median(v) if v else None  # noqa: E731
    return {
        "mode": mode,
        "sign_ins": len(runs),
        "succeeded": len(ok),
        "outcomes": sorted({r.outcome for r in runs}),
        "frames_median": med([r.frames_analysed for r in ok]),
        "first_frame_to_ticket_s": {"median": med(times), "p95": percentile(times, 95), "max": max(times, default=None)},
        "round_trip_ms": {"median": med(trips), "p95": percentile(trips, 95)},
        "page_ms_median": med([r.page_s * 1000 for r in ok]),
        "connect_ms_median": med([r.connect_s * 1000 for r in ok]),
        "redeem_ms_median": med([r.redeem_s * 1000 for r in ok if r.redeem_s is not None]),
        "server_cpu_s": {
            "websocket_median": med([r.cpu["websocket"] for r in ok]),
            "total_median": med([r.cpu["total"] for r in ok]),
            "waiting_for_cpu_median": med([r.cpu["waiting_for_cpu"] for r in ok]),
        },
        "bare_pipeline_cpu_s_median": med([b for _, b in pairs]),
        "cpu_ratio": {
            "websocket_median": med(ws_ratio),
            "total_median": med(total_ratio),
            "websocket_sum": websocket_ratio_of_sums(pairs),
        },
        "first_sign_in_after_start": {
            "outcome": first.outcome,
            "first_frame_to_ticket_s": first.first_frame_to_ticket_s,
            "frames": first.frames_analysed,
            "server_cpu_s": first.cpu.get("total"),
        },
        "per_sign_in": [
            {
                "outcome": r.outcome,
                "frames": r.frames_analysed,
                "first_frame_to_ticket_s": r.first_frame_to_ticket_s,
                "round_trips_ms": [round(t, 1) for t in r.round_trips_ms],
                "frame_errors": r.frame_errors,
                "server_cpu_s": r.cpu,
                "bare_cpu_s": round(b, 4),
            }
            for r, b in zip(runs, bare, strict=True)
        ],
    }


def engine_as_served(engine, liveness: bool):
    """This process's engine as daphne runs it in a mode. It is built with the portal's default,
    liveness on; with liveness off daphne loads no face mesh (``recognition.face_mesher``), so the bare
    pipeline it is compared with must not mesh either (2 ms a frame, before stop 27 it did)."""
    if liveness or engine.analyzer.mesher is None:
        return engine
    analyzer = copy.copy(engine.analyzer)  # the same detector, embedder and PAD, without the mesh
    analyzer.mesher = None
    return types.SimpleNamespace(analyzer=analyzer)


def run_mode(portal, mode: str, liveness: bool, count: int, make_source, engine, model, timeout: float, server_env: dict) -> dict:
    overrides = {**server_env, "FACELOGIN_LIVENESS": "1" if liveness else "0"}
    engine = engine_as_served(engine, liveness)
    with serve(portal, name=f"daphne-{mode.replace(' ', '-')}", **overrides) as daphne:
        pid = daphne.process.pid
        idle0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(2.0)
        idle = (cpu_seconds(pid) - idle0) / (time.monotonic() - t0)
        first, runs, bare = asyncio.run(
            sign_ins(daphne.url, make_source, count, pid, timeout, f"sign-ins, {mode}", lambda frames: bare_cpu(engine, model, frames))
        )
    # The old way as well, for comparison: all the frames again, one sign-in's after another, with
    # nothing between them (the model's weights stay in the CPU's caches; daphne's did not).
    warm = [bare_cpu(engine, model, r.analysed) if r.ok else 0.0 for r in runs]
    row = summarise(mode, first, runs, bare)
    warm_pairs = measured_pairs(runs, warm)
    row["cpu_ratio"]["websocket_sum_bare_back_to_back"] = websocket_ratio_of_sums(warm_pairs)
    row["bare_back_to_back_cpu_s_median"] = statistics.median(b for _, b in warm_pairs) if warm_pairs else None
    row["settings"] = overrides
    row["server_idle_cpu_per_s"] = round(idle, 4)
    return row


# --- output --------------------------------------------------------------------------------------------


def print_stages(rows: list[dict]) -> None:
    print("\nPer stage, one frame, daphne's analyser in this process (ms, wall): median / p95; cpu: this process's CPU time for the frame")
    print(f"{'stage':<10}" + "".join(f"{r['size'] + ' median':>16}{'p95':>8}" for r in rows))
    for stage in (*STAGES, "total", "cpu"):
        print(f"{stage:<10}" + "".join(f"{fmt(r['median_ms'][stage]):>16}{fmt(r['p95_ms'][stage]):>8}" for r in rows))
    for r in rows:
        print(
            f"{r['size']}: {r['frames']} frames (JPEG median {r['jpeg_kb_median']} KB), {r['frames_with_face']} with a face, "
            f"{r['frames_voting_for_their_student']} voting for their own student; in batches of {MAX_BATCH} "
            f"(daphne's batch step, analyse + vote): {r['batched_cpu_ms_per_frame']} ms CPU a frame"
        )


def print_sign_ins(rows: list[dict]) -> None:
    print("\nOne client, real websocket, real daphne (first frame → success message)")
    header = (
        f"{'mode':<13}{'ok':>6}{'frames':>7}{'median s':>9}{'p95 s':>7}{'trip ms':>8}"
        f"{'srv CPU s':>10}{'bare CPU s':>11}{'ratio ws':>9}{'ratio all':>10}{'srv wait s':>11}{'page ms':>8}{'redeem ms':>10}"
    )
    print(header)
    for r in rows:
        t, cpu = r["first_frame_to_ticket_s"], r["server_cpu_s"]
        print(
            f"{r['mode']:<13}{str(r['succeeded']) + '/' + str(r['sign_ins']):>6}{fmt(r['frames_median'], 0):>7}"
            f"{fmt(t['median']):>9}{fmt(t['p95']):>7}{fmt(r['round_trip_ms']['median'], 0):>8}"
            f"{fmt(cpu['websocket_median'], 3):>10}{fmt(r['bare_pipeline_cpu_s_median'], 3):>11}"
            f"{fmt(r['cpu_ratio']['websocket_median']):>9}{fmt(r['cpu_ratio']['total_median']):>10}"
            f"{fmt(cpu['waiting_for_cpu_median']):>11}{fmt(r['page_ms_median'], 0):>8}{fmt(r['redeem_ms_median'], 0):>10}"
        )
    for r in rows:
        f = r["first_sign_in_after_start"]
        print(
            f"{r['mode']}: outcomes {', '.join(r['outcomes'])}; first sign-in after daphne started (not in the medians): "
            f"{f['outcome']}, {fmt(f['first_frame_to_ticket_s'])} s, {f['frames']} frames; server idle CPU {r['server_idle_cpu_per_s']} s/s; "
            f"ratio ws of the sums {fmt(r['cpu_ratio']['websocket_sum'])} (against the bare pipeline run back to back afterwards, "
            f"{fmt(r['bare_back_to_back_cpu_s_median'], 3)} s a sign-in: {fmt(r['cpu_ratio']['websocket_sum_bare_back_to_back'])})"
        )
    print(
        "ratio ws: daphne CPU from page load to websocket close / bare pipeline CPU of the same frames (measured right after "
        "each sign-in); ratio all: including "
        "the ticket redemption; srv wait s: time daphne's threads were runnable but waited for a CPU (other processes)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per size for the per-stage figures (default 60)")
    parser.add_argument("--signins", type=int, default=10, help="sign-ins with liveness off (default 10)")
    parser.add_argument("--liveness-signins", type=int, default=5, help="sign-ins with liveness on, 0 to skip (default 5)")
    parser.add_argument("--orl", type=int, default=12, help="ORL people enrolled beside the 5 johns (default 12)")
    parser.add_argument("--target-fpir", type=float, default=0.001, help="FACELOGIN_TARGET_FPIR for the portal (default: the portal's 0.001)")
    add_portal_options(parser)
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 frames per size, 2 + 1 sign-ins, 10 ORL people")
    parser.add_argument("--json", type=Path, default=RESULTS / "latency.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.signins, args.liveness_signins, args.orl = 8, 2, min(args.liveness_signins, 1), 10

    people = find_people(johns=5, orl=args.orl)
    schneider = liveness_person(people)
    overrides = {} if args.target_fpir == 0.001 else {"FACELOGIN_TARGET_FPIR": str(args.target_fpir)}
    server_env = parse_env(args.server_env)
    load_before = machine_load()
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        root = args.portal_dir or Path(tmp)
        print(f"seeding a portal in {root}: {len(people)} students ({sum(len(p.enrol_photos) for p in people)} photos) ...", file=sys.stderr)
        portal = seed_portal(root, people, **overrides)
        classifier = portal.classifier()
        print(portal.import_summary, file=sys.stderr)
        settings = settings_shown(portal, {**overrides, **server_env})

        engine, engine_info = server_engine(portal, server_env)
        model = engine.current_model()  # the classifier version daphne serves, from the portal's database
        labels = {row["student_number"]: str(row["id"]) for row in portal.query("SELECT id, student_number FROM facelogin_student")}
        stages = [stage_times(engine, model, people, labels, args.frames, size, label) for label, size in SIZES.items()]

        frontal = [schneider.photos[0].parent / name for name in LIVENESS_FRONTAL]
        modes = [
            run_mode(portal, "liveness off", False, args.signins, lambda: FrameSource(frontal), engine, model, args.timeout, server_env)
        ]
        if args.liveness_signins:
            modes.append(
                run_mode(
                    portal, "liveness on", True, args.liveness_signins, lambda: ChallengeSource(frontal), engine, model, args.timeout, server_env
                )
            )

    print_settings(settings)
    print(
        f"gallery: {classifier.get('students')} students, {classifier.get('embeddings')} embeddings, threshold {classifier.get('threshold')}; "
        f"load average before {load_before}, after {machine_load()}"
    )
    print(engine_line(engine_info))
    print_stages(stages)
    print_sign_ins(modes)
    payload = {
        "command": "python -m bench.latency " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": settings,
        "classifier": classifier,
        "engine": engine_info,
        "load_average": {"before": load_before, "after": machine_load()},
        "import_seconds": portal.import_seconds,
        "stages": stages,
        "sign_ins": modes,
    }
    write_json(args.json, payload)
    print(f"wrote {args.json}", file=sys.stderr)
    return 0 if all(m["succeeded"] == m["sign_ins"] for m in modes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
