"""Online and batch serving, side by side with MLflow and BentoML (issue 5): same model, one run.

The model: ``CREATE MODEL bench.m`` (BOOSTED_TREE_REGRESSOR, 200 trees, depth 6) on a
20,000 x 20 FLOAT64 table, trained once by Shipyard. Its XGBoost booster is saved to a file
(feature names x0…x19 added, the trees untouched) and that file is what every peer serves and
what the raw baselines predict with, so all sides run exactly the same 200 trees.

1. In process: ``ws.endpoints.predict("bench", instances)`` vs the raw ``Booster.inplace_predict``
   on a ready float32 matrix (the limit) and on a matrix built from the same dicts (what a user's
   own code would do), 1 and 100 instances a call; p50/p99 per call, calls interleaved.
2. Over HTTP, with ``wrk`` (one load-generator thread, keep-alive connections, a fixed duration
   after a warm-up), at concurrency 1 (1 worker per server) and 16 (2 workers per server on this
   2-core machine): p50, p99 and requests/s for
   - ``mlflow models serve -m <logged model folder> --env-manager local --workers N``
     (MLflow's FastAPI/uvicorn scoring server), body ``{"dataframe_split": …}``;
   - ``bentoml serve`` of ``peers/bentoml_service.py`` (``@bentoml.service(workers=N)``), body
     ``{"instances": [[…], …]}``;
   - ``shipyard serve bench --workers N`` (the standalone endpoint server) and the platform
     server (``shipyard up``, one process), body ``{"instances": [{"x0": …, …}]}``.
   Each peer runs from its own virtual environment under ``benchmarks/.envs/<peer>``, created on
   first use with the pinned versions below (PyPI only). Every server's answer is checked
   against the raw booster before it is measured.
3. Batch: ``ws.batch_predict`` over a Parquet file of 10,000,000 x 20 vs the raw pipeline on the
   same file: ``pyarrow.parquet.read_table`` + float32 matrix + ``inplace_predict`` + predictions
   written to Parquet (parts reported), ABBA-interleaved.

Targets (issue 5): HTTP p99 <= 5 ms at concurrency 1; throughput >= 2x the better peer; batch
<= 1.2x raw.

Run alone: ``python benchmarks/bench_serving.py [--quick] [--duration S] [--batch-rows N]``, or
through ``benchmarks/run.py --only serving``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

import shipyard as sy
from common import (
    BenchmarkInvalid,
    Clock,
    Sample,
    float32_matrix,
    interleave,
    make_regression_table,
)

Log = Callable[[str], None]

HERE = Path(__file__).resolve().parent
ENVS = HERE / ".envs"
PEERS_DIR = HERE / "peers"
DATA = HERE / ".data"  # the batch benchmark's Parquet input, generated once (ignored by git)

# The peers, pinned (each in its own virtual environment; the same xgboost as Shipyard's).
PEER_PINS: dict[str, list[str]] = {
    "mlflow": ["mlflow==3.17.2", "xgboost==3.2.0", "pandas==3.1.1", "numpy==2.4.6"],
    "bentoml": ["bentoml==1.4.39", "xgboost==3.2.0", "numpy==2.4.6"],
}

FEATURES = 20
NAMES = [f"x{i}" for i in range(FEATURES)]
LABEL = "y"
TRAIN_ROWS = 20_000
ROUNDS = 200
MODEL = "bench.m"
ENDPOINT = "bench"
CREATE_SQL = (
    f"CREATE OR REPLACE MODEL {MODEL} OPTIONS(model_type='boosted_tree_regressor', "
    f"input_label_cols=['{LABEL}'], data_split_method='no_split', early_stop=false, "
    f"max_iterations={ROUNDS}) AS SELECT * FROM bench.t"
)
BATCH_ROWS = 10_000_000
BATCH_SIZES = (1, 100)  # instances a request / call
C1_WORKERS = 1
C16_WORKERS = 2

P99_TARGET_MS = 5.0
RPS_TARGET = 2.0  # x the better peer
BATCH_TARGET = 1.2  # x raw


# --------------------------------------------------------------------------------------------
# helpers


def percentile(values: list[float] | np.ndarray, q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def machine_load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.2f} {five:.2f} {fifteen:.2f}"


def shipyard_serving_available() -> dict[str, bool]:
    """Which Shipyard serving pieces exist in this checkout (they are switched on when they do)."""
    cli = Path(sys.executable).with_name("shipyard")
    serve_cli = False
    if cli.exists():
        probe = subprocess.run(
            [str(cli), "serve", "--help"], capture_output=True, text=True, check=False
        )
        serve_cli = probe.returncode == 0
    return {
        "endpoints": importlib.util.find_spec("shipyard.serving.service") is not None,
        "serve_cli": serve_cli,
        "batch": importlib.util.find_spec("shipyard.serving.batch") is not None,
    }


def _uv() -> str | None:
    found = Path(sys.executable).with_name("uv")
    return str(found) if found.exists() else shutil.which("uv")


def ensure_env(name: str, log: Log) -> Path:
    """The peer's virtual environment (benchmarks/.envs/<name>), created on first use.

    Recreated when its pins change. Uses uv when available, else ``python -m venv`` + pip.
    """
    env = ENVS / name
    pins = PEER_PINS[name]
    marker = env / "bench-pins.txt"
    python = env / "bin" / "python"
    if python.exists() and marker.exists() and marker.read_text().split() == pins:
        return env
    log(f"creating the {name} environment {env} ({' '.join(pins)})")
    if env.exists():
        shutil.rmtree(env)
    ENVS.mkdir(parents=True, exist_ok=True)
    uv = _uv()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if uv:
        subprocess.run([uv, "venv", "-q", "--python", version, str(env)], check=True)
        subprocess.run([uv, "pip", "install", "-q", "--python", str(python), *pins], check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True)
    marker.write_text("\n".join(pins) + "\n")
    return env


def _post(url: str, body: bytes, timeout: float = 30.0) -> Any:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_file: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_file.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"server exited with {proc.returncode} before ready:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    tail = log_file.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"server not ready at {url} after {timeout:.0f} s:\n{tail}")


@contextlib.contextmanager
def running_server(
    argv: list[str],
    *,
    ready_url: str,
    log_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 180.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server in its own process group, wait for ``ready_url``, stop it (always)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        try:
            _wait_ready(ready_url, proc, log_file, timeout)
            yield proc
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    # workers may outlive their parent: the group goes, whatever happened
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


# --------------------------------------------------------------------------------------------
# the load generator: wrk with a Lua script (POST body from a file, JSON summary at the end)

WRK_LUA = """
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"p50_us\\": %d, \\"p99_us\\": %d, " ..
    "\\"mean_us\\": %.1f, \\"max_us\\": %d, \\"connect\\": %d, \\"read\\": %d, \\"write\\": %d, " ..
    "\\"status\\": %d, \\"timeout\\": %d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchmarkInvalid(
            "the HTTP benchmark needs wrk (the load generator): apt-get install wrk"
        )
    return found


def wrk(
    url: str, body_file: Path, *, connections: int, duration: float, script: Path
) -> dict[str, Any]:
    """One wrk run (one thread, ``connections`` keep-alive connections)."""
    argv = [
        wrk_path(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_BODY": str(body_file)},
        check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"]
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "mean_ms": raw["mean_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": errors,
    }


# --------------------------------------------------------------------------------------------
# payloads: the same rows for every server, each in its own request format


def predictions_of(answer: Any) -> list[float]:
    """The numbers in a server's answer (a list, or {"predictions": [...]}, dicts or numbers)."""
    if isinstance(answer, dict):
        for key in ("predictions", "outputs", "predicted_y"):
            if key in answer:
                answer = answer[key]
                break
    values: list[float] = []
    for item in answer:
        if isinstance(item, dict):
            keys = [k for k in item if k.startswith("predicted_")] or [
                k for k in item if k in ("value", "prediction")
            ]
            values.append(float(item[keys[0]]))
        elif isinstance(item, list):
            values.append(float(item[0]))
        else:
            values.append(float(item))
    return values


def bodies(rows: np.ndarray) -> dict[str, bytes]:
    data = rows.tolist()
    instances = [dict(zip(NAMES, row, strict=True)) for row in data]
    return {
        "mlflow": json.dumps({"dataframe_split": {"columns": NAMES, "data": data}}).encode(),
        "bentoml": json.dumps({"instances": data}).encode(),
        "shipyard": json.dumps({"instances": instances}).encode(),
    }


# --------------------------------------------------------------------------------------------
# servers


class Server:
    """How to start one server and where to send its requests."""

    def __init__(
        self,
        name: str,
        label: str,
        fmt: str,
        start: Callable[[int, int, Path], contextlib.AbstractContextManager[Any]],
        path: str,
        max_workers: int | None = None,
    ) -> None:
        self.name, self.label, self.fmt, self.start, self.path = name, label, fmt, start, path
        self.max_workers = max_workers


def mlflow_server(model_dir: Path, logs: Path) -> Server:
    env = ENVS / "mlflow"

    def start(port: int, workers: int, log_file: Path) -> contextlib.AbstractContextManager[Any]:
        argv = [
            str(env / "bin" / "mlflow"),
            "models",
            "serve",
            "-m",
            str(model_dir),
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
        path_env = {"PATH": f"{env / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        return running_server(
            argv, ready_url=f"http://127.0.0.1:{port}/ping", log_file=log_file, env=path_env
        )

    return Server("mlflow", "mlflow models serve", "mlflow", start, "/invocations")


def bentoml_server(model_file: Path, home: Path) -> Server:
    env = ENVS / "bentoml"

    def start(port: int, workers: int, log_file: Path) -> contextlib.AbstractContextManager[Any]:
        argv = [
            str(env / "bin" / "bentoml"),
            "serve",
            "bentoml_service:XGBoostRegressor",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        extra = {
            "PATH": f"{env / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "BENCH_MODEL": str(model_file),
            "BENCH_WORKERS": str(workers),
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "True",
        }
        return running_server(
            argv,
            ready_url=f"http://127.0.0.1:{port}/readyz",
            log_file=log_file,
            env=extra,
            cwd=PEERS_DIR,
        )

    return Server("bentoml", "bentoml serve", "bentoml", start, "/predict")


def shipyard_serve_server(home: Path) -> Server:
    cli = str(Path(sys.executable).with_name("shipyard"))

    def start(port: int, workers: int, log_file: Path) -> contextlib.AbstractContextManager[Any]:
        argv = [cli, "--home", str(home), "serve", ENDPOINT, "--host", "127.0.0.1"]
        argv += ["--port", str(port), "--workers", str(workers)]
        return running_server(argv, ready_url=f"http://127.0.0.1:{port}/readyz", log_file=log_file)

    return Server(
        "shipyard_serve", "shipyard serve", "shipyard", start, f"/v1/endpoints/{ENDPOINT}:predict"
    )


def shipyard_platform_server(home: Path) -> Server:
    cli = str(Path(sys.executable).with_name("shipyard"))

    def start(port: int, workers: int, log_file: Path) -> contextlib.AbstractContextManager[Any]:
        argv = [cli, "up", "--home", str(home), "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--no-demo"]
        return running_server(argv, ready_url=f"http://127.0.0.1:{port}/readyz", log_file=log_file)

    return Server(
        "shipyard_up",
        "shipyard up (platform)",
        "shipyard",
        start,
        f"/v1/endpoints/{ENDPOINT}:predict",
        max_workers=1,
    )


def bench_http(
    servers: list[Server],
    payloads: dict[int, dict[str, bytes]],
    expected: dict[int, np.ndarray],
    *,
    work: Path,
    duration: float,
    warmup: float,
    log: Log,
) -> list[dict[str, Any]]:
    """Every server at c=1 (1 worker) and c=16 (2 workers), for each payload size."""
    script = work / "post.lua"
    script.write_text(WRK_LUA)
    files: dict[tuple[int, str], Path] = {}
    for size, by_fmt in payloads.items():
        for fmt, content in by_fmt.items():
            files[size, fmt] = work / f"body-{fmt}-{size}.json"
            files[size, fmt].write_bytes(content)
    rows: list[dict[str, Any]] = []
    for concurrency, workers in ((1, C1_WORKERS), (16, C16_WORKERS)):
        for server in servers:
            used = min(workers, server.max_workers or workers)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            log_file = work / "logs" / f"{server.name}-w{used}.log"
            log(f"{server.label}: starting with {used} worker(s) on port {port}")
            try:
                with server.start(port, used, log_file):
                    for size in payloads:
                        url = base + server.path
                        body = files[size, server.fmt]
                        got = np.asarray(predictions_of(_post(url, body.read_bytes())))
                        diff = float(np.max(np.abs(got - expected[size])))
                        if got.shape != expected[size].shape or diff > 1e-4:
                            raise BenchmarkInvalid(
                                f"{server.label} answered {got[:3]}… for {size} instance(s), "
                                f"the raw booster {expected[size][:3]}… (max |Δ| {diff:.3g})"
                            )
                        log(f"  c={concurrency}, {size} instance(s): warm-up {warmup:.0f} s")
                        wrk(url, body, connections=concurrency, duration=warmup, script=script)
                        log(f"  c={concurrency}, {size} instance(s): {duration:.0f} s measured")
                        result = wrk(
                            url, body, connections=concurrency, duration=duration, script=script
                        )
                        rows.append(
                            {
                                "server": server.name,
                                "label": server.label,
                                "concurrency": concurrency,
                                "workers": used,
                                "instances": size,
                                "max_abs_diff": diff,
                                "load": machine_load(),
                                **result,
                            }
                        )
            except (RuntimeError, OSError, urllib.error.URLError) as exc:
                log(f"  {server.label} failed: {str(exc)[:2000]}")
                rows.append(
                    {
                        "server": server.name,
                        "label": server.label,
                        "concurrency": concurrency,
                        "workers": used,
                        "instances": None,
                        "error": str(exc)[:2000],
                    }
                )
    return rows


# --------------------------------------------------------------------------------------------
# in process


def bench_in_process(
    ws: Any, booster: Any, rows: np.ndarray, *, calls: int, log: Log
) -> list[dict[str, Any]]:
    """Per-call latency of ``ws.endpoints.predict`` vs the raw booster, interleaved blocks."""
    return [_in_process(ws, booster, rows[:size], calls=calls, log=log) for size in BATCH_SIZES]


def _in_process(ws: Any, booster: Any, rows: np.ndarray, *, calls: int, log: Log) -> dict[str, Any]:
    size = len(rows)
    instances = [dict(zip(NAMES, r, strict=True)) for r in rows.tolist()]
    ready = np.ascontiguousarray(rows, dtype=np.float32)

    def raw() -> Any:
        return booster.inplace_predict(ready)

    def raw_dicts() -> Any:
        matrix = np.array([[inst[n] for n in NAMES] for inst in instances], dtype=np.float32)
        return booster.inplace_predict(matrix)

    def shipyard() -> Any:
        return ws.endpoints.predict(ENDPOINT, instances)

    sides = {"raw": raw, "raw_dicts": raw_dicts, "shipyard": shipyard}
    got = np.asarray(predictions_of(shipyard()))
    diff = float(np.max(np.abs(got - raw())))
    if diff > 1e-5:
        raise BenchmarkInvalid(f"ws.endpoints.predict differs from the raw booster by {diff}")
    times: dict[str, list[float]] = {k: [] for k in sides}
    block = 100
    log(f"in process, {size} instance(s): {calls:,} calls a side in blocks of {block}")
    for _ in range(block):  # warm-up
        for fn in sides.values():
            fn()
    for b in range(max(1, calls // block)):
        order = list(sides) if b % 2 == 0 else list(sides)[::-1]
        for name in order:
            fn = sides[name]
            out = times[name]
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
    stats = {
        name: {
            "p50_ms": 1000 * statistics.median(values),
            "p99_ms": 1000 * percentile(values, 99),
            "calls": len(values),
        }
        for name, values in times.items()
    }
    return {
        "instances": size,
        **stats,
        "overhead_ratio": stats["shipyard"]["p50_ms"] / stats["raw"]["p50_ms"],
        "overhead_ms": stats["shipyard"]["p50_ms"] - stats["raw"]["p50_ms"],
        "vs_dicts_ratio": stats["shipyard"]["p50_ms"] / stats["raw_dicts"]["p50_ms"],
        "max_abs_diff": diff,
        "load": machine_load(),
    }


# --------------------------------------------------------------------------------------------
# batch


def write_batch_source(path: Path, rows: int, log: Log) -> None:
    """rows x 20 FLOAT64 Parquet (row groups of 1M), generated in chunks with a fixed seed."""
    log(f"writing {rows:,} x {FEATURES} to {path} (once; not timed)")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    chunk = 1_000_000
    writer = None
    try:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            rng = np.random.default_rng(start + 1)
            x = rng.standard_normal((n, FEATURES))
            table = pa.table({name: x[:, j] for j, name in enumerate(NAMES)})
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema)
            writer.write_table(table, row_group_size=chunk)
    finally:
        if writer is not None:
            writer.close()
    partial.rename(path)


def bench_batch(
    ws: Any, booster: Any, source: Path, work: Path, *, reps: int, log: Log
) -> dict[str, Any]:
    """``ws.batch_predict`` vs read Parquet + matrix + inplace_predict + write Parquet."""
    raw_out = work / "raw-out.parquet"
    sy_out = work / "shipyard-out"

    def raw_side() -> dict[str, Sample]:
        gc.collect()
        marks = [(time.perf_counter(), time.process_time())]

        def mark() -> None:
            marks.append((time.perf_counter(), time.process_time()))

        table = pq.read_table(source, columns=NAMES)
        mark()
        matrix = float32_matrix(table, NAMES)
        del table
        mark()
        predicted = booster.inplace_predict(matrix)
        mark()
        pq.write_table(pa.table({f"predicted_{LABEL}": predicted}), raw_out)
        mark()
        names = ("read", "matrix", "predict", "write")
        parts = {
            name: Sample(b[0] - a[0], b[1] - a[1])
            for name, a, b in zip(names, marks[:-1], marks[1:], strict=True)
        }
        parts["total"] = Sample(marks[-1][0] - marks[0][0], marks[-1][1] - marks[0][1])
        return parts

    def shipyard_side() -> dict[str, Sample]:
        if sy_out.exists():
            shutil.rmtree(sy_out)
        with Clock() as total:
            job = ws.batch_predict(
                MODEL,
                source=str(source),
                destination=f"{sy_out}/",
                keep_original_columns=False,
            )
            job = ws.jobs.wait(job.id)
        if job.state != "SUCCEEDED":
            raise BenchmarkInvalid(f"batch prediction job {job.id} ended {job.state}: {job.error}")
        return {"total": total.sample}

    series = interleave(
        {"raw": raw_side, "shipyard": shipyard_side},
        reps=reps,
        warmup=0,
        progress=lambda what: log(f"batch {what}"),
    )
    raw_total = series["raw.total"]
    sy_total = series["shipyard.total"]
    # same predictions: compare the sorted values (the parts' order is not the point here)
    mine = pq.read_table(sy_out).column(f"predicted_{LABEL}").to_numpy()
    theirs = pq.read_table(raw_out).column(f"predicted_{LABEL}").to_numpy()
    if len(mine) != len(theirs):
        raise BenchmarkInvalid(f"batch_predict wrote {len(mine):,} rows, raw {len(theirs):,}")
    diff = float(np.max(np.abs(np.sort(mine) - np.sort(theirs))))
    if diff > 1e-4:
        raise BenchmarkInvalid(f"batch_predict's predictions differ from raw by {diff}")
    return {
        "rows": pq.ParquetFile(source).metadata.num_rows,
        "max_abs_diff_sorted": diff,
        "raw": raw_total.to_dict(),
        "raw_parts": {
            k.removeprefix("raw."): v.to_dict()
            for k, v in series.items()
            if k.startswith("raw.") and k != "raw.total"
        },
        "shipyard": sy_total.to_dict(),
        "ratio": sy_total.wall / raw_total.wall,
        "best_ratio": sy_total.low / raw_total.low,
        "target": BATCH_TARGET,
        "passed": sy_total.wall / raw_total.wall <= BATCH_TARGET,
        "load": machine_load(),
    }


# --------------------------------------------------------------------------------------------
# the whole benchmark


def train_and_export(ws: Any, work: Path, log: Log) -> tuple[Any, Path]:
    log(f"CREATE MODEL {MODEL}: {ROUNDS} trees on {TRAIN_ROWS:,} x {FEATURES} (not timed)")
    ws.load_table("bench.t", make_regression_table(TRAIN_ROWS, FEATURES))
    ws.sql(CREATE_SQL)
    booster = ws.models.load(MODEL).model
    if booster.num_boosted_rounds() != ROUNDS or booster.num_features() != FEATURES:
        raise BenchmarkInvalid(
            f"expected {ROUNDS} trees on {FEATURES} features, got "
            f"{booster.num_boosted_rounds()} on {booster.num_features()}"
        )
    exported = booster.copy()
    exported.feature_names = NAMES  # names for the peers' DataFrames; the trees are untouched
    model_file = work / "model.ubj"
    exported.save_model(str(model_file))
    return booster, model_file


def bench_serving(
    *,
    duration: float = 10.0,
    warmup: float = 3.0,
    calls: int = 2000,
    batch_rows: int = BATCH_ROWS,
    batch_reps: int = 3,
    only: set[str] | None = None,
    work_dir: Path | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Run the parts in ``only`` (``inprocess``, ``http``, ``batch``; default all)."""
    parts = only or {"inprocess", "http", "batch"}
    started = time.perf_counter()
    available = shipyard_serving_available()
    results: dict[str, Any] = {
        "settings": {
            "duration_s": duration,
            "warmup_s": warmup,
            "calls": calls,
            "batch_rows": batch_rows,
            "batch_reps": batch_reps,
            "train_rows": TRAIN_ROWS,
            "trees": ROUNDS,
            "features": FEATURES,
            "c1_workers": C1_WORKERS,
            "c16_workers": C16_WORKERS,
        },
        "peers": PEER_PINS,
        "shipyard_available": available,
        "load_start": machine_load(),
    }
    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sy-serving-")))
        else:
            work = work_dir
            work.mkdir(parents=True, exist_ok=True)
        home = work / "home"
        ws = sy.connect(home)
        available["endpoints"] = available["endpoints"] and hasattr(ws, "endpoints")
        available["batch"] = available["batch"] and hasattr(ws, "batch_predict")
        log(f"Shipyard serving pieces present: {available}")
        try:
            booster, model_file = train_and_export(ws, work, log)
            sample = make_regression_table(max(BATCH_SIZES), FEATURES, seed=7)
            # float64 values that are exact in float32: every side predicts on the same numbers
            rows = float32_matrix(sample, NAMES).astype(np.float64)
            expected = {
                size: booster.inplace_predict(rows[:size].astype(np.float32))
                for size in BATCH_SIZES
            }
            if available["endpoints"]:
                ws.endpoints.create(ENDPOINT)
                ws.endpoints.deploy(ENDPOINT, MODEL)
            if "inprocess" in parts:
                if available["endpoints"]:
                    results["inprocess"] = bench_in_process(ws, booster, rows, calls=calls, log=log)
                else:
                    results["inprocess_missing"] = "shipyard.serving.service is not there yet"
            if "batch" in parts:
                if available["batch"]:
                    source = DATA / f"serving-batch-{batch_rows}.parquet"
                    if not source.exists():
                        write_batch_source(source, batch_rows, log)
                    results["batch"] = bench_batch(
                        ws, booster, source, work, reps=batch_reps, log=log
                    )
                else:
                    results["batch_missing"] = "ws.batch_predict is not there yet"
        finally:
            ws.close()  # the servers below open the workspace themselves
        if "http" in parts:
            wrk_path()
            servers: list[Server] = []
            for peer in PEER_PINS:
                ensure_env(peer, log)
            log("logging the model with mlflow.xgboost (MLflow's environment, not timed)")
            logged = subprocess.run(
                [
                    str(ENVS / "mlflow" / "bin" / "python"),
                    str(PEERS_DIR / "mlflow_log_model.py"),
                    str(model_file),
                    str(work / "mlflow"),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            mlflow_model = Path(json.loads(logged.stdout.strip().splitlines()[-1])["path"])
            servers.append(mlflow_server(mlflow_model, work / "logs"))
            servers.append(bentoml_server(model_file, work / "bentoml-home"))
            if available["endpoints"] and available["serve_cli"]:
                servers.append(shipyard_serve_server(home))
            if available["endpoints"]:
                servers.append(shipyard_platform_server(home))
            payloads = {size: bodies(rows[:size]) for size in BATCH_SIZES}
            results["http"] = bench_http(
                servers,
                payloads,
                expected,
                work=work,
                duration=duration,
                warmup=warmup,
                log=log,
            )
            if not (available["endpoints"] and available["serve_cli"]):
                results["http_missing"] = "shipyard serve / endpoints are not there yet"
    results["load_end"] = machine_load()
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["summary"] = summarize(results)
    return results


# --------------------------------------------------------------------------------------------
# output


SHIPYARD_SERVERS = ("shipyard_serve", "shipyard_up")
PEER_SERVERS = ("mlflow", "bentoml")


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The target lines: p99 at c=1, throughput vs the better peer, batch vs raw."""
    lines: list[dict[str, Any]] = []
    http = [r for r in results.get("http", []) if "error" not in r]
    for concurrency in (1, 16):
        for size in BATCH_SIZES:
            cell = {
                r["server"]: r
                for r in http
                if r["concurrency"] == concurrency and r["instances"] == size
            }
            peers = [cell[p] for p in PEER_SERVERS if p in cell]
            best_peer = max(peers, key=lambda r: r["rps"]) if peers else None
            for name in SHIPYARD_SERVERS:
                if name not in cell:
                    continue
                mine = cell[name]
                line: dict[str, Any] = {
                    "name": f"{mine['label']}, c={concurrency}, {size} instance(s)",
                    "p99_ms": mine["p99_ms"],
                    "rps": mine["rps"],
                }
                if best_peer is not None:
                    line["best_peer"] = best_peer["label"]
                    line["rps_ratio"] = mine["rps"] / best_peer["rps"]
                    line["rps_passed"] = line["rps_ratio"] >= RPS_TARGET
                if concurrency == 1:
                    line["p99_passed"] = mine["p99_ms"] <= P99_TARGET_MS
                lines.append(line)
    return lines


def missed(results: dict[str, Any]) -> list[str]:
    """The names of the targets missed (for ``run.py --strict``)."""
    out = [
        line["name"]
        for line in results.get("summary", [])
        if line.get("p99_passed") is False or line.get("rps_passed") is False
    ]
    if results.get("batch", {}).get("passed") is False:
        out.append("batch prediction")
    return out


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def print_tables(console: Console, results: dict[str, Any]) -> None:
    console.print(
        f"[dim]machine: {results['load_start']} at the start, {results['load_end']} at the end; "
        f"model: {ROUNDS} trees, depth 6, {FEATURES} features[/]"
    )
    for item in results.get("inprocess", []):
        table = Table(
            title=f"In process, {item['instances']} instance(s) a call "
            f"({item['shipyard']['calls']:,} calls a side, interleaved; {item['load']})",
            title_justify="left",
        )
        for col in ("Side", "p50 ms", "p99 ms", "p50 vs raw"):
            table.add_column(col, justify="left" if col == "Side" else "right")
        raw = item["raw"]["p50_ms"]
        for key, label in (
            ("shipyard", "ws.endpoints.predict(instances)"),
            ("raw", "Booster.inplace_predict(ready float32 matrix)"),
            ("raw_dicts", "dicts -> float32 matrix -> inplace_predict"),
        ):
            s = item[key]
            table.add_row(
                label, f"{s['p50_ms']:.3f}", f"{s['p99_ms']:.3f}", f"{s['p50_ms'] / raw:.2f}x"
            )
        console.print(table)
        console.print(
            f"  overhead vs raw predict: [bold]{item['overhead_ratio']:.2f}x[/] "
            f"(+{1000 * item['overhead_ms']:.0f} µs a call); vs hand-written dict code "
            f"{item['vs_dicts_ratio']:.2f}x"
        )
    if "inprocess_missing" in results:
        console.print(f"[yellow]in process: not measured[/] ({results['inprocess_missing']})")
    http = results.get("http", [])
    for concurrency in (1, 16):
        for size in BATCH_SIZES:
            cell = [
                r
                for r in http
                if r.get("concurrency") == concurrency and r.get("instances") == size
            ]
            if not cell:
                continue
            peers = [r for r in cell if r["server"] in PEER_SERVERS]
            best = max(peers, key=lambda r: r["rps"]) if peers else None
            table = Table(
                title=f"HTTP, concurrency {concurrency}, {size} instance(s) a request "
                f"({results['settings']['duration_s']:.0f} s each after "
                f"{results['settings']['warmup_s']:.0f} s warm-up, wrk -t1 -c{concurrency})",
                title_justify="left",
            )
            for col in (
                "Server",
                "workers",
                "p50 ms",
                "p99 ms",
                "req/s",
                "errors",
                "rps vs best peer",
            ):
                table.add_column(col, justify="left" if col == "Server" else "right")
            for r in cell:
                ratio = f"{r['rps'] / best['rps']:.2f}x" if best else ""
                table.add_row(
                    r["label"],
                    str(r["workers"]),
                    _ms(r["p50_ms"]),
                    _ms(r["p99_ms"]),
                    f"{r['rps']:,.0f}",
                    str(r["errors"]),
                    ratio,
                )
            console.print(table)
    for r in http:
        if "error" in r:
            console.print(
                f"[red]{r['label']} ({r['workers']} worker(s)) failed:[/] {r['error'][:300]}"
            )
    if "http_missing" in results:
        console.print(f"[yellow]HTTP: Shipyard not measured[/] ({results['http_missing']})")
    if "batch" in results:
        b = results["batch"]
        table = Table(
            title=f"Batch: {b['rows']:,} rows x {FEATURES} from Parquet, predictions to Parquet "
            f"(median of {len(b['raw']['wall_s'])}; {b['load']})",
            title_justify="left",
        )
        for col in ("Side", "s (median)", "min-max", "ratio", "target"):
            table.add_column(col, justify="left" if col == "Side" else "right")
        verdict = "[green]PASS[/]" if b["passed"] else "[red]over[/]"
        table.add_row(
            "ws.batch_predict",
            f"{b['shipyard']['median_s']:.2f}",
            f"{b['shipyard']['min_s']:.2f}-{b['shipyard']['max_s']:.2f}",
            f"[bold]{b['ratio']:.2f}x[/] (best {b['best_ratio']:.2f}x)",
            f"<= {BATCH_TARGET}x {verdict}",
        )
        table.add_row(
            "raw: read + matrix + inplace_predict + write",
            f"{b['raw']['median_s']:.2f}",
            f"{b['raw']['min_s']:.2f}-{b['raw']['max_s']:.2f}",
            "",
            "",
        )
        for part, s in b["raw_parts"].items():
            table.add_row(f"[dim]  {part}[/]", f"[dim]{s['median_s']:.2f}[/]", "", "", "")
        console.print(table)
    if "batch_missing" in results:
        console.print(f"[yellow]batch: not measured[/] ({results['batch_missing']})")
    if results.get("summary"):
        table = Table(title="Targets (issue 5)", title_justify="left")
        for col in ("Shipyard", "p99 ms", "<= 5 ms (c=1)", "req/s", "vs better peer", ">= 2x"):
            table.add_column(col, justify="left" if col == "Shipyard" else "right")
        for line in results["summary"]:
            p99_ok = line.get("p99_passed")
            rps_ok = line.get("rps_passed")
            table.add_row(
                line["name"],
                _ms(line["p99_ms"]),
                "" if p99_ok is None else ("[green]PASS[/]" if p99_ok else "[red]over[/]"),
                f"{line['rps']:,.0f}",
                f"{line['rps_ratio']:.2f}x ({line['best_peer']})" if "rps_ratio" in line else "",
                "" if rps_ok is None else ("[green]PASS[/]" if rps_ok else "[red]under[/]"),
            )
        console.print(table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("serving (--only serving)")
    group.add_argument("--duration", type=float, default=10.0, help="seconds measured per cell")
    group.add_argument("--http-warmup", type=float, default=3.0, help="warm-up seconds per cell")
    group.add_argument("--calls", type=int, default=2000, help="in-process calls per side")
    group.add_argument("--batch-rows", type=int, default=BATCH_ROWS, help="batch Parquet rows")
    group.add_argument("--batch-reps", type=int, default=3, help="batch repetitions per side")
    group.add_argument(
        "--parts",
        default="inprocess,http,batch",
        help="comma-separated parts of the serving benchmark: inprocess, http, batch",
    )


def run_from_args(args: argparse.Namespace, log: Log) -> dict[str, Any]:
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    unknown = parts - {"inprocess", "http", "batch"}
    if unknown:
        raise SystemExit(f"--parts: unknown {sorted(unknown)}; choose from inprocess, http, batch")
    return bench_serving(
        duration=args.duration,
        warmup=args.http_warmup,
        calls=args.calls,
        batch_rows=args.batch_rows,
        batch_reps=args.batch_reps,
        only=parts,
        log=log,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short cells, 1M batch rows")
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.http_warmup, args.calls = 3.0, 1.0, 500
        args.batch_rows, args.batch_reps = min(args.batch_rows, 1_000_000), 1
    console = Console(width=150) if not Console().is_terminal else Console()
    try:
        results = run_from_args(args, lambda m: console.log(f"[dim]{m}[/]", highlight=False))
    except BenchmarkInvalid as exc:
        console.print(f"[red]benchmark invalid:[/] {exc}")
        return 1
    print_tables(console, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
