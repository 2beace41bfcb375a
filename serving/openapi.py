"""OpenAPI for routes that read raw bodies: request schemas come from the spec's models."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

REF = "#/components/schemas/{model}"


def install(api: FastAPI, bodies: dict[str, type[BaseModel]]) -> None:
    """Make `api.openapi()` document `bodies` (route path -> request model) as JSON bodies."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(
                title=api.title, version=api.version, description=api.description, routes=api.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for path, model in bodies.items():
                model_schema = model.model_json_schema(ref_template=REF)
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
                operation = schema["paths"][path]["post"]
                operation["requestBody"] = {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": REF.format(model=model.__name__)}}
                    },
                }
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
