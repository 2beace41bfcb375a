"""Request merging on a replica's event loop (serving/merging.py)."""

from __future__ import annotations

import asyncio

import pytest

from serving.merging import CallMerger

pytestmark = pytest.mark.unit


class Scorer:
    """Doubles each item and records the merged calls it was given."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(items)
        return [2 * item for item in items]


@pytest.mark.parametrize(
    ("max_items", "merged"),
    [(64, [[0, 1, 2, 3, 4]]), (2, [[0, 1], [2, 3], [4]])],  # all at once; never above the limit
)
def test_calls_already_on_the_loop_share_calls_of_at_most_max_items_each_answered(
    max_items, merged
):
    scorer = Scorer()

    async def main() -> list[int]:
        merger = CallMerger(scorer, max_items=max_items, wait_s=0)
        return await asyncio.gather(*(merger(item) for item in range(5)))

    assert asyncio.run(main()) == [0, 2, 4, 6, 8]
    assert scorer.calls == merged


def test_a_lone_call_never_waits_for_company_and_later_calls_start_a_new_merge():
    scorer = Scorer()

    async def main() -> list[int]:
        merger = CallMerger(scorer, max_items=64, wait_s=0)
        first = await merger(1)
        return [first, await merger(2)]

    assert asyncio.run(main()) == [2, 4]
    assert scorer.calls == [[1], [2]]


def test_a_wait_merges_calls_that_arrive_within_it():
    scorer = Scorer()

    async def late(merger: CallMerger[int, int], item: int) -> int:
        await asyncio.sleep(0.01)
        return await merger(item)

    async def main() -> list[int]:
        merger = CallMerger(scorer, max_items=64, wait_s=0.2)
        return await asyncio.gather(merger(1), late(merger, 2))

    assert asyncio.run(main()) == [2, 4]
    assert scorer.calls == [[1, 2]]


def test_a_failed_call_fails_every_caller_it_held_and_the_next_merge_runs():
    def broken(items: list[int]) -> list[int]:
        if 0 in items:
            raise RuntimeError("booster gone")
        return items

    async def main() -> tuple[list[object], int]:
        merger = CallMerger(broken, max_items=64, wait_s=0)
        failed = await asyncio.gather(merger(0), merger(1), return_exceptions=True)
        return failed, await merger(3)

    failed, after = asyncio.run(main())
    assert [str(exc) for exc in failed] == ["booster gone", "booster gone"]
    assert after == 3


def test_a_score_that_answers_the_wrong_number_of_calls_fails_them_all():
    async def main() -> list[object]:
        merger = CallMerger(lambda items: items[:1], max_items=64, wait_s=0)
        return await asyncio.gather(merger(1), merger(2), return_exceptions=True)

    failed = asyncio.run(main())
    assert all("1 answers to 2 merged calls" in str(exc) for exc in failed)


def test_a_cancelled_caller_is_not_scored():
    scorer = Scorer()

    async def main() -> int:
        merger = CallMerger(scorer, max_items=64, wait_s=0.05)
        gone = asyncio.ensure_future(merger(1))
        kept = asyncio.ensure_future(merger(2))
        await asyncio.sleep(0)
        gone.cancel()
        return await kept

    assert asyncio.run(main()) == 4
    assert scorer.calls == [[2]]
