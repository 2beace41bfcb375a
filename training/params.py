"""Typed view of one service's entry in params.yaml."""

from __future__ import annotations

import hashlib
import json

import yaml
from pydantic import BaseModel, ConfigDict, Field

from services.settings import repo_root
from services.spec import ServiceSpec

PARAMS_FILE = "params.yaml"


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
    generate: GenerateParams
    split: SplitParams
    reference_rows: int = Field(ge=100)


def load_params(service: str) -> PipelineParams:
    """The params.yaml entry of `service`; a missing entry names the file and the key."""
    entries = yaml.safe_load((repo_root() / PARAMS_FILE).read_text())["services"]
    if service not in entries:
        raise KeyError(f"{PARAMS_FILE}: services.{service} is missing")
    return PipelineParams.model_validate(entries[service])


def params_hash(spec: ServiceSpec, params: PipelineParams) -> str:
    """Stable hash of everything that shapes the model: spec model settings + split."""
    payload = {"model": spec.model.model_dump(), "split": params.split.model_dump()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
