"""`make test` runs the tests of the Ray cluster in one pytest session and the others beside
it: the split is the `cluster` mark, set from each test's fixtures (tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
USES_THE_CLUSTER = "tests/integration/test_deploy.py"  # through the `served` fixture
NEEDS_NO_CLUSTER = "tests/integration/test_register.py"  # MLflow only


def selected(mark: str) -> set[str]:
    """The files of the tests `-m <mark>` selects among the two modules."""
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    command += ["-m", mark, USES_THE_CLUSTER, NEEDS_NO_CLUSTER]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return {line.split("::")[0] for line in result.stdout.splitlines() if "::" in line}


def test_the_cluster_mark_follows_the_fixtures():
    assert selected("cluster") == {USES_THE_CLUSTER}
    assert selected("not cluster") == {NEEDS_NO_CLUSTER}
