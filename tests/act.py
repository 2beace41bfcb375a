"""What the act tests share: act's JSON log, and `make` in a copy on this environment."""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ActLog:
    """act's `--json` log: step results, raw step output and job summaries."""

    def __init__(self, text: str) -> None:
        self.results: dict[str, str] = {}
        self.output: dict[str, list[str]] = defaultdict(list)
        self.summary: list[str] = []
        for line in text.splitlines():
            try:
                entry: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                continue
            step = str(entry.get("step", ""))
            if "stepResult" in entry and entry.get("stage") == "Main":
                self.results[step] = entry["stepResult"]
            if entry.get("raw_output"):
                self.output[step].append(ANSI.sub("", entry.get("msg", "")))
            if entry.get("command") == "summary":
                self.summary.append(entry.get("content", ""))

    def text(self, step: str) -> str:
        return "".join(self.output[step])


def use_this_environment(work: Path) -> None:
    """`make` in the copy runs this environment's `mlops` and `act` instead of building one.

    Wrappers (not symlinks): if make ever decided to rebuild the copy's .venv, it would
    write into the copy, never into this environment.
    """
    bin_dir = work / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    here = Path(sys.executable).parent
    for name in ("mlops", "act"):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec "{here / name}" "$@"\n')
        wrapper.chmod(0o755)
