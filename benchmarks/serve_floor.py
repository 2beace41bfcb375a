"""Ray Serve's floor for the real-time bench: an application shaped as this project's Realtime
deployment (a FastAPI ingress, replicas behind the same HAProxy ingress, the same Ray Serve
settings, no access log) that does nothing per request but read the body and answer a fixed
prediction. What it serves is the most any Ray Serve application serves on this machine.
"""

# No `from __future__ import annotations`: FastAPI must see the route's real types through the
# class-based view Ray Serve builds (a string annotation makes `request` a query parameter).

import contextlib
from collections.abc import Iterator

from fastapi import FastAPI, Request, Response
from ray import serve

from serving.manifest import REALTIME_LOGGING

NAME = "serve-floor"
ANSWER = b'{"predictions":[{"prediction":0,"probability":0.5}]}'
api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@serve.deployment(max_ongoing_requests=32, logging_config=dict(REALTIME_LOGGING))
@serve.ingress(api)
class Floor:
    @api.post("/predict")
    async def predict(self, request: Request) -> Response:
        await request.body()
        return Response(ANSWER, media_type="application/json")


app = Floor.bind()


@contextlib.contextmanager
def deployed(replicas: int, timeout_s: float = 240.0) -> Iterator[str]:
    """The floor deployed with `replicas` beside the manifest's applications; yields its
    predict URL and deploys the manifest alone afterwards."""
    from services.settings import get_settings
    from serving.deploy import deploy, deploy_config
    from serving.manifest import deployable, load, manifest_path

    config = deployable(load(manifest_path()))
    config["applications"].append(
        {
            "name": NAME,
            "route_prefix": f"/{NAME}",
            "import_path": f"{__name__}:app",
            "deployments": [
                {
                    "name": Floor.name,
                    "num_replicas": replicas,
                    "ray_actor_options": {"num_cpus": 0.25},  # as the Realtime replicas
                }
            ],
        }
    )
    deploy_config(config, "the manifest with Ray Serve's floor", timeout_s)
    try:
        yield f"{get_settings().serve_url}/{NAME}/predict"
    finally:
        deploy(manifest_path(), timeout_s)
