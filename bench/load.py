"""Load benchmark: many students signing in at once over real websockets, against one real daphne.

    python -m bench.load --clients 32              # 32 clients, 2 sign-ins each
    python -m bench.load --clients 2 --quick       # a smoke run

A throw-away portal is seeded with ``manage.py import_faces`` (5 johns and the 40 ORL people, their
first photos; ``--quick``: 10 ORL people) and served by one daphne process (tests/live.py) with the
embedded defaults, except: throttles lifted (every client is 127.0.0.1; ``bench.portal.BENCH_SETTINGS``)
and liveness off (a still photo cannot turn its head; ``bench.latency`` measures the challenge).

Each client is a distinct enrolled student (beyond 45 clients, a second device of one) showing held-out photos (webcam-like 640x480 JPEG q80, a
pixel apart so no frame repeats) and behaves like ``static/js/face_login.js``: GET /login/face/ for the
session cookie, websocket with that cookie and an Origin naming the host, one frame in flight (the next
when the answer arrives, no sooner than the server's ``frame_interval_ms``, or after 1.5 s without an
answer), the ticket posted to /login/face/complete/. All clients start together and each signs in
``--rounds`` times in a row (no new round after ``--duration`` s).

Reported: p50/p95 time from the first frame to the ``success`` message (and from page load to the
redirect home), frames/s the server analysed (frames sent minus those refused unanalysed: busy,
duplicate) over the window from the first frame to the last answer (and, separately, frames answered
while every client was signing in: from the last client's first frame to the first client's last
answer, without the ramp-up and the drain), the daphne process's CPU (cores
used; the busiest threads' share: the batcher thread should be near 1.0 when clients wait), and every
outcome other than a redeemed ticket as an error. The ceiling, measured in the same run while daphne
idles: daphne's own engine built in this process by ``facelogin.services.recognition.Engine``
from the portal's environment (same embedder, thread settings, detection size and classifier; printed),
running its batch step ``recognise_batch`` (analyse, then vote) in batches of min(clients, 8) on as
many threads as ``FrameBatcher`` has, on the frames the clients send first, before and after the clients (the machine is shared; its load drifts);
served frames/s is reported as a ratio of the mean. Server threads are read from ``/proc/<pid>/task/*/schedstat``: time on
a CPU, time runnable but waiting for one (other processes), and the rest (blocked: nothing to do).
Beside its own counts, the run reads each daphne's ``/metrics/`` before and after the clients and prints
what the operations team's monitoring counted (frames analysed and refused, attempts by result, the
analyser's busy share): the two must agree.

``--servers K`` (default 1) runs the production topology: K daphne processes on the same seeded
portal (same data directory, SQLite database and environment; each on its own port; sign-in needs no
cross-process messages, tickets live in the database), the clients spread round-robin over them like a
proxy (client i keeps server i mod K for all its sign-ins: page, websocket and ticket). Server CPU is
summed over the K processes. The ceiling is then K bare pipelines running at the same time in K
separate processes (``python -m bench.load --ceiling-worker``, each building daphne's engine from the
portal's environment as above), their frames/s summed.

Prints a table and writes JSON (default ``bench/results/load-<clients>.json``, ``load-<clients>-s<K>.json``
for K > 1; git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from bench.portal import (
    add_portal_options,
    RESULTS,
    FrameSource,
    SignIn,
    busiest_threads,
    cpu_seconds,
    engine_line,
    engine_ready,
    find_people,
    fmt,
    machine_load,
    parse_env,
    percentile,
    print_settings,
    seed_portal,
    serve,
    server_engine,
    settings_shown,
    sign_in,
    thread_sched,
    write_json,
)
from tests.live import REPO, DaphneProcess, python_executable, scrape_metrics, wait_until

MAX_BATCH = 8  # facelogin.pipeline.batching.FrameBatcher's default max_batch


def ceiling(engine, frames: list[bytes], batch: int, threads: int = 1) -> dict:
    """Frames/s of the bare batched pipeline on ``frames``: daphne's batch step (``Engine.recognise_batch``:
    analyse, then vote against the served classifier), on ``threads`` threads (as many as daphne's
    FrameBatcher has: FACELOGIN_RECOGNITION_THREADS), each taking the next batch."""
    from concurrent.futures import ThreadPoolExecutor

    work = list(frames)
    chunks = [work[i : i + batch] for i in range(0, len(work), batch)]

    def run(chunk: list[bytes]) -> int:
        return sum(getattr(r, "vote", None) is not None and r.analysis.embedding is not None for r in engine.recognise_batch(chunk))

    cpu0, t0 = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        bar = tqdm(pool.map(run, chunks), total=len(chunks), desc=f"ceiling (batches of {batch})", unit="batch", file=sys.stderr, disable=None)
        faces = sum(bar)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "frames": len(work),
        "batch": batch,
        "threads": threads,
        "frames_embedded": faces,
        "seconds": round(wall, 2),
        "frames_per_s": round(len(work) / wall, 2),
        "cpu_ms_per_frame": round(cpu * 1000 / len(work), 1),
    }


WORKER_TAG = "CEILING-WORKER "  # prefix of the worker's protocol lines on its stdout


def ceiling_worker(spec_path: Path) -> int:
    """``python -m bench.load --ceiling-worker SPEC``: one bare pipeline in its own process, built as the
    in-process ceiling builds it (``server_engine`` from the portal's environment). Prints ``READY
    <engine info>``, then for every ``go`` line on stdin runs ``ceiling`` and prints ``RESULT <json>``."""
    from bench.portal import Portal

    spec = pickle.loads(spec_path.read_bytes())
    portal = Portal(Path(spec["root"]), spec["env"], [])
    engine, info = server_engine(portal, spec["overrides"])
    print(WORKER_TAG + "READY " + json.dumps(info), flush=True)
    for line in sys.stdin:
        if line.strip() != "go":
            break
        result = ceiling(engine, spec["frames"], spec["batch"], spec["threads"] or info["FACELOGIN_RECOGNITION_THREADS"])
        print(WORKER_TAG + "RESULT " + json.dumps(result), flush=True)
    return 0


class CeilingWorkers:
    """K ceiling workers (subprocesses), started and warmed together; ``run()`` starts their ceilings at
    the same moment and sums their frames/s."""

    def __init__(self, count: int, portal, overrides: dict[str, str], frames: list[bytes], batch: int, threads: int | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
        spec = self.dir / "spec.pickle"
        env = {**portal.env, **overrides}
        spec.write_bytes(pickle.dumps({"root": str(portal.root), "env": env, "overrides": overrides, "frames": frames, "batch": batch, "threads": threads}))
        self.logs = [self.dir / f"worker-{i}.log" for i in range(count)]
        self.procs = []
        for log in self.logs:
            with log.open("wb") as err:
                self.procs.append(
                    subprocess.Popen(
                        [python_executable(), "-m", "bench.load", "--ceiling-worker", str(spec)],
                        cwd=REPO,
                        env={**env, "TQDM_DISABLE": "1"},
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=err,
                        text=True,
                    )
                )
        self.infos = [json.loads(self._read(i, "READY")) for i in range(count)]

    def _read(self, i: int, kind: str) -> str:
        proc = self.procs[i]
        for line in proc.stdout:
            if line.startswith(WORKER_TAG + kind + " "):
                return line[len(WORKER_TAG + kind) + 1 :]
        raise RuntimeError(f"ceiling worker {i} exited ({proc.poll()}) before {kind}:\n{self.logs[i].read_text()[-3000:]}")

    def run(self) -> dict:
        for proc in self.procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        parts = [json.loads(self._read(i, "RESULT")) for i in range(len(self.procs))]
        frames = sum(p["frames"] for p in parts)
        return {
            "processes": len(parts),
            "frames": frames,
            "batch": parts[0]["batch"],
            "threads": parts[0]["threads"],
            "frames_embedded": sum(p["frames_embedded"] for p in parts),
            "seconds": max(p["seconds"] for p in parts),
            "frames_per_s": round(sum(p["frames_per_s"] for p in parts), 2),
            "cpu_ms_per_frame": round(sum(p["cpu_ms_per_frame"] * p["frames"] for p in parts) / frames, 1),
            "per_process": parts,
        }

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def serve_many(portal, count: int, name: str, **overrides: str):
    """``count`` daphne processes on the same portal (each its own port and log), all warm (/healthz/
    says ``face_engine: ready``, as ``bench.portal.serve`` waits) before they are returned. Started
    together, so their models load side by side."""
    env = {**portal.env, **{k: str(v) for k, v in overrides.items()}}
    with contextlib.ExitStack() as stack:
        servers = []
        for i in range(count):
            log = portal.root / f"{name}-s{i + 1}.log"
            log.unlink(missing_ok=True)
            servers.append(stack.enter_context(DaphneProcess(env, log_path=log, startup_timeout=120)))
        for daphne in servers:
            wait_until(lambda d=daphne: engine_ready(d), timeout=180, interval=0.5, message=f"daphne's models not warm after 180 s ({daphne.log_path})")
        yield servers


async def client(
    url: str, source_for, rounds: int, stop_at: float, timeout: float, done: list[SignIn], bar
) -> list[SignIn]:
    own: list[SignIn] = []
    for _ in range(rounds):
        if time.monotonic() >= stop_at:
            break
        result = await sign_in(url, source_for(), timeout=timeout)
        done.append(result)
        own.append(result)
        bar.update(1)
    return own


async def run_clients(
    url: str | list[str], sources, rounds: int, duration: float, timeout: float
) -> tuple[list[SignIn], float, list[list[SignIn]]]:
    """All clients at once; with a list of server URLs, client i signs in (every round) on server i mod K.
    Returns every sign-in, the start time, and each client's sign-ins in order."""
    urls = [url] if isinstance(url, str) else list(url)
    done: list[SignIn] = []
    started = time.monotonic()
    with tqdm(total=len(sources) * rounds, desc="sign-ins", unit="sign-in", file=sys.stderr, disable=None) as bar:
        per_client = await asyncio.gather(
            *(
                client(urls[i % len(urls)], s, rounds, started + duration, timeout, done, bar)
                for i, s in enumerate(sources)
            )
        )
    return done, started, list(per_client)


def all_clients_window(per_client: list[list[SignIn]]) -> tuple[float, float] | None:
    """From the moment the last client sent its first frame to the moment the first client received its
    last final answer: the stretch in which every client was signing in (no ramp-up, no drain)."""
    starts = [own[0].first_frame_at for own in per_client if own]
    ends = [own[-1].ended_at for own in per_client if own]
    if not starts or None in starts or None in ends or len(starts) < len(per_client):
        return None
    begin, end = max(starts), min(ends)
    return (begin, end) if end > begin else None


def frames_answered_between(results: list[SignIn], begin: float, end: float) -> int:
    """Analysed frames whose answer arrived in [begin, end]: "frame" answers, plus the final answer
    (success or failed) that a sign-in's last analysed frame gets."""
    frames = sum(begin <= t <= end for r in results for t in r.answered_at)
    finals = sum(1 for r in results if r.ended_at and begin <= r.ended_at <= end and r.outcome.startswith(("success", "failed")))
    return frames + finals


def inferred_batches(results: list[SignIn], gap_s: float = 0.03) -> dict:
    """Server batch sizes, seen from outside: FrameBatcher hands a batch's results to the event loop
    together, so "frame" answers arriving within ``gap_s`` of each other (across clients) came from one
    batch; a batch takes at least one detection (~100 ms), so two batches never look like one. A
    sign-in's last frame is answered with "success" after database writes and is not counted, so the
    sizes are a lower bound (by about one frame in three)."""
    times = sorted(t for r in results for t in r.answered_at)
    sizes: list[int] = []
    for i, t in enumerate(times):
        if i and t - times[i - 1] <= gap_s:
            sizes[-1] += 1
        else:
            sizes.append(1)
    gaps = [b - a for a, b in zip(times, times[1:]) if b - a > gap_s]
    return {
        "batches": len(sizes),
        "mean_size": round(statistics.mean(sizes), 2) if sizes else None,
        "sizes": dict(sorted(collections.Counter(sizes).items())),
        "median_gap_between_batches_ms": round(statistics.median(gaps) * 1000, 1) if gaps else None,
    }


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (all cores)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / tick, sum(fields[:8]) / tick


def combined_batches(parts: list[dict]) -> dict:
    """``inferred_batches`` of each server (a batch is one server's), added up."""
    sizes: collections.Counter = collections.Counter()
    for part in parts:
        sizes.update(part["sizes"])
    batches = sum(part["batches"] for part in parts)
    gaps = [part["median_gap_between_batches_ms"] for part in parts if part["median_gap_between_batches_ms"] is not None]
    return {
        "batches": batches,
        "mean_size": round(sum(k * v for k, v in sizes.items()) / batches, 2) if batches else None,
        "sizes": dict(sorted(sizes.items())),
        "median_gap_between_batches_ms": round(statistics.median(gaps), 1) if gaps else None,
        "per_server": parts,
    }


def scrape_all(urls: list[str], token: str) -> list[dict]:
    return [scrape_metrics(url, token) for url in urls]


def monitoring_seen(urls: list[str], before: list[dict], after: list[dict], window_s: float) -> dict:
    """What each daphne's /metrics/ counted between two scrapes (before and after the clients): set
    beside the benchmark's own counts, it shows whether the operations team's figures tell the truth."""

    def change(k: int, name: str, labels: tuple = ()) -> float:
        return after[k].get((name, labels), 0.0) - before[k].get((name, labels), 0.0)

    servers = []
    for k, url in enumerate(urls):
        results = sorted({labels for name, labels in after[k] if name == "facelogin_face_attempts_total"})
        attempts = {dict(labels)["result"]: int(change(k, "facelogin_face_attempts_total", labels)) for labels in results}
        servers.append(
            {
                "url": url,
                "frames_analysed": int(change(k, "facelogin_frames_analysed_total")),
                "frames_refused": int(change(k, "facelogin_frames_refused_total")),
                "batches": int(change(k, "facelogin_frame_batches_total")),
                "attempts": {result: n for result, n in attempts.items() if n},
                "recognised_timed": int(change(k, "facelogin_face_sign_in_seconds_count")),
                # wall time analysing, so it includes time the thread waited for a CPU
                "analyser_busy_share": round(change(k, "facelogin_analyser_busy_seconds_total") / window_s, 3) if window_s > 0 else None,
            }
        )
    attempts: collections.Counter = collections.Counter()
    for server in servers:
        attempts.update(server["attempts"])
    return {
        "frames_analysed": sum(s["frames_analysed"] for s in servers),
        "frames_refused": sum(s["frames_refused"] for s in servers),
        "attempts": dict(attempts),
        "per_server": servers,
    }


def summarise(results: list[SignIn], started: float, ended: float) -> dict:
    ok = [r for r in results if r.ok]
    to_ticket = [r.first_frame_to_ticket_s for r in ok]
    to_home = [r.finished - r.started for r in ok]
    trips = [t for r in results for t in r.round_trips_ms]
    frame_errors = collections.Counter(code for r in results for code in r.frame_errors)
    analysed = sum(r.frames_analysed for r in results)
    outcomes = collections.Counter(r.outcome if r.outcome != "success" or r.redeemed else "success:not_redeemed" for r in results)
    return {
        "sign_ins": len(results),
        "succeeded": len(ok),
        "errors": len(results) - len(ok),
        "outcomes": dict(outcomes),
        "frame_errors": dict(frame_errors),
        "frames_analysed": analysed,
        "frames_per_sign_in_median": statistics.median(r.frames_analysed for r in ok) if ok else None,
        "frames_sent_per_sign_in_median": statistics.median(len(r.frames_sent) for r in ok) if ok else None,
        "first_frame_to_ticket_s": {"p50": percentile(to_ticket, 50), "p95": percentile(to_ticket, 95), "max": max(to_ticket, default=None)},
        "page_to_home_s": {"p50": percentile(to_home, 50), "p95": percentile(to_home, 95)},
        "round_trip_ms": {"p50": percentile(trips, 50), "p95": percentile(trips, 95)},
        "connect_ms_p50": percentile([r.connect_s * 1000 for r in results if r.connect_s], 50),
        "page_ms_p95": percentile([r.page_s * 1000 for r in results if r.page_s], 95),
        "window_s": round(ended - started, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients, each a distinct enrolled student while there are enough (45), then second devices (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="sign-ins per client, back to back (default 2)")
    parser.add_argument("--duration", type=float, default=300.0, help="no new sign-in starts after this many seconds (default 300)")
    parser.add_argument("--ceiling-frames", type=int, default=64, help="frames the ceiling measures, before and after (default 64)")
    parser.add_argument("--orl", type=int, default=40, help="ORL people enrolled beside the 5 johns (default 40)")
    add_portal_options(parser)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 10 ORL people, a short ceiling")
    parser.add_argument("--json", type=Path, help="default bench/results/load-<clients>.json (load-<clients>-s<K>.json with --servers K > 1)")
    parser.add_argument(
        "--servers", type=int, default=1, help="daphne processes on the same portal, clients spread round-robin over them (default 1)"
    )
    parser.add_argument("--ceiling-worker", type=Path, help=argparse.SUPPRESS)  # internal: one ceiling process (--servers K > 1)
    args = parser.parse_args(argv)
    if args.ceiling_worker:
        return ceiling_worker(args.ceiling_worker)
    if args.servers < 1:
        parser.error("--servers must be at least 1")
    if args.quick:
        args.rounds, args.orl, args.ceiling_frames = 1, min(args.orl, 10), 16
    people = find_people(johns=5, orl=args.orl)
    if args.clients < 1:
        parser.error("--clients must be at least 1")
    json_path = args.json or RESULTS / (f"load-{args.clients}.json" if args.servers == 1 else f"load-{args.clients}-s{args.servers}.json")
    overrides = {**parse_env(args.server_env), "FACELOGIN_LIVENESS": "0"}
    load_before = machine_load()

    # One enrolled student per client while they last; beyond that a client is a second device of a student
    # (the shared faces hold 45 such people), its frames shifted further so no two clients send the same bytes.
    students = [people[i % len(people)] for i in range(args.clients)]
    sources = [
        lambda p=p, k=i // len(people): FrameSource(p.held_out, shift=40 * k) for i, p in enumerate(students)
    ]
    # The ceiling's frames: every client's first frame, then every client's second, ... (what the
    # server gets first), --ceiling-frames in all.
    prepared = [make().prepare(12) for make in sources]  # built now and cached: no client encodes JPEG while the server works
    first_frames = [prepared[i % len(prepared)][i // len(prepared) % 12] for i in range(args.ceiling_frames)]

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        root = args.portal_dir or Path(tmp)
        print(f"seeding a portal in {root}: {len(people)} students ({sum(len(p.enrol_photos) for p in people)} photos) ...", file=sys.stderr)
        portal = seed_portal(root, people)
        classifier = portal.classifier()
        print(portal.import_summary, file=sys.stderr)
        settings = settings_shown(portal, overrides)
        token = {**portal.env, **overrides}["FACELOGIN_METRICS_TOKEN"]  # what the daphnes were given

        if args.servers == 1:
            with serve(portal, name=f"daphne-load-{args.clients}", **overrides) as daphne:
                # The ceiling runs while daphne idles (one heavy process at a time), before and after the
                # clients: the machine is shared, and its load drifts over a run.
                engine, engine_info = server_engine(portal, overrides)
                batch = min(args.clients, MAX_BATCH)
                threads = engine_info["FACELOGIN_RECOGNITION_THREADS"]
                before = ceiling(engine, first_frames, batch, threads)
                pid = daphne.process.pid
                urls = [daphne.url]
                scraped0 = scrape_all(urls, token)
                cpu0, threads0 = cpu_seconds(pid), thread_sched(pid)
                results, started, per_client = asyncio.run(run_clients(daphne.url, sources, args.rounds, args.duration, args.timeout))
                cpu1, threads1 = cpu_seconds(pid), thread_sched(pid)
                scraped1 = scrape_all(urls, token)
                after = ceiling(engine, first_frames, batch, threads)
        else:
            # K daphnes on one portal; the ceiling is K bare pipelines at once in K processes, while the
            # daphnes idle, before and after the clients.
            with serve_many(portal, args.servers, f"daphne-load-{args.clients}", **overrides) as servers:
                batch = min(args.clients, MAX_BATCH)
                print(f"{args.servers} daphne processes warm: " + ", ".join(f"{d.url} (pid {d.process.pid})" for d in servers), file=sys.stderr)
                workers = CeilingWorkers(args.servers, portal, overrides, first_frames, batch)
                try:
                    engine_info = workers.infos[0]
                    before = workers.run()
                    pids, urls = [d.process.pid for d in servers], [d.url for d in servers]
                    scraped0 = scrape_all(urls, token)
                    cpu0s, sched0s = [cpu_seconds(p) for p in pids], [thread_sched(p) for p in pids]
                    machine0, bench0 = machine_cpu(), time.process_time()
                    results, started, per_client = asyncio.run(
                        run_clients(urls, sources, args.rounds, args.duration, args.timeout)
                    )
                    cpu1s, sched1s = [cpu_seconds(p) for p in pids], [thread_sched(p) for p in pids]
                    machine1, bench1 = machine_cpu(), time.process_time()
                    scraped1 = scrape_all(urls, token)
                    after = workers.run()
                finally:
                    workers.close()
            # Client i signed in on server i mod K.
            per_server = [[r for i, own in enumerate(per_client) if i % len(urls) == k for r in own] for k in range(len(urls))]
    top = {
        "frames_per_s": round((before["frames_per_s"] + after["frames_per_s"]) / 2, 2),
        "cpu_ms_per_frame": round((before["cpu_ms_per_frame"] + after["cpu_ms_per_frame"]) / 2, 1),
        "batch": batch,
        "before": before,
        "after": after,
    }

    # The window the server had frames to analyse: the first frame sent to the last final answer.
    first = min((r.first_frame_at for r in results if r.first_frame_at), default=started)
    last = max((r.ended_at or r.finished for r in results), default=started)
    row = summarise(results, first, last)
    row["frames_per_s"] = round(row["frames_analysed"] / row["window_s"], 2) if row["window_s"] else None
    row["ceiling"] = top
    row["ratio_to_ceiling"] = round(row["frames_per_s"] / top["frames_per_s"], 3) if row["frames_per_s"] else None
    row["monitoring"] = monitoring_seen(urls, scraped0, scraped1, last - started)
    # The same while every client was signing in: the whole window above also holds the ramp-up (clients
    # loading the page) and the drain (the last few clients alone), when a server cannot be full.
    window = all_clients_window(per_client)
    if window is not None:
        begin, end = window
        answered = frames_answered_between(results, begin, end)
        fps = answered / (end - begin)
        row["all_clients_active"] = {
            "window_s": round(end - begin, 2),
            "frames_answered": answered,
            "frames_per_s": round(fps, 2),
            "ratio_to_ceiling": round(fps / top["frames_per_s"], 3),
        }
    if args.servers == 1:
        row["inferred_batches"] = inferred_batches(results)
        cpu_s = cpu1 - cpu0
        busiest = busiest_threads(threads0, threads1, pid, row["window_s"])
    else:
        row["servers"] = args.servers
        row["inferred_batches"] = combined_batches([inferred_batches(mine) for mine in per_server])
        cpu_s = sum(cpu1s) - sum(cpu0s)
        busiest = []
        row["per_server"] = []
        for k, (p, mine) in enumerate(zip(pids, per_server)):
            threads_k = busiest_threads(sched0s[k], sched1s[k], p, row["window_s"])
            for t in threads_k:
                t["thread"] = f"server {k + 1} {t['thread']}"
            busiest += threads_k
            ok_k = [r.first_frame_to_ticket_s for r in mine if r.ok]
            analysed_k = sum(r.frames_analysed for r in mine)
            row["per_server"].append(
                {
                    "url": urls[k],
                    "pid": p,
                    "sign_ins": len(mine),
                    "succeeded": len(ok_k),
                    "frames_analysed": analysed_k,
                    "frames_per_s": round(analysed_k / row["window_s"], 2) if row["window_s"] else None,
                    "first_frame_to_ticket_s": {"p50": percentile(ok_k, 50), "p95": percentile(ok_k, 95)},
                    "cpu_s": round(cpu1s[k] - cpu0s[k], 2),
                    "cpu_ms_per_frame": round((cpu1s[k] - cpu0s[k]) * 1000 / analysed_k, 1) if analysed_k else None,
                }
            )
    if args.servers > 1:
        # Who else used the CPUs over the client period: this process (the clients) and the whole machine.
        period = last - started
        row["client_cpu_cores"] = round((bench1 - bench0) / period, 2) if period > 0 else None
        row["machine_busy_cores"] = round((machine1[0] - machine0[0]) / period, 2) if period > 0 else None
        row["machine_cores"] = os.cpu_count()
    row["server_cpu"] = {
        "seconds": round(cpu_s, 2),
        # over the whole client period (page loads and redemptions too), like the CPU reading
        "cores_used": round(cpu_s / (last - started), 2) if last > started else None,
        "cpu_ms_per_frame": round(cpu_s * 1000 / row["frames_analysed"], 1) if row["frames_analysed"] else None,
        "busiest_threads": busiest,
    }

    print_settings(settings)
    print(
        f"gallery: {classifier.get('students')} students, {classifier.get('embeddings')} embeddings, threshold {classifier.get('threshold')}; "
        f"{args.clients} clients x {args.rounds} rounds; load average before {load_before}, after {machine_load()}"
    )
    print(engine_line(engine_info))
    k_head, k_cell = ("", "") if args.servers == 1 else (f"{'servers':>8}", f"{args.servers:>8}")
    print(
        f"\n{'clients':>7}{k_head}{'ok':>8}{'errors':>7}{'p50 s':>7}{'p95 s':>7}{'max s':>7}{'frames':>7}{'frames/s':>9}"
        f"{'ceiling':>8}{'ratio':>7}{'trip p50':>9}{'trip p95':>9}{'srv cores':>10}{'ms/frame':>9}"
    )
    t = row["first_frame_to_ticket_s"]
    print(
        f"{args.clients:>7}{k_cell}{str(row['succeeded']) + '/' + str(row['sign_ins']):>8}{row['errors']:>7}{fmt(t['p50']):>7}{fmt(t['p95']):>7}"
        f"{fmt(t['max']):>7}{row['frames_analysed']:>7}{fmt(row['frames_per_s']):>9}{fmt(top['frames_per_s']):>8}"
        f"{fmt(row['ratio_to_ceiling']):>7}{fmt(row['round_trip_ms']['p50'], 0):>9}{fmt(row['round_trip_ms']['p95'], 0):>9}"
        f"{fmt(row['server_cpu']['cores_used']):>10}{fmt(row['server_cpu']['cpu_ms_per_frame'], 0):>9}"
    )
    print(
        f"p50/p95 s: first frame → success message; page load → home: {fmt(row['page_to_home_s']['p50'])} / {fmt(row['page_to_home_s']['p95'])} s; "
        f"frames per sign-in (median) {row['frames_per_sign_in_median']} analysed, {row['frames_sent_per_sign_in_median']} sent"
    )
    print(f"outcomes: {row['outcomes']}; frame-level errors: {row['frame_errors'] or 'none'}")
    active = row.get("all_clients_active")
    if active:
        print(
            f"while all {args.clients} clients were signing in ({active['window_s']} s, no ramp-up or drain): "
            f"{active['frames_answered']} frames answered, {active['frames_per_s']} frames/s, {active['ratio_to_ceiling']} of the ceiling"
        )
    if args.servers == 1:
        print(
            f"ceiling (bare batched pipeline, daphne's batch step (analyse + vote) in this process, batches of {top['batch']}, {before['threads']} thread(s)): "
            f"{before['frames_per_s']} frames/s before "
            f"the clients, {after['frames_per_s']} after ({before['frames']} frames each, {before['frames_embedded']} embedded), "
            f"{top['cpu_ms_per_frame']} ms CPU per frame"
        )
    else:
        each = lambda c: " + ".join(str(p["frames_per_s"]) for p in c["per_process"])  # noqa: E731
        print(
            f"ceiling ({args.servers} bare batched pipelines at once in {args.servers} processes, each daphne's batch step (analyse + vote), "
            f"batches of {top['batch']}, {before['threads']} thread(s) each): "
            f"{before['frames_per_s']} frames/s before the clients ({each(before)}), {after['frames_per_s']} after ({each(after)}) "
            f"({before['per_process'][0]['frames']} frames per process, {before['frames_embedded']}/{before['frames']} embedded), "
            f"{top['cpu_ms_per_frame']} ms CPU per frame"
        )
        print(
            f"CPU over the client period (cores): servers {fmt(row['server_cpu']['cores_used'])}, the clients (this process) "
            f"{fmt(row['client_cpu_cores'])}, whole machine busy {fmt(row['machine_busy_cores'])} of {row['machine_cores']}"
        )
        print(
            "per server (sign-ins ok/all, frames analysed, frames/s, p50/p95 s, CPU ms/frame): "
            + "; ".join(
                f"{s['url']} {s['succeeded']}/{s['sign_ins']}, {s['frames_analysed']}, {fmt(s['frames_per_s'])}, "
                f"{fmt(s['first_frame_to_ticket_s']['p50'])}/{fmt(s['first_frame_to_ticket_s']['p95'])}, {fmt(s['cpu_ms_per_frame'], 0)}"
                for s in row["per_server"]
            )
        )
    print(
        "server threads (share of the window on a CPU / runnable but waiting for a CPU / blocked): "
        + ", ".join(f"{t['thread']} {t['busy']:.0%} / {t['starved']:.0%} / {t['idle']:.0%}" for t in row["server_cpu"]["busiest_threads"])
    )
    seen = row["monitoring"]
    print(
        f"the servers' /metrics/ over the client period: {seen['frames_analysed']} frames analysed (the clients counted "
        f"{row['frames_analysed']}), {seen['frames_refused']} refused, attempts {seen['attempts']}; analyser busy (wall) "
        + " / ".join(fmt(s["analyser_busy_share"]) for s in seen["per_server"])
        + " of the client period"
    )
    b = row["inferred_batches"]
    print(
        f"server batches inferred from 'frame' answer times (a lower bound): {b['batches']} batches, mean {b['mean_size']} frames, sizes {b['sizes']}, "
        f"median gap between batches {b['median_gap_between_batches_ms']} ms"
    )
    payload = {
        "command": "python -m bench.load " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": settings,
        "engine": engine_info,
        "classifier": classifier,
        "clients": args.clients,
        "servers": args.servers,
        "rounds": args.rounds,
        "load_average": {"before": load_before, "after": machine_load()},
        "result": row,
        "per_sign_in": [
            {
                "outcome": r.outcome,
                "redeemed": r.redeemed,
                "frames_sent": len(r.frames_sent),
                "frames_analysed": r.frames_analysed,
                "first_frame_to_ticket_s": r.first_frame_to_ticket_s,
                "round_trips_ms": [round(x, 1) for x in r.round_trips_ms],
                "frame_errors": r.frame_errors,
                "started_s": round(r.started - first, 3),
                "finished_s": round(r.finished - first, 3),
            }
            for r in results
        ],
    }
    write_json(json_path, payload)
    print(f"wrote {json_path}", file=sys.stderr)
    return 0 if row["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
