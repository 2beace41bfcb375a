"""Ray Serve's floor for the real-time bench: an application shaped as a service's Realtime
deployment (a FastAPI ingress, replicas behind the same HAProxy ingress, the deployment settings
the manifest gives the Realtime deployment) that does nothing per request but read the body and
answer a fixed prediction. What it serves is the most any Ray Serve application serves on this
machine.
"""

# No `from __future__ import annotations`: FastAPI must see the route's real types through the
# class-based view Ray Serve builds (a string annotation makes `request` a query parameter).

import contextlib
from collections.abc import Iterator

from fastapi import FastAPI, Request, Response
from ray import serve

NAME = "serve-floor"
ANSWER = b'{"predictions":[{"prediction":0,"probability":0.5}]}'
api = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@serve.deployment
@serve.ingress(api)
class Floor:
    @api.post("/predict")
    async def predict(self, request: Request) -> Response:
        await request.body()
        return Response(ANSWER, media_type="application/json")


app = Floor.bind()


@contextlib.contextmanager
def deployed(service: str, replicas: int, timeout_s: float = 240.0) -> Iterator[str]:
    """The floor deployed with `replicas` and the settings of `service`'s Realtime deployment
    (its concurrency, logging and CPU share), beside the manifest's applications; yields its
    predict URL and deploys the manifest alone afterwards."""
    from services.settings import get_settings
    from serving.deploy import deploy, deploy_config
    from serving.deployments import REALTIME
    from serving.manifest import application, deployable, deployment_of, load, manifest_path

    config = deployable(load(manifest_path()))
    realtime = deployment_of(application(config, service), REALTIME)
    settings = ("max_ongoing_requests", "logging_config", "ray_actor_options")
    config["applications"].append(
        {
            "name": NAME,
            "route_prefix": f"/{NAME}",
            "import_path": f"{__name__}:app",
            "deployments": [
                {"name": Floor.name, "num_replicas": replicas}
                | {key: realtime[key] for key in settings}
            ],
        }
    )
    deploy_config(config, "the manifest with Ray Serve's floor", timeout_s)
    try:
        yield f"{get_settings().serve_url}/{NAME}/predict"
    finally:
        deploy(manifest_path(), timeout_s)
