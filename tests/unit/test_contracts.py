"""The contracts between stages are named once: model-version tags and artifacts
(services/registry_keys.py), inference-log columns (services/inference_log.py) and the HTTP
wire vocabulary (serving/protocol.py). Library code imports the names; a source scan fails
when one of their strings is written out anywhere else."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from types import ModuleType

import pytest

from services import inference_log, registry_keys
from services.settings import PACKAGE_REPO
from serving import protocol
from tests.sources import python_sources

pytestmark = pytest.mark.unit

PACKAGES = ("services", "training", "serving", "monitoring", "mlops", "benchmarks")
VOCABULARIES: dict[str, ModuleType] = {
    "services/registry_keys.py": registry_keys,
    "services/inference_log.py": inference_log,
    "serving/protocol.py": protocol,
}
# Words too common to scan for: they name other things in every layer (a service's folder,
# CLI rows and run tags; the data folder and the `mlops data` commands; the HTTP status, error
# bodies, row counts and resource requests of JSON answers, tables and Kubernetes objects).
COMMON_WORDS = {"service", "data", "status", "error", "rows", "requests"}
# The same string, meaning something else where it stands.
ELSEWHERE = {
    ("model_version", "serving/deployments.py"): "the user_config key (MODEL_VERSION_KEY)",
    ("spec", "serving/k8s.py"): "the `spec` of Kubernetes objects",
    ("model", "training/params.py"): "the spec's model section in the params hash",
    ("records", "services/schema.py"): "pandas' `to_dict` orient",
    ("promoted_at", "monitoring/result.py"): "a field of the monitor's summary JSON",
    ("columns", "monitoring/result.py"): "a field of the monitor's summary JSON",
    ("endpoint", "benchmarks/bench_serving.py"): "a field of benchmarks/results.json",
    ("endpoint", "serving/telemetry.py"): "a label of the Prometheus request metrics",
    ("variant", "serving/telemetry.py"): "a label of the Prometheus request metrics",
    ("shadow", "services/spec.py"): "a rollout step's mode (the spec loads without pandas)",
    ("canary", "services/spec.py"): "a rollout step's mode (the spec loads without pandas)",
    ("model", "benchmarks/peer_servers.py"): "the model's name in KServe's and MLServer's URLs",
    ("instances", "benchmarks/peer_servers.py"): "KServe's V1 protocol",
    ("predictions", "benchmarks/peer_servers.py"): "KServe's V1 protocol",
    ("inputs", "benchmarks/peer_servers.py"): "the Open Inference Protocol (V2)",
}


def vocabulary() -> dict[str, set[str]]:
    """Every named string -> the modules that define it."""
    defined: dict[str, set[str]] = {}
    for path, module in VOCABULARIES.items():
        for name, value in vars(module).items():
            if name.isupper() and isinstance(value, str):
                defined.setdefault(value, set()).add(path)
    return defined


def literals(source: str) -> Iterator[tuple[int, str]]:
    """String constants (f-string parts included, docstrings left out) and the column names
    written as keywords of `.assign(...)`, with their line numbers."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                yield node.lineno, node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "assign"
        ):
            yield from ((node.lineno, k.arg) for k in node.keywords if k.arg)


def stray_names(relative: str, source: str, defined: dict[str, set[str]]) -> list[tuple[int, str]]:
    """(line, string) of every named string that `relative` writes out instead of importing."""
    return [
        (line, value)
        for line, value in literals(source)
        if value in defined
        and relative not in defined[value]
        and value not in COMMON_WORDS
        and (value, relative) not in ELSEWHERE
    ]


def library_sources() -> Iterator[tuple[str, str]]:
    for package in PACKAGES:
        for path in python_sources(PACKAGE_REPO / package):
            yield path.relative_to(PACKAGE_REPO).as_posix(), path.read_text()


def test_no_contract_name_is_written_out_where_it_should_be_imported():
    defined = vocabulary()
    found = [
        f"{relative}:{line}: {value!r} (import it from {' or '.join(sorted(defined[value]))})"
        for relative, source in library_sources()
        for line, value in stray_names(relative, source, defined)
    ]
    assert not found, "\n".join(found)


def test_the_scan_finds_literals_in_keys_f_strings_and_assign():
    source = '''
"""A docstring may say git_commit and request_id."""
def lineage(tags, frame, metric):
    commit = tags["git_commit"]
    tag = f"metric.{metric}"
    return frame.assign(request_id=1, other=2), {"dataframe_split": []}
'''
    found = stray_names("monitoring/new.py", source, vocabulary())
    assert sorted(found) == [
        (4, "git_commit"),
        (5, "metric."),
        (6, "dataframe_split"),
        (6, "request_id"),
    ]
    assert not stray_names("services/registry_keys.py", 'TAG = "git_commit"\n', vocabulary())


def test_every_allowed_exception_is_still_needed():
    """An exception that no longer matches anything is removed, so it cannot hide a new copy."""
    sources = dict(library_sources())
    for value, relative in ELSEWHERE:
        assert value in {v for _, v in literals(sources[relative])}, (value, relative)


def test_the_invocations_keys_are_mlflows():
    """/invocations accepts exactly the input keys of MLflow's own scoring server."""
    from mlflow.pyfunc import scoring_server

    assert set(protocol.SUPPORTED_FORMATS) == scoring_server.SUPPORTED_FORMATS
    assert protocol.DF_RECORDS == scoring_server.DF_RECORDS
    assert protocol.DF_SPLIT == scoring_server.DF_SPLIT
    assert protocol.INPUTS == scoring_server.INPUTS
    assert protocol.INSTANCES == scoring_server.INSTANCES


def test_the_stored_log_format_is_pinned():
    """Parts already written carry these names: renaming one needs a migration of the log."""
    assert inference_log.PREDICTION_COLUMNS == (
        "request_id",
        "request",
        "timestamp",
        "service",
        "endpoint",
        "model_version",
        "variant",
        "status",
        "rows",
        "latency_ms",
    )
    assert inference_log.FEEDBACK_COLUMNS == ("request_id", "timestamp", "service", "label")
    assert (*inference_log.REQUEST_COLUMNS, "error") == inference_log.REFUSED_COLUMNS
    assert (inference_log.PREDICTION, inference_log.PROBABILITY) == ("prediction", "probability")
    kinds = (inference_log.PREDICTIONS_KIND, inference_log.FEEDBACK_KIND)
    assert (*kinds, inference_log.REQUESTS_KIND) == ("predictions", "feedback", "requests")


def test_registered_versions_keep_their_tag_and_artifact_names():
    """Versions already registered carry these names: promotion and monitoring read them."""
    assert registry_keys.metric_tag("roc_auc") == "metric.roc_auc"
    assert (registry_keys.GIT_COMMIT_TAG, registry_keys.DVC_DATA_MD5_TAG) == (
        "git_commit",
        "dvc_data_md5",
    )
    assert registry_keys.PROMOTED_AT_TAG == "promoted_at"
    assert (registry_keys.BOOSTER_ARTIFACT, registry_keys.SPEC_ARTIFACT) == ("booster", "spec")
    assert registry_keys.REFERENCE_ARTIFACT == "reference/reference.parquet"
