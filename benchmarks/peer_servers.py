"""The servers a platform engineer weighs against Ray Serve, on the serving benchmark's model.

Each peer scores the same XGBoost booster file (binary:logistic, float32 features already
encoded as one dense vector) with one thread per process and one worker process per core
(MLServer: see its `setup`), its access log off, in its own environment pinned apart from the
project's lock (benchmarks/peers/<folder>/: requirements.txt and what runs there, .venv made
by uv):

    with running(peer, booster, port) as url:
        run_wrk(peer.name, url, peer.body(row), connections, duration_s)
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.pinned_env import pinned_python
from benchmarks.servers import server

PEERS_DIR = Path(__file__).resolve().parent / "peers"
WORKERS = 2  # one process per core of the benchmark machine, as the other servers get
MODEL = "model"  # the model's name in KServe's and MLServer's URLs
HOST = "127.0.0.1"
ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # XGBoost's nthread where a peer cannot set it
READY_TIMEOUT_S = 180.0

Payload = dict[str, Any] | list[Any]


@dataclass(frozen=True)
class Launch:
    """The command that starts a peer and the environment it needs besides the caller's."""

    command: list[str]
    env: dict[str, str]


# (the peer's folder, the booster file, the HTTP port, a scratch folder for the run)
Launcher = Callable[[Path, Path, int, Path], Launch]


def bentoml_request(row: list[float]) -> Payload:
    """The API's signature `predict(self, data: np.ndarray)`: one field, a 2-D array."""
    return {"data": [row]}


def bentoml_reply(reply: Any) -> list[float]:
    return list(reply)


def v1_request(row: list[float]) -> Payload:
    """KServe's V1 protocol (TensorFlow Serving's): a list of instances."""
    return {"instances": [row]}


def v1_reply(reply: Any) -> list[float]:
    return list(reply["predictions"])


def v2_request(row: list[float]) -> Payload:
    """The Open Inference Protocol (V2): one FP32 tensor of shape [1, features]."""
    tensor = {"name": "input-0", "shape": [1, len(row)], "datatype": "FP32", "data": row}
    return {"inputs": [tensor]}


def v2_reply(reply: Any) -> list[float]:
    return list(reply["outputs"][0]["data"])


@dataclass(frozen=True)
class Wire:
    """A request format: the predict URL's path, the body for one row, the predictions out of
    a response."""

    path: str
    request: Callable[[list[float]], Payload]
    reply: Callable[[Any], list[float]]


BENTOML_API = Wire("/predict", bentoml_request, bentoml_reply)
V1 = Wire(f"/v1/models/{MODEL}:predict", v1_request, v1_reply)
V2 = Wire(f"/v2/models/{MODEL}/infer", v2_request, v2_reply)


def bentoml_launch(folder: Path, booster: Path, port: int, scratch: Path) -> Launch:
    """`bentoml serve` of service.py's Scorer; BentoML's home in the scratch folder."""
    command = [str(folder / ".venv" / "bin" / "bentoml"), "serve", "service:Scorer"]
    command += ["--working-dir", str(folder), "--host", HOST, "--port", str(port)]
    env = {
        "MLOPS_BENCH_BOOSTER": str(booster),
        "BENTOML_HOME": str(scratch),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    return Launch(command, env)


def kserve_launch(folder: Path, booster: Path, port: int, scratch: Path) -> Launch:
    """KServe's ModelServer running server.py's model, REST only, no per-request log line."""
    command = [str(folder / ".venv" / "bin" / "python"), str(folder / "server.py")]
    command += ["--booster", str(booster), "--model_name", MODEL, "--http_port", str(port)]
    command += ["--workers", str(WORKERS), "--enable_grpc", "false"]
    command += ["--enable_latency_logging", "false"]  # access log: server.py
    return Launch(command, {})


def mlserver_launch(folder: Path, booster: Path, port: int, scratch: Path) -> Launch:
    """`mlserver start` of a model repository made in the scratch folder: the folder's
    settings.json with this run's ports and folders, its model-settings.json beside the
    booster (linked as model.ubj)."""
    from mlops.sandbox import free_port

    settings = json.loads((folder / "settings.json").read_text()) | {
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "metrics_dir": str(scratch / "metrics"),
        "environments_dir": str(scratch / "environments"),
    }
    (scratch / "settings.json").write_text(json.dumps(settings))
    shutil.copy(folder / "model-settings.json", scratch)
    (scratch / "model.ubj").symlink_to(booster)
    return Launch([str(folder / ".venv" / "bin" / "mlserver"), "start", str(scratch)], {})


@dataclass(frozen=True)
class Peer:
    """A peer server: its row in RESULTS.md, its folder under benchmarks/peers, what it does
    per request, how it is run, its request format and how it is started."""

    name: str
    folder: str
    per_request: str
    setup: str  # processes, settings chosen and why, versions
    wire: Wire
    launch: Launcher

    @property
    def home(self) -> Path:
        return PEERS_DIR / self.folder

    @property
    def path(self) -> str:
        """The predict URL's path."""
        return self.wire.path

    def body(self, row: list[float]) -> str:
        """The JSON body its users send for one encoded row."""
        return json.dumps(self.wire.request([float(value) for value in row]))

    def predictions(self, response: str | bytes) -> list[float]:
        """The predictions in one of its JSON responses."""
        return [float(value) for value in self.wire.reply(json.loads(response))]


KSERVE_SETUP = (
    f"kserve.ModelServer --workers {WORKERS}: a parent process binds the port and spawns "
    f"{WORKERS} uvicorn worker processes sharing it (it restarts one that misses its 5 s "
    "ping while starting, which happens on 2 cores: the yielded URL may predict before both "
    "have settled); gRPC off; xgboost 3.2.0 (KServe's "
    "xgbserver pins 2.1 and is not on PyPI: benchmarks/peers/kserve/server.py does what its "
    "model does)."
)
KSERVE_PER_REQUEST = (
    "FastAPI parses the JSON body{parse}, KServe's get_predict_input turns it into a numpy "
    "array, xgbserver's predict builds an xgb.DMatrix (nthread 1; given the booster's feature "
    "names and types, which xgbserver's own code omits and this booster requires) and calls "
    "Booster.predict, "
    "and get_predict_response encodes {reply}; its Prometheus histograms and timing "
    "middleware stay on, its access and latency log lines are off."
)


def kserve_peer(protocol: str, wire: Wire, parsed: str, encoded: str) -> Peer:
    """KServe's model server answering one of its protocols: `parsed` says how the body is
    read, `encoded` what the response is."""
    return Peer(
        name=f"KServe 0.21.0 ({protocol} protocol)",
        folder="kserve",
        per_request=KSERVE_PER_REQUEST.format(parse=parsed, reply=encoded),
        setup=KSERVE_SETUP,
        wire=wire,
        launch=kserve_launch,
    )


PEERS: tuple[Peer, ...] = (
    Peer(
        name="BentoML 1.4.40",
        folder="bentoml",
        per_request=(
            "BentoML validates the JSON body against the API's signature (a pydantic model "
            "with one np.ndarray field), awaits the async API, which calls "
            "Booster.inplace_predict (nthread 1) on the event loop, and serializes the "
            "returned ndarray as a JSON list; its metrics and OpenTelemetry middleware stay "
            "on, its access log is off."
        ),
        setup=(
            f"bentoml serve of @bentoml.service(workers={WORKERS}): {WORKERS} worker processes "
            "sharing the port under BentoML's process supervisor; xgboost 3.2.0."
        ),
        wire=BENTOML_API,
        launch=bentoml_launch,
    ),
    kserve_peer("V1", V1, " (`instances`)", '{"predictions": [...]}'),
    kserve_peer("V2", V2, " into KServe's InferRequest (the V2 tensor)", "an InferResponse (FP32)"),
    Peer(
        name="MLServer 1.7.1 (mlserver-xgboost)",
        folder="mlserver",
        per_request=(
            "MLServer validates the JSON body into its pydantic InferenceRequest, "
            "mlserver-xgboost decodes the tensor with the NumpyRequestCodec, calls the sklearn "
            "interface's predict (XGBRegressor.predict: inplace_predict underneath, one OpenMP "
            "thread) in the server process and encodes an InferenceResponse; its metrics stay "
            "on, its access log is off (debug false)."
        ),
        setup=(
            "mlserver start with parallel_workers 0 (peers/mlserver/settings.json): MLServer "
            "serves HTTP from one process whatever the setting; parallel_workers only moves "
            "inference into a pool of processes fed through multiprocessing queues (request "
            "and response pickled per call). With a booster this cheap the HTTP process is the "
            "bottleneck and the hop costs more than the pool spreads (fewer requests/s with "
            "1, 2 or 3 pool workers than with 0 on 2 cores), so inference stays in the server "
            "process: the best MLServer does with 2 cores for this model. "
            "uvloop 0.21 (MLServer 1.7.1's pool workers fail on uvloop >= 0.22); xgboost 3.2.0."
        ),
        wire=V2,
        launch=mlserver_launch,
    ),
)


def peer_python(peer: Peer) -> Path:
    """The interpreter of the peer's environment, created or brought to its pinned set."""
    return pinned_python(peer.home)


def _wait_predicting(url: str, body: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until `url` answers `body` with 200: a peer's port may answer before its model is
    loaded (MLServer starts its HTTP server while it loads)."""
    deadline = time.monotonic() + timeout_s
    headers = {"content-type": "application/json"}
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, content=body, headers=headers, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not predict within {timeout_s:.0f} s")


@contextmanager
def running(peer: Peer, booster: Path, port: int) -> Iterator[str]:
    """The peer serving `booster` on 127.0.0.1:`port` with its workers, until it predicts;
    yields the predict URL; the whole process group is stopped afterwards."""
    import xgboost as xgb

    peer_python(peer)
    url = f"http://{HOST}:{port}{peer.path}"
    probe = peer.body([0.0] * xgb.Booster(model_file=str(booster)).num_features())
    with tempfile.TemporaryDirectory(prefix=f"peer-{peer.folder}-") as scratch:
        launch = peer.launch(peer.home, booster.resolve(), port, Path(scratch))
        with server(launch.command, f"http://{HOST}:{port}/", launch.env | ONE_THREAD):
            _wait_predicting(url, probe)
            yield url
