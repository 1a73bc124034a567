"""A worker that dies mid-batch: the batch is retried once on a live worker, a second death is Elasticsearch's 500."""

import asyncio

import pytest

from sidecar.errors import EsError
from sidecar.timevalue import TimeValue
from sidecar.workers.pool import WorkerPool
from sidecar.workers.spec import WorkerSpec
from tests.workers.retry_worker import crash_on_poison

TIMEOUT = TimeValue(30.0, "30s")


def pool(tmp_path, workers=2):
    spec = WorkerSpec("retry", tmp_path / "marker", "ner", {}, {}, (0,), 1, 8192, True, 1)
    return WorkerPool([spec] * workers, queue_capacity=100, max_batch_docs=4, target=crash_on_poison)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def test_a_batch_whose_worker_died_is_retried_and_answered(tmp_path):
    async def scenario():
        workers = pool(tmp_path)
        await workers.start()
        try:
            results = await workers.submit(["a", "once", "b"], {}, TIMEOUT, [1, 1, 1])
            return results, workers.stats.error_count
        finally:
            await workers.stop()

    results, errors = run(scenario())
    assert results == [b'{"text":"a"}', b'{"text":"once"}', b'{"text":"b"}']
    assert errors == 0


def test_a_second_death_is_a_500_counted_as_an_error(tmp_path):
    async def scenario():
        workers = pool(tmp_path)
        await workers.start()
        try:
            with pytest.raises(EsError) as caught:
                await workers.submit(["poison"], {}, TIMEOUT, [1])
            healthy = await workers.submit(["still", "served"], {}, TIMEOUT, [1, 1])
            return caught.value, workers.stats.error_count, healthy
        finally:
            await workers.stop()

    error, errors, healthy = run(scenario())
    assert (error.status, error.type) == (500, "status_exception")
    assert error.reason == "Error in inference process: [inference process exited with code [3]]"
    assert errors == 1
    assert healthy == [b'{"text":"still"}', b'{"text":"served"}']
