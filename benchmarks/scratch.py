"""The working folder of a benchmark run: temporary, or kept for a look afterwards."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def scratch_dir(prefix: str, keep: bool) -> Iterator[Path]:
    """A fresh folder, removed afterwards unless `keep` (then its path is logged)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield workdir
    finally:
        if keep:
            log.info("kept %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
