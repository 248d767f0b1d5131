"""The outbox relay: publishes committed asset changes to `asset.registered`, then marks them sent.

Per batch, in one transaction: claim the oldest unsent rows (`FOR UPDATE SKIP LOCKED`, at most
one per asset, see `store.claim_unsent`), publish them one by one in `id` order, each acknowledged
by all in-sync replicas, mark the published ones sent, commit. Hence:
- nothing is lost: a row is marked sent only after the broker has it, and a row stays in the
  table until then, whatever crashes;
- a crash or an error between publishing and commit re-publishes the row later with the same
  event id (`<asset_id>:v<version>`), so consumers can drop the duplicate;
- replicas can run side by side: each skips rows another holds, and an asset's next version is
  not eligible before its previous one is sent, so per-asset order holds on the topic.
"""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from prometheus_client import Counter, Gauge

from nexwatt_onboarding import store
from nexwatt_shared.contracts import AssetRegistered
from nexwatt_shared.kafka.producer import EventProducer
from nexwatt_shared.topics import ASSET_REGISTERED

log = structlog.get_logger()
PUBLISHED = Counter("nexwatt_onboarding_outbox_published_total", "Outbox rows published")
BACKLOG = Gauge("nexwatt_onboarding_outbox_backlog", "Outbox rows not published yet")


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: EventProducer,
        *,
        poll_s: float = 0.15,
        batch_size: int = 100,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.poll_s = poll_s
        self.batch_size = batch_size
        self.max_backoff_s = max_backoff_s
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Publish now rather than at the next poll (called after a change is committed)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """The worker: relay until `stop`; rows left unsent wait for the next start."""
        backoff_s = self.poll_s
        while not stop.is_set():
            self._wake.clear()  # before reading, so a change committed meanwhile wakes us again
            try:
                sent = await self.publish_batch()
                backoff_s = self.poll_s
            except Exception:
                log.exception("publishing the outbox failed; retrying", retry_in_s=backoff_s)
                await self._pause(stop, backoff_s, wakeable=False)
                backoff_s = min(backoff_s * 2, self.max_backoff_s)
                continue
            if sent == 0:
                await self._pause(stop, self.poll_s, wakeable=True)

    async def _pause(self, stop: asyncio.Event, timeout_s: float, *, wakeable: bool) -> None:
        """Sleep `timeout_s`, or less if `stop` is set (or `wake()` is called, if wakeable)."""
        waits = [asyncio.create_task(stop.wait())]
        if wakeable:
            waits.append(asyncio.create_task(self._wake.wait()))
        await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()

    async def publish_batch(self) -> int:
        """Publish one batch; return how many rows were published and marked sent."""
        sent: list[int] = []
        failure: Exception | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            for row in await store.claim_unsent(conn, self.batch_size):
                payload = AssetRegistered.model_validate_json(row["payload"])
                try:
                    await self.producer.publish(
                        ASSET_REGISTERED, payload, event_id=row["event_id"], time=row["created_at"]
                    )
                except Exception as exc:
                    failure = exc  # keep what was published: mark it sent, retry the rest later
                    break
                sent.append(row["id"])
                log.info("published", asset_id=payload.asset_id, event_id=row["event_id"])
            await store.mark_sent(conn, sent)
            BACKLOG.set(await store.backlog(conn))
        PUBLISHED.inc(len(sent))
        if failure is not None:
            raise failure
        return len(sent)
