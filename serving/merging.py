"""Request merging: concurrent calls a replica makes on its event loop, answered by one call.

A replica's requests run on one event loop. A call here queues its item and awaits its answer;
the queue is scored in one call of `score` as soon as the loop has run what was ready when the
first item arrived (or after `wait_s`, or when `max_items` are queued), so requests already in
the loop share a model call and none waits for company unless told to. This is what Ray Serve's
`@serve.batch` does, for a future per call and a scheduled callback per merge instead of its
per-call signature binding, queue task and per-batch metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class CallMerger(Generic[Item, Answer]):
    """`await merger(item)` is `score([item, ...])`'s answer for `item`, the list being every
    item queued on the loop meanwhile (at most `max_items`). `score` runs on the loop and
    answers each item in order; if it raises, every item of that call gets the exception."""

    def __init__(
        self, score: Callable[[list[Item]], Sequence[Answer]], max_items: int, wait_s: float
    ) -> None:
        self.score = score
        self.max_items = max_items
        self.wait_s = wait_s
        self._queued: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._timer: asyncio.Handle | None = None

    async def __call__(self, item: Item) -> Answer:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Answer] = loop.create_future()
        self._queued.append((item, answer))
        if len(self._queued) >= self.max_items:
            self._score_queued()
        elif self._timer is None:
            self._timer = (
                loop.call_later(self.wait_s, self._score_queued)
                if self.wait_s > 0
                else loop.call_soon(self._score_queued)
            )
        return await answer

    def _score_queued(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting = [(item, answer) for item, answer in self._queued if not answer.done()]
        self._queued = []  # cancelled callers are not scored
        if not waiting:
            return
        try:
            answers = self.score([item for item, _ in waiting])
            if len(answers) != len(waiting):
                raise RuntimeError(f"{len(answers)} answers to {len(waiting)} merged calls")
        except Exception as exc:
            for _, answer in waiting:
                answer.set_exception(exc)
            return
        for (_, answer), value in zip(waiting, answers, strict=True):
            answer.set_result(value)
