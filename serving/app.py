"""Ray Serve application of one service: a real-time FastAPI ingress and a batch deployment.

`build_app` is the `import_path` target of every application in the manifest; its `args` (the
service and its request limits) are all it needs: `service.yaml` is not read here. Both
deployments take the model version from `user_config` and swap it in `reconfigure()`; the
request schema, categories, ranges, threshold and OpenAPI document come from the spec that
travels with the served version. During a rollout the real-time deployment also holds the
candidate (`user_config.rollout`): a canary answers its share of /predict and /invocations, a
shadow scores its share after the stable answer left and only logs; /batch stays on stable.
(No `from __future__ import annotations`: FastAPI must see real types in classes that Ray
pickles by value.)
"""

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from services.inference_log import (
    CANARY,
    ENDPOINT,
    FEEDBACK_KIND,
    MODEL_VERSION,
    PREDICTIONS_KIND,
    REQUEST_ID,
    SERVICE,
    SHADOW,
    STABLE,
    TIMESTAMP,
    VARIANT,
    Endpoint,
    Variant,
    with_columns,
)
from services.settings import get_settings
from services.spec import RequestMerging
from serving.api import (
    JSON_TYPE,
    PARQUET_TYPE,
    RequestError,
    ServiceApi,
    answers_parquet,
    check_size,
    new_request,
    now,
    row_id_column,
    row_ids,
)
from serving.auth import ApiKeyAuth
from serving.deployments import BATCH, MODEL_VERSION_KEY, REALTIME, REQUEST_MERGING_KEY
from serving.log_writer import log_writer, recover_in_background
from serving.merging import CallMerger
from serving.model_slot import LoadedModel, ModelSlot
from serving.protocol import PREDICTIONS
from serving.routing import ROLLOUT_KEY, ROUTING_HEADER, RolloutTraffic, Route, Router
from serving.telemetry import RequestTelemetry, started_at

log = logging.getLogger(__name__)
Parse = Callable[[ServiceApi, bytes], list[dict[str, Any]]]  # body -> validated records
Shape = Callable[[str, list[dict[str, Any]]], dict[str, Any]]  # version, predictions -> body
Call = tuple[LoadedModel, list[dict[str, Any]]]  # a request's records and the version parsing them


class AppArgs(BaseModel):
    """`args` of an application in the manifest (rendered from the service's deployment
    settings by `mlops render manifest`)."""

    model_config = ConfigDict(extra="forbid")
    service: str
    max_request_rows: int = Field(ge=1)
    max_batch_rows: int = Field(ge=1)
    request_merging: RequestMerging = RequestMerging()


def _encode(payload: Any) -> bytes:
    """JSON bytes (orjson: ~10x json.dumps on 100k-row batch responses; NaN becomes null)."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def _encode_parquet(table: pa.Table) -> bytes:
    """Parquet bytes of an answer table (far smaller and cheaper than its JSON). Only the
    version repeats: a dictionary for the other columns (row ids, outputs) and statistics
    would cost more than they save in a table that is read whole once."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, use_dictionary=[MODEL_VERSION], write_statistics=False)
    return sink.getvalue().to_pybytes()


def _json(payload: Any, status: int = 200) -> Response:
    return Response(_encode(payload), status_code=status, media_type=JSON_TYPE)


def _error(exc: RequestError) -> Response:
    response = _json(exc.body(), exc.status)
    response.headers.update(getattr(exc, "headers", {}))  # 401: WWW-Authenticate
    return response


def _predict_body(version: str, predictions: list[dict[str, Any]]) -> dict[str, Any]:
    return {MODEL_VERSION: version, PREDICTIONS: predictions}


def _invocations_body(version: str, predictions: list[dict[str, Any]]) -> dict[str, Any]:
    """MLflow's scoring answer: predictions without request ids."""
    return {PREDICTIONS: [{k: v for k, v in p.items() if k != REQUEST_ID} for p in predictions]}


def score_merged(calls: list[Call]) -> list[np.ndarray]:
    """Raw model output per merged call; calls parsed by one version are scored by it in one
    model call (during a swap a merge may hold two)."""
    out: list[np.ndarray] = []
    for _, group in itertools.groupby(calls, key=lambda call: id(call[0])):
        items = list(group)
        raw = items[0][0].model.predict_records([row for _, batch in items for row in batch])
        start = 0
        for _, batch in items:
            out.append(raw[start : start + len(batch)])
            start += len(batch)
    return out


def _replica_id() -> str:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a replica (unit tests)
        return "local"


class _Replica:
    """State every replica of a service holds: its model slot (the served version, with the
    spec it was trained with), its log writer and its request telemetry."""

    def __init__(self, service: str, max_rows: int, endpoint: str) -> None:
        self.service = service
        self.slot = ModelSlot(service, max_rows)
        writer = f"{endpoint}-{_replica_id()}"
        self.predictions_log = log_writer(service, PREDICTIONS_KIND, writer)
        self.telemetry = RequestTelemetry(service, writer, get_settings().request_telemetry)
        recover_in_background()  # what replicas killed on this node left

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """The manifest's `user_config`: swap to its `model_version` in place."""
        await self.slot.switch_to(config.get(MODEL_VERSION_KEY))

    def served(self) -> LoadedModel:
        """The version that answers now (its model and its spec's request rules)."""
        if self.slot.current is None:
            raise RequestError(
                503,
                f"{self.service}: no model loaded ({self.slot.error or 'no version deployed'})",
            )
        return self.slot.current

    def version_now(self, served: LoadedModel | None = None) -> str | None:
        """The version a request was (or would have been) answered by."""
        current = served or self.slot.current
        return None if current is None else current.version

    def row_meta(
        self,
        version: str,
        endpoint: Endpoint,
        record: dict[str, Any],
        variant: Variant = STABLE,
    ) -> dict[str, Any]:
        """Columns every logged row of one answered request shares (its request record too)."""
        return {
            TIMESTAMP: now(),
            SERVICE: self.service,
            MODEL_VERSION: version,
            ENDPOINT: endpoint,
            VARIANT: variant,
            **record,
        }

    def log_records(
        self,
        records: list[dict[str, Any]],
        predictions: list[dict[str, Any]],
        meta: dict[str, Any],
    ) -> None:
        """Append served rows (features + request id + prediction + `meta`) to the log."""
        self.predictions_log.append_rows(
            [
                {**record, **meta, **prediction}
                for record, prediction in zip(records, predictions, strict=True)
            ]
        )


def realtime_deployment(args: AppArgs) -> Any:
    """The ingress deployment: predict, invocations, feedback, health; /batch forwards."""
    # OpenAPI is served by a route of its own: the document is completed with the served
    # version's request schema (routes read raw bytes for speed, so FastAPI cannot infer it).
    api = FastAPI(
        title=f"{args.service} inference API",
        version="1",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )

    def openapi_document(served: LoadedModel) -> dict[str, Any]:
        spec = served.model.spec
        document = get_openapi(
            title=api.title,
            version=served.version,
            description=spec.description or f"Predictions of {spec.name}.",
            routes=api.routes,
        )
        document["paths"]["/predict"]["post"].update(served.api.openapi_body())
        return document

    @serve.deployment(name=REALTIME)
    @serve.ingress(api)
    class Realtime(_Replica):
        def __init__(self, app_args: dict[str, Any], batch: DeploymentHandle) -> None:
            settings = AppArgs.model_validate(app_args)
            super().__init__(settings.service, settings.max_request_rows, "predict")
            self.batch = batch
            self.max_batch_rows = settings.max_batch_rows
            self.merging = settings.request_merging
            self._score = CallMerger(
                score_merged, self.merging.max_requests, self.merging.wait_ms / 1_000
            )
            self.auth = ApiKeyAuth.from_env()  # MLOPS_API_KEY; off when unset
            self.feedback_log = log_writer(self.service, FEEDBACK_KIND, f"feedback-{_replica_id()}")
            self.candidate = ModelSlot(self.service, settings.max_request_rows)
            self.router = Router(None)
            self._shadows: set[asyncio.Task[None]] = set()

        async def reconfigure(self, config: dict[str, Any]) -> None:
            """The stable version, then the rollout's candidate (loaded before it gets traffic;
            one that fails to load gets none, and health says why)."""
            raw = config.get(ROLLOUT_KEY)
            traffic = None if raw is None else RolloutTraffic.parse(raw, ROLLOUT_KEY)
            stable = config.get(MODEL_VERSION_KEY)
            if self.candidate.current and self.candidate.current.version == str(stable):
                self.slot.adopt(self.candidate.current)  # completion: the candidate is loaded
            await super().reconfigure(config)
            if traffic is None:
                self.router = Router(None)
                self.candidate = ModelSlot(self.service, self.slot.max_rows)
                return
            self.router = Router(None)  # no candidate traffic while it loads
            with contextlib.suppress(Exception):  # recorded in the slot's error
                await self.candidate.switch_to(traffic.candidate)
            if self.candidate.current and self.candidate.current.version == traffic.candidate:
                self.router = Router(traffic)

        def _admit(self, request: Request) -> LoadedModel:
            """The version that will answer an authenticated request (401, then 503)."""
            self.auth.check(request.headers)
            return self.served()

        def _answering(self, request: Request, route: Route) -> tuple[LoadedModel, Variant]:
            """The version (and variant) that answers an authenticated request on `route`."""
            stable = self._admit(request)
            candidate = self.candidate.current
            if route.answer == CANARY and candidate is not None:
                return candidate, CANARY
            return stable, STABLE

        def _shadow(
            self, body: bytes, endpoint: Endpoint, parse: Parse, shape: Shape, key: str
        ) -> None:
            """Score an answered request's body with the candidate, off its latency path."""
            candidate = self.candidate.current
            if candidate is None:
                return
            task = asyncio.create_task(
                self._score_shadow(candidate, body, endpoint, parse, shape, key)
            )
            self._shadows.add(task)
            task.add_done_callback(self._shadows.discard)

        async def _score_shadow(
            self,
            candidate: LoadedModel,
            body: bytes,
            endpoint: Endpoint,
            parse: Parse,
            shape: Shape,
            key: str,
        ) -> None:
            """The candidate's answer to request `key`, logged under the same row ids; its
            latency covers what the stable's does (parse, score, encode), not the wait."""
            started = time.perf_counter()
            try:
                records = parse(candidate.api, body)
                # in a thread: a slow candidate never holds the loop that answers requests
                raw = await asyncio.to_thread(candidate.model.predict_records, records)
                predictions = candidate.api.predictions(raw, row_ids(key, len(records)))
                _encode(shape(candidate.version, predictions))  # the answer it would give
                record = self.telemetry.answered(
                    endpoint, candidate.version, key, len(records), started, SHADOW
                )
                meta = self.row_meta(candidate.version, endpoint, record, SHADOW)
                self.log_records(records, predictions, meta)
            except Exception as exc:  # a shadow never fails the answered request
                self.telemetry.refused(endpoint, candidate.version, exc, started, SHADOW)

        async def _read(self, request: Request, max_rows: int | None = None) -> bytes:
            """The body, refused (413) before reading when its declared size is too big."""
            if max_rows is not None:
                check_size(request.headers.get("content-length"), max_rows)
            return await request.body()

        async def _realtime(
            self, request: Request, endpoint: Endpoint, parse: Parse, shape: Shape
        ) -> Response:
            """Admit, read, parse, score and answer one request; every outcome is recorded,
            its latency measured from here to the encoded response."""
            started = time.perf_counter()
            route = self.router.route(request.headers.get(ROUTING_HEADER))
            served: LoadedModel | None = None
            variant: Variant = STABLE
            try:
                served, variant = self._answering(request, route)
                body = await self._read(request, served.api.max_rows)
                records = parse(served.api, body)
                raw = await self._score((served, records))
                key = new_request()
                predictions = served.api.predictions(raw, row_ids(key, len(records)))
                response = _json(shape(served.version, predictions))
                record = self.telemetry.answered(
                    endpoint, served.version, key, len(records), started, variant
                )
                meta = self.row_meta(served.version, endpoint, record, variant)
                self.log_records(records, predictions, meta)
                if route.shadow:
                    self._shadow(body, endpoint, parse, shape, key)
                return response
            except (Exception, asyncio.CancelledError) as exc:
                self.telemetry.refused(endpoint, self.version_now(served), exc, started, variant)
                if isinstance(exc, RequestError):
                    return _error(exc)
                raise

        @api.post(
            "/predict",
            summary="Score 1..max_request_rows records",
            response_description="Model version and one prediction per record",
        )
        async def predict(self, request: Request) -> Response:
            return await self._realtime(request, "predict", ServiceApi.parse_records, _predict_body)

        @api.post("/invocations", summary="MLflow scoring protocol")
        async def invocations(self, request: Request) -> Response:
            return await self._realtime(
                request, "invocations", ServiceApi.parse_invocations, _invocations_body
            )

        @api.post("/batch", summary="Score a large JSON, CSV or Parquet table")
        async def batch(self, request: Request) -> Response:
            """Forwarded to the Batch deployment, which records what it answers or refuses;
            refusals here (401, 413) and a Batch replica that never answered are recorded here."""
            started, arrived = time.perf_counter(), time.time()
            try:
                self.auth.check(request.headers)
                body = await self._read(request, self.max_batch_rows)
                content_type = request.headers.get("content-type", JSON_TYPE)
                accept = request.headers.get("accept")
                status, answer, media = await self.batch.score.remote(
                    body, content_type, arrived, accept
                )
            except (Exception, asyncio.CancelledError) as exc:
                self.telemetry.refused("batch", self.version_now(), exc, started)
                if isinstance(exc, RequestError):
                    return _error(exc)
                raise
            return Response(answer, status_code=status, media_type=media)

        @api.post("/feedback", status_code=202, summary="Record the true label of a prediction")
        async def feedback(self, request: Request) -> Response:
            try:
                served = self._admit(request)
                item = served.api.parse_feedback(await self._read(request))
            except RequestError as exc:
                return _error(exc)
            self.feedback_log.append_rows([{**item, TIMESTAMP: now(), SERVICE: self.service}])
            return _json({"accepted": True, REQUEST_ID: item[REQUEST_ID]}, 202)

        @api.get("/openapi.json", include_in_schema=False)
        async def openapi_json(self) -> Response:
            try:
                return _json(openapi_document(self.served()))
            except RequestError as exc:
                return _error(exc)

        @api.get("/docs", include_in_schema=False)
        async def docs(self, request: Request) -> Response:
            root = request.scope.get("root_path", "")
            return get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title=api.title)

        @api.get("/health", summary="Model version and readiness of the answering replica")
        async def health(self) -> Response:
            body = self.slot.health() | {
                "replica": _replica_id(),
                REQUEST_MERGING_KEY: self.merging.model_dump(),
            }
            if self.candidate.desired is not None:
                body[ROLLOUT_KEY] = self.candidate.health() | {
                    "traffic": None if self.router.traffic is None else self.router.traffic.config()
                }
            return _json(body, 200 if body["ready"] else 503)

        def __del__(self) -> None:
            self.predictions_log.close()
            self.feedback_log.close()
            self.telemetry.close()

    return Realtime


@serve.deployment(name=BATCH)
class Batch(_Replica):
    """Large tables, scored in one call; scales to zero when idle."""

    def __init__(self, app_args: dict[str, Any]) -> None:
        settings = AppArgs.model_validate(app_args)
        super().__init__(settings.service, settings.max_batch_rows, "batch")

    def score(
        self,
        body: bytes,
        content_type: str,
        arrived: float | None = None,
        accept: str | None = None,
    ) -> tuple[int, bytes, str]:
        """Status, encoded answer and its media type: bytes cross the handle far cheaper than
        100k dicts. The answer is JSON, or Parquet when `accept` names it (its columns: row ids,
        outputs, version); refusals are always JSON.

        A plain method, so Ray Serve runs it in its thread pool: XGBoost releases the GIL, and
        one request's prediction overlaps the other's parsing and encoding (+30% rows/s).
        The request's latency runs from `arrived` (wall clock, the ingress's arrival).
        """
        started = time.perf_counter() if arrived is None else started_at(arrived)
        served: LoadedModel | None = None
        try:
            served = self.served()
            frame = served.api.parse_table(body, content_type)
            model = served.model
            raw = model.predict_matrix(model.encoder.encode_frame(frame))
            key = new_request()
            ids = row_id_column(key, len(frame))
            outputs = {REQUEST_ID: ids, **served.api.prediction_columns(raw)}
            if answers_parquet(accept):
                answer = _encode_parquet(
                    with_columns(pa.table(outputs), {MODEL_VERSION: served.version})
                )
                media = PARQUET_TYPE
            else:
                predictions = served.api.predictions(raw, ids.to_pylist())
                answer = _encode(_predict_body(served.version, predictions))
                media = JSON_TYPE
            record = self.telemetry.answered("batch", served.version, key, len(frame), started)
            meta = self.row_meta(served.version, "batch", record)
            self.predictions_log.append_frame(with_columns(frame, outputs | meta))
            return 200, answer, media
        except Exception as exc:  # answered as JSON: the ingress must not record it again
            status = self.telemetry.refused("batch", self.version_now(served), exc, started)
            if isinstance(exc, RequestError):
                return status, _encode(exc.body()), JSON_TYPE
            log.exception("%s: /batch failed", self.service)
            error = {"error": f"internal error ({type(exc).__name__})"}
            return status, _encode(error), JSON_TYPE

    def __del__(self) -> None:
        self.predictions_log.close()
        self.telemetry.close()


def build_app(args: dict[str, Any]) -> Application:
    """Application of one service (the manifest's `import_path`)."""
    settings = AppArgs.model_validate(args)
    plain = settings.model_dump()
    return realtime_deployment(settings).bind(plain, Batch.bind(plain))
