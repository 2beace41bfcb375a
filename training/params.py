"""Typed view of one service's entry in params.yaml."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.settings import repo_root
from services.spec import ServiceSpec

PARAMS_FILE = "params.yaml"


class ParamsError(ValueError):
    """A params.yaml entry that cannot be used; one line naming the file, service and field."""


class GenerateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: int = Field(ge=100)
    seed: int


class SplitParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    valid: float = Field(gt=0, lt=0.5)
    test: float = Field(gt=0, lt=0.5)
    seed: int


class PipelineParams(BaseModel):
    """What the pipeline stages of one service read from params.yaml."""

    model_config = ConfigDict(extra="forbid")
    generate: GenerateParams | None = None  # only services with a generate.py need it
    split: SplitParams
    reference_rows: int = Field(ge=100)


def _entries() -> dict[str, Any]:
    path = repo_root() / PARAMS_FILE
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{PARAMS_FILE}: file not found in {path.parent}") from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise ParamsError(f"{PARAMS_FILE}: not valid YAML: {problem}") from None
    entries = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise ParamsError(f"{PARAMS_FILE}: services: must be a mapping of service name -> params")
    return entries


def load_params(service: str) -> PipelineParams:
    """The params.yaml entry of `service`; any problem is one line naming the field."""
    entries = _entries()
    if service not in entries:
        raise ParamsError(f"{PARAMS_FILE}: services.{service} is missing")
    try:
        return PipelineParams.model_validate(entries[service])
    except ValidationError as exc:
        problems = [
            f"services.{'.'.join(str(p) for p in (service, *err['loc']))}: {err['msg']}"
            for err in exc.errors(include_url=False)
        ]
        raise ParamsError(f"{PARAMS_FILE}: " + "; ".join(problems)) from None


def params_hash(spec: ServiceSpec, params: PipelineParams) -> str:
    """Stable hash of everything that shapes the model: spec model settings + split."""
    payload = {"model": spec.model.model_dump(), "split": params.split.model_dump()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
