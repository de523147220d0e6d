"""Webhooks: events from the outbox, POSTed as signed JSON to `RESEARCH_AGENT_WEBHOOKS`, at least once.

Events are written to `webhook_events` in the transaction that makes the change they announce (triggers, see
migrations/0013_webhooks.sql; `enqueue_event` for the rest, e.g. `alert.fired`). Each worker runs one
`WebhookDispatcher`: it fans new events out to one delivery per configured URL, claims due deliveries
(`FOR UPDATE SKIP LOCKED`, so workers share them), POSTs them and records the outcome. A 2xx delivers; anything
else is retried with exponential backoff and jitter up to `webhook_max_attempts`. A worker that dies
mid-delivery leaves its claim to run out, and another worker sends the same delivery again: receivers dedupe by
`X-Research-Agent-Delivery`. URLs pass the fetch SSRF rules when the worker starts and again at every attempt.
See docs/decisions/0024-webhooks.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
from typing import Final
from urllib.parse import urlsplit

import asyncpg

from agent.durable.background import BackgroundTask
from agent.durable.outage import database_unavailable
from agent.durable.store import outbox
from agent.durable.store.outbox import EVENT_TYPES, ClaimedDelivery, enqueue_event
from agent.errors import ConfigurationError
from agent.settings import Settings

__all__ = [
    "EVENT_TYPES",
    "SIGNATURE_HEADER",
    "WebhookDispatcher",
    "check_webhooks",
    "delivery_body",
    "destination_key",
    "enqueue_event",
    "sign",
]

EVENT_HEADER: Final = "X-Research-Agent-Event"
DELIVERY_HEADER: Final = "X-Research-Agent-Delivery"
SIGNATURE_HEADER: Final = "X-Research-Agent-Signature"
PRUNE_SECONDS: Final = 600.0
BATCH: Final = 16
"""Deliveries claimed (and sent concurrently) per round."""


def destination_key(url: str) -> str:
    """What the outbox stores for a URL: its SHA-256, never the URL (a token often sits in its path)."""
    return hashlib.sha256(url.encode()).hexdigest()


def destination_label(url: str) -> str:
    """The URL's origin, for people: `https://hooks.example.com`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of the body under `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def delivery_body(delivery: ClaimedDelivery) -> bytes:
    """The JSON sent; the same bytes on every attempt of a delivery."""
    document = {
        "id": delivery.event_id,
        "type": delivery.event_type,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode()


async def check_webhooks(settings: Settings) -> None:
    """Raise `ConfigurationError` naming each webhook URL (`RESEARCH_AGENT_WEBHOOKS`, `..._ALERT_WEBHOOKS`) that
    `fetch_url` may not reach.

    A name that does not resolve now is let through (DNS may be down for a moment); every attempt checks again.
    """
    from tools import BlockedURLError, InvalidURLError, check_webhook_url, redact_url

    allow = frozenset(settings.fetch_allow_hosts)
    problems: list[str] = []
    named = [("RESEARCH_AGENT_WEBHOOKS", url) for url in settings.webhooks]
    named += [("RESEARCH_AGENT_ALERT_WEBHOOKS", url) for url in settings.alert_webhooks]
    for variable, url in named:
        try:
            await check_webhook_url(url, allow_hosts=allow)
        except (BlockedURLError, InvalidURLError) as exc:
            problems.append(
                f"{variable}: {redact_url(url)} is refused by the same rules as fetch_url: {exc} "
                "A receiver on a private or loopback address needs its host (or host:port) in "
                "RESEARCH_AGENT_FETCH_ALLOW_HOSTS."
            )
    if problems:
        raise ConfigurationError(*problems)


class WebhookDispatcher:
    """Delivers the outbox to the configured URLs while started (one per worker); a no-op without URLs."""

    def __init__(
        self, pool: asyncpg.Pool, settings: Settings, *, worker_id: str, rng: random.Random | None = None
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.worker_id = worker_id
        self.urls: dict[str, str] = {destination_key(url): url for url in settings.alert_webhooks}
        self.alerts_only = {key: "alert.fired" for key in self.urls}
        """RESEARCH_AGENT_ALERT_WEBHOOKS hear only alerts; a URL in both lists hears everything."""
        for url in settings.webhooks:
            self.alerts_only.pop(destination_key(url), None)
            self.urls[destination_key(url)] = url
        self.claim_seconds = 2 * settings.webhook_timeout_seconds + 1.0
        """How long a claimed delivery is ours: past the attempt's time limit, so only a dead worker's runs out."""
        self._rng = rng or random.Random()
        self._background = BackgroundTask(self._run, name="webhook dispatcher")
        self._failing = False
        self._pruned_at = -PRUNE_SECONDS

    async def start(self) -> None:
        """Check the URLs (`ConfigurationError`), then deliver in the background."""
        if not self.urls or self._background.running:
            return
        await check_webhooks(self.settings)
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()

    async def _run(self) -> None:
        import logfire

        while True:
            try:
                sent = await self.deliver_due()
                self._failing = False
            except Exception as exc:  # a database blip: the next round tries again
                if not self._failing and not database_unavailable(exc):
                    logfire.warn("webhooks: {error}", error=str(exc), worker_id=self.worker_id)
                self._failing = True
                sent = 0
            if sent < BATCH:
                await asyncio.sleep(self.settings.worker_poll_seconds)

    async def deliver_due(self) -> int:
        """One round: fan out new events, claim due deliveries and send them. Returns deliveries attempted."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._pruned_at >= PRUNE_SECONDS:
            await outbox.prune(self.pool)
            self._pruned_at = loop.time()
        labels = {key: destination_label(url) for key, url in self.urls.items()}
        await outbox.fan_out(self.pool, labels, only=self.alerts_only)
        claimed = await outbox.claim_due(
            self.pool,
            worker_id=self.worker_id,
            destinations=list(self.urls),
            claim_seconds=self.claim_seconds,
            limit=BATCH,
        )
        await asyncio.gather(*(self._deliver(delivery) for delivery in claimed))
        return len(claimed)

    def retry_delay(self, attempts: int) -> float:
        """Exponential backoff with equal jitter: half the step, plus up to the other half at random."""
        step = min(
            self.settings.webhook_backoff_max_seconds, self.settings.webhook_backoff_seconds * 2.0 ** (attempts - 1)
        )
        return step / 2 + self._rng.uniform(0, step / 2)

    async def _deliver(self, delivery: ClaimedDelivery) -> None:
        import logfire

        from tools import FetchError, post_webhook

        url = self.urls[delivery.destination]
        label = destination_label(url)
        body = delivery_body(delivery)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "research-agent-webhooks",
            EVENT_HEADER: delivery.event_type,
            DELIVERY_HEADER: delivery.id,
        }
        if self.settings.webhook_secret is not None:
            headers[SIGNATURE_HEADER] = sign(body, self.settings.webhook_secret.get_secret_value())
        status: int | None = None
        try:
            answer = await post_webhook(
                url,
                body=body,
                headers=headers,
                allow_hosts=frozenset(self.settings.fetch_allow_hosts),
                timeout_seconds=self.settings.webhook_timeout_seconds,
            )
        except FetchError as exc:
            error = str(exc).replace(url, label)  # the URL may carry a token: the origin is enough
        else:
            if answer.ok:
                await outbox.record_success(self.pool, delivery, status=answer.status)
                return
            status = answer.status
            error = f"{label} answered HTTP {answer.status} {answer.reason}".rstrip()
        exhausted = delivery.attempts >= self.settings.webhook_max_attempts
        retry_in = None if exhausted else self.retry_delay(delivery.attempts)
        await outbox.record_failure(self.pool, delivery, error=error, status=status, retry_in=retry_in)
        logfire.warn(
            "webhook {event} to {destination} failed (attempt {attempt}): {error}; {next}",
            event=delivery.event_type,
            destination=label,
            attempt=delivery.attempts,
            error=error,
            next="given up" if retry_in is None else f"retrying in {retry_in:.1f}s",
            delivery_id=delivery.id,
        )
