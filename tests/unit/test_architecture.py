"""Package boundaries, enforced with import-linter (contracts in pyproject.toml)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from services.model_cache import cached_artifacts
from services.settings import MODEL_CACHE_DIR_ENV, PACKAGE_REPO, TRACKING_URI_ENV
from tests.models import copying, model_files, packages_imported
from tests.sources import python_sources

pytestmark = pytest.mark.unit


def test_serving_and_monitoring_never_import_training_is_a_contract():
    config = tomllib.loads((PACKAGE_REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    assert {"services", "training", "serving", "monitoring"} <= set(config["root_packages"])
    forbidden = [
        c
        for c in config["contracts"]
        if c["type"] == "forbidden" and "training" in c["forbidden_modules"]
    ]
    assert forbidden, "no contract forbids importing training"
    sources = {m for c in forbidden for m in c["source_modules"]}
    assert {"serving", "monitoring"} <= sources


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache", "--no-logo"]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept():
    result = lint_imports(PACKAGE_REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    assert "KEPT" in result.stdout


def test_a_serving_module_importing_training_breaks_the_contract(tmp_path):
    """The contract bites: the same check fails on a copy with a forbidden import."""
    shutil.copy(PACKAGE_REPO / "pyproject.toml", tmp_path)
    for package in ("services", "training", "serving", "monitoring", "mlops"):
        shutil.copytree(
            PACKAGE_REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc")
        )
    (tmp_path / "serving" / "leak.py").write_text("from training.train import train\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "serving.leak -> training.train" in result.stdout


def imported_modules(source: str) -> set[str]:
    """Every module a source imports, at the top or inside functions."""
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules.add(node.module)
    return modules


def imports_of_tests(source: str) -> set[str]:
    return {m for m in imported_modules(source) if m == "tests" or m.startswith("tests.")}


def test_benchmarks_never_import_the_test_suite():
    """Benchmarks run from an installed package; helpers they share with tests live there.
    Their own environments (`.venv` folders beside a requirements file) are not theirs."""
    offenders = {
        path.name: imports_of_tests(path.read_text())
        for path in python_sources(PACKAGE_REPO / "benchmarks")
    }
    assert not {name: found for name, found in offenders.items() if found}


def test_the_benchmark_import_check_sees_imports_inside_functions():
    source = "def run():\n    from tests.conftest import free_port\n    import tests.load\n"
    assert imports_of_tests(source) == {"tests.conftest", "tests.load"}
    assert not imports_of_tests("from mlops.sandbox import free_port\nimport testsuite\n")


@pytest.mark.parametrize("path", ["services/registry_keys.py", "serving/protocol.py"])
def test_contract_names_load_without_heavy_imports(path):
    """Quick commands and HTTP clients read these names: MLflow or Ray must not come along."""
    imported = imported_modules((PACKAGE_REPO / path).read_text())
    assert {m.split(".")[0] for m in imported} <= {"__future__", "collections"}


# What a replica (or a batch-score worker) does before its first answer: import the application,
# load its version from the node's model cache
REPLICA_START = """
import serving.app
from serving.model_slot import load_version
from serving.scorer import Scorer
load_version("fraud-detection", "1", 10)
Scorer("fraud-detection", "1").ready()
"""
# Packages of training, monitoring, the registry, the CLI and manifest editing: never needed
# to answer requests (nor scikit-learn, which XGBoost imports when it can: services.lean_xgboost)
NOT_SERVING = {
    "sklearn",
    "mlflow",
    "sqlalchemy",
    "flask",
    "evidently",
    "dvc",
    "github",
    "typer",
    "boto3",
    "ruamel",
    "training",
    "monitoring",
    "mlops",
    "onnxmltools",  # the conversion is registration's
    "skl2onnx",
}


def test_a_replica_starts_without_mlflow_or_other_packages_it_does_not_serve_with(
    tmp_path, monkeypatch
):
    monkeypatch.setenv(MODEL_CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(TRACKING_URI_ENV, "http://127.0.0.1:9")  # a miss would fail
    cached_artifacts("fraud-detection", "1", copying(model_files(tmp_path, onnx=True)))
    imported = packages_imported(REPLICA_START)
    assert {"serving", "xgboost", "onnxruntime", "ray"} <= imported
    assert not imported & NOT_SERVING


def test_the_batch_score_driver_given_a_version_imports_neither_xgboost_nor_pandas_nor_mlflow():
    """Its workers score; the driver only plans (MLflow comes along to resolve the version on
    main when none is given)."""
    imported = packages_imported("import serving.batch_score, serving.scorer")
    assert "serving" in imported
    assert not imported & {"xgboost", "pandas", "sklearn", "scipy", "mlflow"}
