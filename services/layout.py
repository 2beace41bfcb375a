"""Where each service's files live in the repository (one place for every path)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
