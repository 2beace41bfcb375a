"""`manifest_lock()` serialises promotions across processes on one machine."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

from services.settings import get_settings
from serving.promote import manifest_lock

pytestmark = pytest.mark.unit

HOLD_S = 0.5  # how long the first holder keeps the lock after the second one is waiting
CONTEXT = multiprocessing.get_context("fork")  # children inherit the test's environment


def record(log: Path, line: str) -> None:
    with open(log, "a") as handle:
        handle.write(f"{line} {time.time():.6f}\n")
        handle.flush()
        os.fsync(handle.fileno())


def first_holder(log: Path, holding: Event, second_waiting: Event) -> None:
    with manifest_lock():
        record(log, "first-acquired")
        holding.set()
        second_waiting.wait(30)
        time.sleep(HOLD_S)  # the second process is blocked in flock meanwhile
        record(log, "first-released")


def second_holder(log: Path, holding: Event, second_waiting: Event) -> None:
    holding.wait(30)
    second_waiting.set()
    with manifest_lock():
        record(log, "second-acquired")
        record(log, "second-released")


def read(log: Path) -> list[tuple[str, float]]:
    return [
        (name, float(stamp))
        for name, stamp in (line.split() for line in log.read_text().splitlines())
    ]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    return tmp_path


def run(*targets: tuple[object, tuple[object, ...]]) -> list[multiprocessing.process.BaseProcess]:
    processes = [CONTEXT.Process(target=t, args=a) for t, a in targets]  # type: ignore[arg-type]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    return processes


def test_a_second_holder_waits_until_the_first_releases(home):
    log = home / "order.log"
    holding, second_waiting = CONTEXT.Event(), CONTEXT.Event()
    processes = run(
        (second_holder, (log, holding, second_waiting)),  # started first, must still come second
        (first_holder, (log, holding, second_waiting)),
    )
    assert [p.exitcode for p in processes] == [0, 0]
    entries = read(log)
    assert [name for name, _ in entries] == [
        "first-acquired",
        "first-released",
        "second-acquired",
        "second-released",
    ]
    stamps = dict(entries)
    assert stamps["second-acquired"] >= stamps["first-released"] > stamps["first-acquired"]
    assert (get_settings().home / "locks" / "manifest.lock").exists()


def unguarded_holder(log: Path, holding: Event, second_waiting: Event) -> None:
    """What the second process does without the lock: it runs while the first holds."""
    holding.wait(30)
    second_waiting.set()
    record(log, "second-acquired")
    record(log, "second-released")


def test_the_ordering_check_detects_overlap_without_the_lock(home):
    """Control: the same choreography with no lock in the second process interleaves."""
    log = home / "order.log"
    holding, second_waiting = CONTEXT.Event(), CONTEXT.Event()
    processes = run(
        (unguarded_holder, (log, holding, second_waiting)),
        (first_holder, (log, holding, second_waiting)),
    )
    assert [p.exitcode for p in processes] == [0, 0]
    names = [name for name, _ in read(log)]
    assert names.index("second-acquired") < names.index("first-released")


def crashing_holder(holding: Event) -> None:
    with manifest_lock():
        holding.set()
        os.kill(os.getpid(), signal.SIGKILL)  # dies holding the lock


def test_a_holder_killed_with_sigkill_releases_the_lock(home):
    holding = CONTEXT.Event()
    (process,) = run((crashing_holder, (holding,)))
    assert holding.is_set() and process.exitcode == -signal.SIGKILL
    path = get_settings().home / "locks" / "manifest.lock"
    with open(path, "w") as handle:  # the kernel dropped the dead process's lock
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(handle, fcntl.LOCK_UN)
    with manifest_lock():
        pass


def test_a_held_lock_refuses_another_holder_and_is_free_afterwards(home):
    with manifest_lock():
        path = get_settings().home / "locks" / "manifest.lock"
        with open(path, "w") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another open file description
    with open(path, "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again after the block
