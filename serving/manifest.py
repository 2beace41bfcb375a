"""The GitOps manifest `infra/serve/<env>.yaml`: a Ray Serve config file, the truth of what runs.

One application per service (route `/<service>`); the model version lives in each
deployment's `user_config`, so changing it swaps models in place, and so does the real-time
deployment's `rollout` (the candidate of a rollout, its mode and weight: serving.routing).
Edits keep comments (ruamel round-trip). Light on imports: monitoring and workflows use it
without Ray.
"""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from services.settings import repo_root
from services.spec import ServiceSpec, load_catalogue, load_spec, service_names
from serving.deployments import BATCH, DEPLOYMENTS, MODEL_VERSION_KEY, REALTIME, REQUEST_MERGING_KEY
from serving.routing import ROLLOUT_KEY, VERSION_REGEX, RolloutTraffic

IMPORT_PATH = "serving.app:build_app"
VERSION_PATTERN = re.compile(VERSION_REGEX)
# The controller finds a dead replica at its next health check: Ray's default 10 s period
# alone would use most of a 15 s recovery budget (docs/RELIABILITY.md).
HEALTH_CHECK_PERIOD_S = 2.0
# Ray's access log line per real-time request cost a third of a replica's CPU per request;
# the inference log already records every served row with its request id and endpoint.
REALTIME_LOGGING = {"enable_access_log": False}


class ManifestError(ValueError):
    """A manifest that is missing, malformed or names something that does not exist."""


def manifest_path(env: str = "production") -> Path:
    if not re.fullmatch(r"[a-z][a-z0-9-]*", env):
        raise ManifestError(f"invalid environment name '{env}'")
    return repo_root() / "infra" / "serve" / f"{env}.yaml"


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 100
    yaml.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    return yaml


def load(path: Path) -> Any:
    """The manifest document (comments kept), validated."""
    try:
        doc = _yaml().load(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except Exception as exc:  # ruamel raises several parser error types
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    validate(doc, str(path))
    return doc


def dump(doc: Any) -> str:
    buffer = StringIO()
    _yaml().dump(doc, buffer)
    return buffer.getvalue()


def save(path: Path, doc: Any) -> None:
    validate(doc, str(path))
    write_text(path, dump(doc))


def write_text(path: Path, text: str) -> None:
    """Replace the manifest atomically (its RayService is rendered by `serving.k8s.write`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def validate(doc: Any, source: str) -> None:
    """Structure checks that name the file and the offending application or field."""
    if not isinstance(doc, dict) or not isinstance(doc.get("applications"), list):
        raise ManifestError(f"{source}: 'applications' must be a list")
    known = set(load_catalogue())
    for index, app in enumerate(doc["applications"]):
        where = f"{source}: applications[{index}]"
        name = app.get("name") if isinstance(app, dict) else None
        if name not in known:
            raise ManifestError(f"{where}.name: unknown service '{name}'")
        if app.get("route_prefix") != f"/{name}":
            raise ManifestError(f"{where}.route_prefix: must be '/{name}'")
        if app.get("import_path") != IMPORT_PATH:
            raise ManifestError(f"{where}.import_path: must be '{IMPORT_PATH}'")
        names = [d.get("name") for d in app.get("deployments", [])]
        if sorted(names) != sorted(DEPLOYMENTS):
            raise ManifestError(f"{where}.deployments: must be {list(DEPLOYMENTS)}, got {names}")
        versions = {_deployment_version(d) for d in app["deployments"]}
        if len(versions) != 1:
            raise ManifestError(f"{where}: deployments disagree on model_version {versions}")
        version = versions.pop()
        if version is not None and not VERSION_PATTERN.match(version):
            raise ManifestError(f"{where}: model_version '{version}' is not a version number")
        _validate_traffic(app, version, where)


def _validate_traffic(app: dict[str, Any], version: str | None, where: str) -> None:
    """Only the real-time deployment routes, and only a deployed service has a candidate."""
    for index, deployment in enumerate(app["deployments"]):
        raw = (deployment.get("user_config") or {}).get(ROLLOUT_KEY)
        if raw is None:
            continue
        at = f"{where}.deployments[{index}].user_config"
        if deployment.get("name") != REALTIME:
            raise ManifestError(f"{at}.{ROLLOUT_KEY}: only the {REALTIME} deployment routes")
        try:
            traffic = RolloutTraffic.parse(_plain(raw), at)
        except ValueError as exc:
            raise ManifestError(str(exc)) from None
        if version is None or traffic.candidate == version:
            raise ManifestError(
                f"{at}.{ROLLOUT_KEY}.candidate: v{traffic.candidate} needs a different stable "
                f"model_version to roll out against (it is {version})"
            )


def _deployment_version(deployment: dict[str, Any]) -> str | None:
    value = (deployment.get("user_config") or {}).get(MODEL_VERSION_KEY)
    return None if value is None else str(value)


def application(doc: Any, service: str, source: str = "manifest") -> Any:
    for app in doc["applications"]:
        if app["name"] == service:
            return app
    raise ManifestError(f"{source}: no application for service '{service}'")


def versions(path: Path) -> dict[str, str | None]:
    """Model version of every application (None: not promoted yet)."""
    doc = load(path)
    return {app["name"]: _deployment_version(app["deployments"][0]) for app in doc["applications"]}


def deployment_of(app: Any, name: str) -> Any:
    return next(d for d in app["deployments"] if d["name"] == name)


def hold_replicas(count: int, app: Any, deployment: str = REALTIME) -> None:
    """Edit an application entry to hold exactly `count` replicas of `deployment` (min =
    initial = max)."""
    deployment_of(app, deployment)["autoscaling_config"].update(
        min_replicas=count, initial_replicas=count, max_replicas=count
    )


def _rollout_of(app: Any) -> RolloutTraffic | None:
    raw = (deployment_of(app, REALTIME).get("user_config") or {}).get(ROLLOUT_KEY)
    return None if raw is None else RolloutTraffic.model_validate(_plain(raw))


def traffic_of(path: Path, service: str) -> tuple[str | None, RolloutTraffic | None]:
    """`service`'s stable version and its rollout in progress (None: none), from one read."""
    for app in load(path)["applications"]:
        if app["name"] == service:
            return _deployment_version(app["deployments"][0]), _rollout_of(app)
    return None, None


def rollouts(path: Path) -> dict[str, RolloutTraffic]:
    """The candidate of every service that has a rollout in progress."""
    found = {app["name"]: _rollout_of(app) for app in load(path)["applications"]}
    return {name: traffic for name, traffic in found.items() if traffic is not None}


_KEEP = object()  # set_model_version: the rollout stays as it is


def set_model_version(
    path: Path, service: str, version: str | None, rollout: Any = _KEEP
) -> str | None:
    """Point every deployment of `service` at `version` (and its real-time deployment's rollout
    at `rollout`, when given: a `RolloutTraffic`, or None to end it) in one edit; returns the
    version it replaced.

    A catalogue service the manifest has no application for yet gets the one its spec
    implies (as `mlops render manifest` would add it), so a new service needs no extra step.
    """
    if version is not None and not VERSION_PATTERN.match(str(version)):
        raise ManifestError(f"'{version}' is not a version number")
    doc = load(path)
    _add_missing_application(doc, service)
    app = application(doc, service, str(path))
    previous = _deployment_version(app["deployments"][0])
    for deployment in app["deployments"]:
        deployment.setdefault("user_config", {})[MODEL_VERSION_KEY] = (
            None if version is None else str(version)
        )
    if rollout is not _KEEP:
        config = deployment_of(app, REALTIME)["user_config"]
        if rollout is None:
            config.pop(ROLLOUT_KEY, None)
        else:
            config[ROLLOUT_KEY] = rollout.config()
    save(path, doc)
    return previous


def _add_missing_application(doc: Any, service: str) -> None:
    names = {app["name"] for app in doc["applications"]}
    if service not in names and service in service_names():
        doc["applications"].append(render_application(load_spec(service), None))


def deployable(doc: Any) -> dict[str, Any]:
    """The Ray Serve config to deploy: applications that have a model version."""
    config = {key: value for key, value in doc.items() if key != "applications"}
    config["applications"] = [
        app for app in doc["applications"] if _deployment_version(app["deployments"][0])
    ]
    return _plain(config)


def _plain(value: Any) -> Any:
    """ruamel containers -> plain dicts/lists (for JSON and the Ray REST API)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    for kind in (bool, int, float, str):  # ruamel scalar subclasses -> builtins
        if isinstance(value, kind):
            return kind(value)
    return value


def render_application(
    spec: ServiceSpec, version: str | None, rollout: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The application entry a spec implies (autoscaling and limits come from the spec), with
    its versions: the stable one and a rollout's candidate (the manifest's, kept as it is)."""

    def autoscaling(name: str) -> dict[str, Any]:
        settings = getattr(spec.serving, name)
        return settings.model_dump(exclude_none=True)

    user_config = {MODEL_VERSION_KEY: version}
    return {
        "name": spec.name,
        "route_prefix": f"/{spec.name}",
        "import_path": IMPORT_PATH,
        "args": {
            "service": spec.name,
            "max_request_rows": spec.serving.max_request_rows,
            "max_batch_rows": spec.serving.max_batch_rows,
            REQUEST_MERGING_KEY: spec.serving.request_merging.model_dump(),
        },
        "deployments": [
            {
                "name": REALTIME,
                "max_ongoing_requests": spec.serving.max_ongoing_requests,
                "autoscaling_config": autoscaling("realtime"),
                "health_check_period_s": HEALTH_CHECK_PERIOD_S,
                "logging_config": dict(REALTIME_LOGGING),
                "ray_actor_options": {"num_cpus": 0.25},
                "user_config": dict(user_config) | ({ROLLOUT_KEY: rollout} if rollout else {}),
            },
            {
                "name": BATCH,
                "max_ongoing_requests": 2,
                "autoscaling_config": autoscaling("batch"),
                "ray_actor_options": {"num_cpus": 0.25},
                "user_config": dict(user_config),
            },
        ],
    }


def _versions_of(app: Any) -> tuple[str | None, dict[str, Any] | None]:
    """An application's stable version and its rollout (None: none in progress)."""
    rollout = (deployment_of(app, REALTIME).get("user_config") or {}).get(ROLLOUT_KEY)
    return _deployment_version(app["deployments"][0]), _plain(rollout)


def drift_from_catalogue(path: Path) -> list[str]:
    """Differences between the manifest and what the specs imply (versions aside)."""
    doc = _plain(load(path))
    current = {app["name"]: app for app in doc["applications"]}
    problems = []
    for name, spec in load_catalogue().items():
        if name not in current:
            problems.append(f"{path}: no application for service '{name}'")
            continue
        if current[name] != render_application(spec, *_versions_of(current[name])):
            problems.append(
                f"{path}: application '{name}' differs from services/{name}/service.yaml"
            )
    return problems


def sync_with_catalogue(path: Path) -> None:
    """Rewrite each application's settings from its spec, keeping versions and comments."""
    doc = load(path)
    specs = load_catalogue()
    apps = {app["name"]: app for app in doc["applications"]}
    for name, spec in specs.items():
        stable, rollout = _versions_of(apps[name]) if name in apps else (None, None)
        rendered = render_application(spec, stable, rollout)
        if name in apps:
            apps[name].clear()
            apps[name].update(rendered)
        else:
            doc["applications"].append(rendered)
    save(path, doc)
