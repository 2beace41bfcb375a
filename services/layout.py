"""Where each service's files live in the repository (one place for every path)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from services.settings import repo_root


@dataclass(frozen=True)
class ServicePaths:
    """Paths of one service's pipeline inputs and outputs, relative to `root`."""

    service: str
    root: Path = field(default_factory=repo_root)

    @property
    def snapshot(self) -> Path:
        """The DVC-tracked training snapshot (`dvc add`)."""
        return self.root / "data" / self.service / "snapshot.parquet"

    @property
    def snapshot_pointer(self) -> Path:
        return self.snapshot.with_name(self.snapshot.name + ".dvc")

    @property
    def recorded_md5(self) -> str | None:
        """The md5 the snapshot's .dvc pointer records, if there is a pointer."""
        if not self.snapshot_pointer.exists():
            return None
        return str(yaml.safe_load(self.snapshot_pointer.read_text())["outs"][0]["md5"])

    @property
    def prepared(self) -> Path:
        return self.root / "data" / self.service / "prepared"

    def split(self, name: str) -> Path:
        return self.prepared / f"{name}.parquet"

    @property
    def model(self) -> Path:
        return self.root / "models" / self.service / "model.ubj"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics" / self.service / "metrics.json"

    @property
    def plots(self) -> Path:
        return self.root / "metrics" / self.service / "plots"

    @property
    def registration(self) -> Path:
        """Record of the version the last `register` stage created (not a hand-off file)."""
        return self.root / "models" / self.service / "registration.json"


def file_md5(path: Path) -> str:
    """The md5 DVC records for a file."""
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
