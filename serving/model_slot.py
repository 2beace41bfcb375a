"""The model a replica serves, and in-place swaps to another registered version.

A version is self-contained: the spec it was trained with travels in the model, and the
request rules (schema, categories, ranges), encoder and decision threshold of a loaded
version all come from it, never from `service.yaml`. Versions load from the node's model
cache (services/model_cache.py: MLflow only on a miss). A new version is loaded next to the
current one; only when it loaded does the slot switch, so requests never wait and a failed
load leaves the old version serving (and reported).

Once a version is in place, every object the process holds (imports, Ray's state, the model)
is frozen out of Python's cyclic collector (`gc.freeze`): a full collection then walks only
what requests allocate, instead of pausing a request for the whole heap
(benchmarks/REQUEST_STALLS.md measures both).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass

from services.inference_log import MODEL_VERSION
from services.model_cache import load_cached
from services.scoring import ScoringModel
from serving.api import ServiceApi

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A registered version with the request rules of its own spec."""

    version: str
    model: ScoringModel
    api: ServiceApi


def load_version(service: str, version: str, max_rows: int) -> LoadedModel:
    """Load version `version` of registered model `service` (from the node's model cache);
    `max_rows`: the deployment's request limit (from the manifest)."""
    model = load_cached(service, version)
    return LoadedModel(version, model, ServiceApi(model.spec, max_rows))


class ModelSlot:
    """Current model + the version asked for; `error` says why they differ."""

    def __init__(self, service: str, max_rows: int) -> None:
        self.service, self.max_rows = service, max_rows
        self.current: LoadedModel | None = None
        self.desired: str | None = None
        self.error: str | None = None
        self._lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return self.current is not None

    async def switch_to(self, version: str | None) -> None:
        """Load `version` off the event loop, then swap. Raises only if nothing can serve."""
        async with self._lock:
            self.desired = None if version is None else str(version)
            if self.desired is None or (self.current and self.current.version == self.desired):
                self.error = None
                return
            try:
                loaded = await asyncio.to_thread(
                    load_version, self.service, self.desired, self.max_rows
                )
            except Exception as exc:  # any load failure: keep serving what we have
                self.error = f"loading {self.service} v{self.desired} failed: {exc}"
                log.error(self.error)
                if self.current is None:
                    raise
                return
            self.current, self.error = loaded, None
            gc.freeze()
            log.info("%s now serves v%s", self.service, loaded.version)

    def adopt(self, loaded: LoadedModel) -> None:
        """Serve a version another slot already loaded (a rollout's candidate, on completion)."""
        self.current, self.desired, self.error = loaded, loaded.version, None

    def health(self) -> dict[str, object]:
        return {
            "service": self.service,
            MODEL_VERSION: self.current.version if self.current else None,
            "runtime": self.current.model.runtime if self.current else None,
            "desired_version": self.desired,
            "ready": self.ready and self.error is None,
            "error": self.error,
        }
