"""params.yaml and dvc.yaml agree with the catalogue, the layout and what the stages read."""

from __future__ import annotations

import importlib.util
import inspect
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from services.datagen import generate
from services.layout import ServicePaths
from services.settings import PACKAGE_REPO
from services.spec import SPEC_FILE, load_spec, service_names
from training import data, evaluate, params, train
from training.evaluate import plot_frames
from training.params import ParamsError, load_params

pytestmark = pytest.mark.unit

STAGES = ("prepare", "train", "evaluate", "register")  # `mlops stage <name>` -> training.<module>
MODULES = {"prepare": "data", "train": "train", "evaluate": "evaluate", "register": "register"}
LOCAL_STAGES = {"prepare": data.prepare, "train": train.train, "evaluate": evaluate.evaluate}
DVC = yaml.safe_load((PACKAGE_REPO / "dvc.yaml").read_text())
SPEC_PARAMS = f"services/${{key}}/{SPEC_FILE}"


def stage(name: str) -> dict[str, Any]:
    return DVC["stages"][name]["do"]


def paths_of(entries: list[Any], key: str) -> set[str]:
    """Paths of a deps/outs/metrics list (entries are strings or one-key mappings)."""
    names = (e if isinstance(e, str) else next(iter(e)) for e in entries)
    return {n.replace("${key}", key) for n in names}


def declared_params(name: str) -> tuple[set[str], set[str]]:
    """(service.yaml sections, params.yaml keys under services.<key>) a stage declares."""
    sections: set[str] = set()
    pipeline: set[str] = set()
    for entry in stage(name).get("params", []):
        if isinstance(entry, str):
            assert entry.startswith("services.${key}."), entry
            pipeline.add(entry.removeprefix("services.${key}."))
        else:
            [(file, keys)] = entry.items()
            assert file == SPEC_PARAMS, file
            sections |= set(keys)
    return sections, pipeline


def rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


# --- params.yaml ----------------------------------------------------------------------------


def test_every_service_has_a_params_entry_and_every_entry_a_service():
    entries = yaml.safe_load((PACKAGE_REPO / params.PARAMS_FILE).read_text())["services"]
    assert set(entries) == set(service_names())


@pytest.mark.parametrize("name", service_names())
def test_params_entries_validate(name):
    entry = load_params(name)
    assert entry.split.valid + entry.split.test < 0.5
    assert entry.generate is not None  # the shipped services rebuild their default data
    assert entry.reference_rows <= entry.generate.rows


def test_missing_params_entry_names_the_file_and_key(tmp_path, monkeypatch):
    (tmp_path / params.PARAMS_FILE).write_text("services: {}\n")
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(tmp_path))
    with pytest.raises(ParamsError, match=r"params\.yaml: services\.fraud-detection is missing"):
        load_params("fraud-detection")


def write_params(root: Path, entry: str) -> None:
    (root / params.PARAMS_FILE).write_text(f"services:\n  svc:\n{entry}")


def test_generate_is_only_needed_by_services_with_a_generator(tmp_path, monkeypatch):
    write_params(tmp_path, "    split: {valid: 0.1, test: 0.1, seed: 1}\n    reference_rows: 100\n")
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(tmp_path))
    assert load_params("svc").generate is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "    split: {valid: 0.1, seed: 1}\n    reference_rows: 100\n",
            "split.test: Field required",
        ),
        (
            "    split: {valid: 0.1, test: 0.1, seed: 1}\n    reference_rows: 10\n",
            "reference_rows: Input should be greater than or equal to 100",
        ),
        (
            "    split: {valid: 0.1, test: 0.1, seed: 1}\n    reference_rows: 100\n    rows: 5\n",
            "rows: Extra inputs are not permitted",
        ),
        ("    null\n", "Input should be a valid dictionary"),
    ],
)
def test_an_invalid_entry_is_one_line_naming_file_service_and_field(
    tmp_path, monkeypatch, entry, message
):
    write_params(tmp_path, entry)
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(tmp_path))
    with pytest.raises(ParamsError) as caught:
        load_params("svc")
    text = str(caught.value)
    assert text.startswith("params.yaml: services.svc") and message in text
    assert "\n" not in text and "validation error" not in text


def test_a_stage_reports_a_params_error_in_one_line(tmp_path, monkeypatch):
    from mlops.cli import app

    shutil.copytree(PACKAGE_REPO / "services" / "fraud-detection", tmp_path / "services" / "x")
    spec = tmp_path / "services" / "x" / SPEC_FILE
    spec.write_text(spec.read_text().replace("name: fraud-detection", "name: x"))
    (tmp_path / params.PARAMS_FILE).write_text("services:\n  x:\n    reference_rows: 100\n")
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(tmp_path))
    result = CliRunner().invoke(app, ["stage", "prepare", "x"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: params.yaml: services.x.split: Field required"


# --- dvc.yaml structure -----------------------------------------------------------------------


def test_pipeline_has_the_four_stages_over_every_service():
    assert tuple(DVC["stages"]) == STAGES
    for name in STAGES:
        assert DVC["stages"][name]["foreach"] == "${services}"
        assert stage(name)["cmd"] == f"mlops stage {name} ${{key}}"


@pytest.mark.parametrize("name", STAGES)
def test_each_stage_depends_on_its_own_module(name):
    module = importlib.util.find_spec(f"training.{MODULES[name]}")
    assert module is not None and module.origin is not None
    assert rel(Path(module.origin), PACKAGE_REPO) in paths_of(stage(name)["deps"], "x")


@pytest.mark.parametrize("key", service_names())
def test_paths_in_dvc_yaml_are_the_layout(key):
    paths, root = ServicePaths(key, PACKAGE_REPO), PACKAGE_REPO
    prepare, train_, evaluate_, register_ = (stage(n) for n in STAGES)
    assert rel(paths.snapshot, root) in paths_of(prepare["deps"], key)
    assert paths_of(prepare["outs"], key) == {rel(paths.prepared, root)}
    assert {rel(paths.split("train"), root), rel(paths.split("valid"), root)} <= paths_of(
        train_["deps"], key
    )
    assert paths_of(train_["outs"], key) == {rel(paths.model, root)}
    assert {rel(paths.split("test"), root), rel(paths.model, root)} <= paths_of(
        evaluate_["deps"], key
    )
    assert paths_of(evaluate_["metrics"], key) == {rel(paths.metrics, root)}
    assert paths_of(evaluate_["plots"], key) == {rel(paths.plots, root)}
    assert {rel(paths.model, root), rel(paths.metrics, root)} <= paths_of(register_["deps"], key)
    assert paths_of(register_["outs"], key) == {rel(paths.registration, root)}


def test_declared_plots_are_files_evaluate_writes():
    for plot in DVC["plots"]:
        [(title, config)] = plot.items()
        [(file, y_column)] = config["y"].items()
        service, csv = Path(file).parts[1], Path(file).stem
        spec = load_spec(service)
        frames = plot_frames(spec, np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.7, 0.3]))
        assert csv in frames, title
        assert {config["x"], y_column} <= set(frames[csv].columns), title


# --- params read by each stage == params declared ------------------------------------------


# spec attributes that are not params: the name (paths) and folder (the spec file itself)
ALIASES: dict[str, str | None] = {"feature_names": "features", "name": None, "folder": None}


class Reads:
    """Proxy that records which attributes of the wrapped object are read."""

    def __init__(self, target: Any, seen: set[str]) -> None:
        self.__dict__.update(_target=target, _seen=seen)

    def __getattr__(self, attr: str) -> Any:
        section = ALIASES.get(attr, attr)
        if section is not None:
            self._seen.add(section)
        return getattr(self._target, attr)


@pytest.fixture
def small_repo(tmp_path, monkeypatch):
    """A working tree with the catalogue (quick to train), params.yaml and small snapshots."""
    for name in service_names():
        folder = shutil.copytree(PACKAGE_REPO / "services" / name, tmp_path / "services" / name)
        raw = yaml.safe_load((folder / SPEC_FILE).read_text())
        raw["model"]["num_boost_round"] = 5
        raw["model"]["params"]["nthread"] = 1
        (folder / SPEC_FILE).write_text(yaml.safe_dump(raw, sort_keys=False))
    shutil.copy(PACKAGE_REPO / params.PARAMS_FILE, tmp_path)
    monkeypatch.setenv("MLOPS_REPO_ROOT", str(tmp_path))
    for name in service_names():
        paths = ServicePaths(name)
        paths.snapshot.parent.mkdir(parents=True)
        generate(load_spec(name), 1_500, seed=1).to_parquet(paths.snapshot, index=False)
    return tmp_path


def run_recorded(
    name: str, service: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[set[str], set[str]]:
    spec_reads: set[str] = set()
    params_reads: set[str] = set()
    function = LOCAL_STAGES[name]
    module = inspect.getmodule(function)
    if hasattr(module, "load_params"):
        monkeypatch.setattr(
            module, "load_params", lambda s: Reads(params.load_params(s), params_reads)
        )
    function(Reads(load_spec(service), spec_reads))
    return spec_reads, params_reads


def test_stages_declare_exactly_the_params_they_read(small_repo, monkeypatch):
    """What a stage reads of any service is declared; nothing declared goes unread."""
    for name in ("prepare", "train", "evaluate"):  # register: tests/integration
        sections, pipeline = declared_params(name)
        read_sections: set[str] = set()
        read_pipeline: set[str] = set()
        for service in service_names():
            spec_reads, params_reads = run_recorded(name, service, monkeypatch)
            assert spec_reads <= sections, (name, service)
            assert params_reads <= pipeline, (name, service)
            read_sections |= spec_reads
            read_pipeline |= params_reads
        assert (read_sections, read_pipeline) == (sections, pipeline), name
    for service in service_names():
        paths = ServicePaths(service)
        assert paths.model.exists() and paths.metrics.exists()
