"""The served model under load: `mlflow models serve` on 127.0.0.1 asked by 1, 8 and 32 clients at
once, each sending requests of 1 or 32 MNIST test digits (PNG files, upscaled to 112 pixels), a share
of the rows no image and one request per round carrying an image over the pixel cap; beside it, the
same model loaded in this process and called one request at a time (the most the server can do).

    python -m bench.serve_load data/raw/mnist.npz --model models:/mnist-cnn@smoke
    python -m bench.serve_load data/raw/mnist.npz --model models:/mnist-cnn@smoke --workers 2 --connection-per-request
    python -m bench.serve_load data/raw/mnist.npz --model models:/mnist-cnn@smoke --port 5001   # already served

Run in a project after `dvc repro` (or `make quick`) registered the model. Each round stops after
--requests requests or --seconds, whichever comes first; only 127.0.0.1 is ever asked; each client
keeps its connection unless told. Prints a Markdown table: per round images/s (rows answered, bad
ones too), latency percentiles, failed requests (a bad row answered with its own error is no
failure), digits answered otherwise than in this process and the CPU time the server spent per
request (all its processes and threads: on a shared machine, steadier than the clock); and the
server's memory (resident, all its processes) before the first request and after the rounds.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import math
import os
import queue
import socket
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import table
from bench.user_images import served
from pipeline.common import cli
from pipeline.common.errors import PipelineError
from pipeline.serving.images import PIXEL_CAP
from pipeline.training.timings import this_machine

HOST = "127.0.0.1"  # loopback only: this benchmark never sends its load to another machine
SIDE = 112  # the digits as a page would send them: MNIST's 28 pixels, upscaled 4x
NO_IMAGE = base64.b64encode(b"no image at all").decode()
BAD = -1  # a row's digit index where the row is no image, or one over the pixel cap
REQUEST_TIMEOUT = 120  # seconds a client waits for one answer


def digit_files(mnist: Path, count: int) -> list[bytes]:
    """The first `count` MNIST test digits as 112x112 gray PNG files."""
    from PIL import Image

    with np.load(mnist) as data:
        digits = data["x_test"][:count]
    files = []
    for digit in digits:
        buffer = io.BytesIO()
        Image.fromarray(digit).resize((SIDE, SIDE), Image.BICUBIC).save(buffer, format="PNG")
        files.append(buffer.getvalue())
    return files


def oversized_file() -> bytes:
    """A blank PNG file of more pixels than the model takes: refused by its header, never decoded."""
    from PIL import Image

    side = math.isqrt(PIXEL_CAP) + 1
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Request:
    body: bytes
    rows: tuple[int, ...]  # per row: the digit's index, or BAD


def round_requests(count: int, per_request: int, texts: list[str], bad_share: float, oversized: str,
                   seed: int) -> list[Request]:
    """`count` requests of `per_request` rows, cycling through the digits (base64 `texts`); each row
    no image with probability `bad_share`; the first request's first row the oversized image."""
    rng = np.random.default_rng(seed)
    made = []
    for number in range(count):
        rows = [BAD if rng.random() < bad_share else (number * per_request + row) % len(texts)
                for row in range(per_request)]
        data = [NO_IMAGE if index == BAD else texts[index] for index in rows]
        if number == 0:
            rows[0], data[0] = BAD, oversized
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[text] for text in data]}})
        made.append(Request(body.encode(), tuple(rows)))
    return made


@dataclass
class Answer:
    seconds: float
    failure: str | None  # why the request failed: its status, an error, rows answered wrongly
    rows: int  # rows answered
    differing: int  # digits classified otherwise than in this process


def judged(request: Request, status: int, payload: bytes, expected: list[str]) -> tuple[str | None, int]:
    """(why the answer fails, how many digits it classifies otherwise than `expected`): every row
    answered, a digit with its class, a bad row with its own error."""
    if status != 200:
        return f"HTTP {status}: {payload[:200]!r}", 0
    rows = json.loads(payload)["predictions"]
    if len(rows) != len(request.rows):
        return f"{len(rows)} rows answered for {len(request.rows)}", 0
    if any((row["error"] is None) != (index != BAD) for row, index in zip(rows, request.rows)):
        return "a digit answered with an error, or a bad row without one", 0
    return None, sum(row["class"] != expected[index] for row, index in zip(rows, request.rows) if index != BAD)


@dataclass(frozen=True)
class Server:
    port: int
    expected: list[str]  # each digit's class, as the model in this process gives it
    keep_alive: bool  # clients keep their connection (as browsers do), or make one per request


def client(server: Server, requests: list[Request], todo: queue.SimpleQueue, deadline: float,
           answers: list[Answer]) -> None:
    """One client on its own connection: the next request while there is one and time."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=REQUEST_TIMEOUT)
    try:
        while time.monotonic() < deadline:
            try:
                request = requests[todo.get_nowait()]
            except queue.Empty:
                return
            started = time.perf_counter()
            try:
                connection.request("POST", "/invocations", request.body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                status, payload = response.status, response.read()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()  # reconnects on the next request
                answers.append(Answer(time.perf_counter() - started, f"{type(exc).__name__}: {exc}", 0, 0))
                continue
            seconds = time.perf_counter() - started
            if not server.keep_alive:
                connection.close()  # the next request connects anew
            failure, differing = judged(request, status, payload, server.expected)
            answers.append(Answer(seconds, failure, len(request.rows) if status == 200 else 0, differing))
    finally:
        connection.close()


def load_round(server: Server, requests: list[Request], clients: int, seconds: float) -> tuple[list[Answer], float]:
    """The requests sent by `clients` at once until all are answered or `seconds` have passed (an
    answer then under way is awaited): the answers, and the round's wall time."""
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for index in range(len(requests)):
        todo.put(index)
    answers: list[Answer] = []  # list.append is atomic: the clients share it
    started = time.perf_counter()
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=client, args=(server, requests, todo, deadline, answers))
               for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers, time.perf_counter() - started


def summary(answers: list[Answer], wall: float) -> dict:
    milliseconds = np.array([answer.seconds for answer in answers]) * 1000
    p50, p95, p99 = np.percentile(milliseconds, [50, 95, 99])
    failures = [answer.failure for answer in answers if answer.failure]
    return {"requests": len(answers), "images/s": f"{sum(answer.rows for answer in answers) / wall:.0f}",
            "p50 ms": f"{p50:.1f}", "p95 ms": f"{p95:.1f}", "p99 ms": f"{p99:.1f}",
            "failed": f"{len(failures)} / {len(answers)}" + (f" ({failures[0]})" if failures else ""),
            "differing": sum(answer.differing for answer in answers)}


def server_processes(port: int) -> list:
    """The processes that hold the socket listening on `port` (with --workers, uvicorn's supervisor
    and each worker) and their children, as psutil sees them."""
    import psutil

    def listens(process) -> bool:
        try:
            return any(connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
                       for connection in process.net_connections("tcp"))
        except (psutil.AccessDenied, psutil.NoSuchProcess):  # another user's, or gone
            return False

    # each process asked on its own: psutil.net_connections() names one holder per socket
    holders = [process for process in psutil.process_iter() if listens(process)]
    if not holders:
        raise PipelineError(f"no process of this user listens on port {port}")
    return list({process.pid: process for holder in holders
                 for process in [holder, *holder.children(recursive=True)]}.values())


def server_memory(port: int) -> int:
    """Bytes resident in the server's processes."""
    return sum(process.memory_info().rss for process in server_processes(port))


def server_cpu(processes: list) -> float:
    """Seconds of CPU the processes have used (all their threads, user and system): what a request
    costs the server, whatever else the machine runs."""
    return sum(sum(process.cpu_times()[:2]) for process in processes)


def settled_memory(port: int, seconds: float = 120) -> int:
    """The server's memory once it stops growing: with --workers each worker loads the model on its
    own, and the server answers as soon as the first has."""
    last = server_memory(port)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(2)
        now = server_memory(port)
        if abs(now - last) < 0.01 * last:
            return now
        last = now
    raise PipelineError(f"the server's memory still grew after {seconds:.0f} s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def in_process(model: str, files: list[bytes], sizes: list[int]) -> tuple[list[str], dict[int, dict]]:
    """The model loaded here: its class for every file, and per request size the median time of a
    call (enough calls for about 200 images, at least 10, after a first)."""
    import mlflow

    from pipeline.model.runtime import load_tensorflow
    from pipeline.serving.pyfunc import encode
    from pipeline.tracking import store as tracking

    load_tensorflow()
    tracking.quiet_mlflow()
    tracking.connect(tracking.project_root())
    loaded = mlflow.pyfunc.load_model(model)
    classes = list(loaded.predict(encode(files))["class"])
    limits = {}
    for per_request in sizes:
        batch = encode(files[:per_request])
        loaded.predict(batch)
        seconds = []
        for _ in range(max(10, 200 // per_request)):
            started = time.perf_counter()
            loaded.predict(batch)
            seconds.append(time.perf_counter() - started)
        median = statistics.median(seconds)
        limits[per_request] = {"images/s": f"{per_request / median:.0f}", "p50 ms": f"{median * 1000:.1f}"}
    return classes, limits


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.serve_load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mnist", type=Path, help="Keras' mnist.npz (the download stage's data/raw/mnist.npz)")
    parser.add_argument("--model", default="models:/mnist-cnn@champion",
                        help="the registered model (with --port: the one that server serves)")
    parser.add_argument("--port", type=int, help="a model already served on 127.0.0.1:PORT (none is started)")
    parser.add_argument("--workers", type=int, default=1, help="mlflow models serve --workers, for the one started")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="clients at once, per round")
    parser.add_argument("--images", type=int, nargs="+", default=[1, 32], help="images per request, per round")
    parser.add_argument("--requests", type=int, default=400, help="the most requests of a round")
    parser.add_argument("--seconds", type=float, default=20, help="the longest a round sends new requests")
    parser.add_argument("--bad-share", type=float, default=0.05, help="share of the rows that are no image")
    parser.add_argument("--digits", type=int, default=200, help="distinct test digits sent")
    parser.add_argument("--connection-per-request", action="store_true",
                        help="a new connection for every request (clients keep theirs by default, as browsers do)")
    args = parser.parse_args(argv)
    if args.port is not None and args.workers != 1:
        raise PipelineError("--workers is for the server this benchmark starts; give it to the one on --port")
    files = digit_files(args.mnist, args.digits)
    texts = [base64.b64encode(data).decode() for data in files]
    oversized = base64.b64encode(oversized_file()).decode()
    # before the server starts: this process has the CPU to itself
    expected, limits = in_process(args.model, files, args.images)
    server = Server(args.port or free_port(), expected, keep_alive=not args.connection_per_request)
    process = None if args.port else served(args.model, server.port, args.workers)
    try:
        rounds = {(clients, per_request): round_requests(args.requests, per_request, texts, args.bad_share, oversized,
                                                         seed=clients * 1000 + per_request)
                  for per_request in args.images for clients in args.clients}
        before = settled_memory(server.port)
        for per_request in args.images:  # the first answers of each size, which may set things up, not counted
            load_round(server, rounds[1, per_request][1:3], 1, args.seconds)
        rows = []
        processes = server_processes(server.port)
        for (clients, per_request), requests in rounds.items():
            used = server_cpu(processes)
            answers, wall = load_round(server, requests, clients, args.seconds)
            cpu = f"{(server_cpu(processes) - used) / len(answers) * 1000:.1f}"
            rows.append({"clients": clients, "images/request": per_request, **summary(answers, wall),
                         "server CPU ms/request": cpu})
            print(f"{clients} clients x {per_request} images: {rows[-1]}", flush=True)
        after = server_memory(server.port)
    finally:
        if process is not None:
            os.killpg(process.pid, 15)
            process.wait()
    server_said = f"--port {args.port}" if args.port else f"--workers {args.workers}"
    connections = "a connection per request" if args.connection_per_request else "each client keeps its connection"
    print(f"\n{this_machine()}; {args.model}, {server_said}; {connections}; {args.bad_share:.0%} of the rows no "
          "image, one image over the pixel cap per round\n")
    columns = ["clients", "images/request", "requests", "images/s", "p50 ms", "p95 ms", "p99 ms", "failed",
               "differing", "server CPU ms/request"]
    print(table(rows, columns))
    print(f"\nserver memory (resident, all its processes): {before / 2**20:.0f} MB loaded, before the first request; "
          f"{after / 2**20:.0f} MB after the rounds "
          f"({(after - before) / before:+.1%})\n")
    print(table([{"in this process, one call at a time": f"{per_request} image(s) per call", **figures}
                 for per_request, figures in limits.items()],
                ["in this process, one call at a time", "images/s", "p50 ms"]))


if __name__ == "__main__":
    cli.run(main)
