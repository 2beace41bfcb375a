"""The model a replica serves, and in-place swaps to another registered version.

A new version is loaded next to the current one; only when it loaded does the slot switch,
so requests never wait and a failed load leaves the old version serving (and reported).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import mlflow.pyfunc

from services.inference_log import MODEL_VERSION
from services.model import ServiceModel
from services.registry import model_uri
from services.settings import get_settings

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    version: str
    model: ServiceModel


def load_version(service: str, version: str) -> LoadedModel:
    """Load version `version` of registered model `service` from the MLflow registry."""
    mlflow.set_tracking_uri(get_settings().tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(model_uri(service, version))
    model = pyfunc.unwrap_python_model()
    if not isinstance(model, ServiceModel):
        raise TypeError(f"{service} v{version} is not a ServiceModel ({type(model).__name__})")
    return LoadedModel(version, model)


class ModelSlot:
    """Current model + the version asked for; `error` says why they differ."""

    def __init__(self, service: str) -> None:
        self.service = service
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
                loaded = await asyncio.to_thread(load_version, self.service, self.desired)
            except Exception as exc:  # any load failure: keep serving what we have
                self.error = f"loading {self.service} v{self.desired} failed: {exc}"
                log.error(self.error)
                if self.current is None:
                    raise
                return
            self.current, self.error = loaded, None
            log.info("%s now serves v%s", self.service, loaded.version)

    def health(self) -> dict[str, object]:
        return {
            "service": self.service,
            MODEL_VERSION: self.current.version if self.current else None,
            "desired_version": self.desired,
            "ready": self.ready and self.error is None,
            "error": self.error,
        }
