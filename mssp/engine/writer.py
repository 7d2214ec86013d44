"""Group commit: every engine write joins the next transaction, so a burst of host results costs
one commit instead of one each, while each caller still learns when its write is durable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mssp.engine.tx import Tx, write_transaction
from mssp.errors import DatabaseError

log = logging.getLogger(__name__)

Op = Callable[[Tx], Awaitable[Any]]

_ATTEMPTS = 4


class Merged:
    """An op that runs together with its neighbours of the same ``run`` in a transaction: a burst
    of host results is one statement for all, not one (or a database round trip) per host.

    ``run(tx, items)`` writes every item; the op's result is None. Alone, it runs with its one
    item, so a batch that fails and is retried op by op still isolates the bad item.
    """

    __slots__ = ("item", "run")

    def __init__(self, run: Callable[[Tx, list[Any]], Awaitable[None]], item: Any) -> None:
        self.run = run
        self.item = item

    async def __call__(self, tx: Tx) -> None:
        await self.run(tx, [self.item])


async def _run_ops(tx: Tx, ops: list[Op]) -> list[Any]:
    """Run ``ops`` in order in ``tx``; consecutive Merged ops of the same kind as one call."""
    results: list[Any] = []
    index = 0
    while index < len(ops):
        op = ops[index]
        index += 1
        if not isinstance(op, Merged):
            results.append(await op(tx))
            continue
        items = [op.item]
        while index < len(ops) and isinstance(ops[index], Merged):
            following = ops[index]
            assert isinstance(following, Merged)
            if following.run is not op.run:
                break
            items.append(following.item)
            index += 1
        await op.run(tx, items)
        results.extend([None] * len(items))
    return results


class StateWriter:
    """Serialises the engine's writes; batches whatever is pending into one transaction."""

    def __init__(self) -> None:
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flushed = asyncio.Event()
        self._flushed.set()
        self.transactions = 0
        """Transactions committed (for the overhead figures)."""
        self.ops = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="mssp-engine-writer")

    async def close(self) -> None:
        """Finish what is pending, then stop."""
        if self._task is None:
            return
        await self.flush()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def write(self, op: Op) -> Any:
        """Run ``op`` inside the next transaction; return its result once committed.

        The write is durable even if the caller is cancelled while waiting.
        """
        self.start()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # A caller cancelled while waiting never reads a failure: mark it read (no "exception
        # was never retrieved"); the failure is logged by _attempt already.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending.append((op, future))
        self._flushed.clear()
        self._wake.set()
        return await asyncio.shield(future)

    @property
    def busy(self) -> bool:
        return not self._flushed.is_set()

    async def flush(self) -> None:
        """Return once every write submitted so far is committed (or failed)."""
        await self._flushed.wait()

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._commit(batch)
            if not self._pending:
                self._flushed.set()

    async def _commit(self, batch: list[tuple[Op, asyncio.Future[Any]]]) -> None:
        """Commit the batch; if it keeps failing, commit its writes one by one, so one bad
        write (a value the database refuses) fails alone instead of taking its neighbours'
        results with it."""
        error = await self._attempt(batch, attempts=1 if len(batch) > 1 else _ATTEMPTS)
        if error is None:
            return
        if len(batch) > 1:
            for item in batch:
                await self._commit([item])
            return
        failure = DatabaseError(f"cannot record run state: {type(error).__name__}: {error}")
        for _, future in batch:
            if not future.done():
                future.set_exception(failure)

    async def _attempt(
        self, batch: list[tuple[Op, asyncio.Future[Any]]], *, attempts: int
    ) -> BaseException | None:
        """Try to commit ``batch`` up to ``attempts`` times; the last error, or None once done."""
        error: BaseException | None = None
        for attempt in range(attempts):
            try:
                async with write_transaction() as tx:
                    results = await _run_ops(tx, [op for op, _ in batch])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # driver errors: locked database, lost connection
                error = exc
                log.warning("engine write failed (attempt %d): %s", attempt + 1, exc)
                await asyncio.sleep(0.05 * 2**attempt)
                continue
            self.transactions += 1
            self.ops += len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            return None
        return error
