"""What every HTTP connector shares: a request budget checked before sending, retries with
exponential backoff and full jitter, timeouts, and errors that say what the vendor answered.

Retried: connection errors, timeouts, 429 (after its `Retry-After` when given) and 5xx.
Not retried: any other 4xx (bad key, unknown site, bad parameters): `VendorHTTPError` with the
status and the vendor's own message. A budget that is spent refuses the request before it is
sent (`BudgetExhausted`); one that frees up within `RetryPolicy.max_wait_s` is waited for.

Secrets never reach a log line or an exception: URLs are reported by path only (SolarEdge's key
travels in the query string), and httpx's own request log is silenced by the runner.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from nexwatt_telemetry_ingest.connectors.base import Fetched, Site, live_payload, window_event_id

DAY_S = 86_400
MONTH_S = 31 * DAY_S  # a sliding 31 days holds every calendar month


class VendorError(Exception):
    """A vendor request that failed for good (after retries, or not worth retrying)."""


class VendorHTTPError(VendorError):
    """The vendor answered with an error status; `message` is what it said."""

    def __init__(self, vendor: str, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{vendor} {method} {path}: HTTP {status}: {message}")
        self.status = status
        self.message = message


class BudgetExhausted(VendorError):
    """The request budget refused a request before it was sent."""

    def __init__(self, scope: str, quota: Quota, retry_in_s: float) -> None:
        super().__init__(
            f"request budget {scope} spent ({quota.limit} per {quota.period_s:.0f} s):"
            f" next request in {retry_in_s:.0f} s"
        )
        self.retry_in_s = retry_in_s


@dataclass(frozen=True)
class Quota:
    """At most `limit` requests in any `period_s` seconds, per site or per account (key)."""

    limit: int
    period_s: int
    per_site: bool = False


class RequestBudget:
    """Sliding-window request counters, checked and taken before each request is sent.

    A sliding window is at least as strict as any fixed window the vendor may reset at
    (midnight in its own time zone, the first of the month), so staying within it never hits
    the vendor's limit. Counters live in memory: after a restart the runner's cursors keep it
    from polling a site again before its next slot."""

    def __init__(self, quotas: Sequence[Quota], clock: Callable[[], float] = time.time) -> None:
        self.quotas = tuple(quotas)
        self._clock = clock
        self._sent: dict[tuple[int, str], deque[float]] = {}

    def take(self, site_id: str) -> None:
        """Count one request of `site_id`, or raise BudgetExhausted (nothing counted)."""
        now = self._clock()
        windows = []
        for i, quota in enumerate(self.quotas):
            scope = f"site {site_id}" if quota.per_site else "account"
            sent = self._sent.setdefault((i, scope), deque())
            while sent and sent[0] <= now - quota.period_s:
                sent.popleft()
            if len(sent) >= quota.limit:
                raise BudgetExhausted(scope, quota, sent[0] + quota.period_s - now)
            windows.append(sent)
        for sent in windows:
            sent.append(now)


def poll_interval_s(
    quotas: Sequence[Quota], requests_per_poll: int, sites: int, reserve: float, align_s: int
) -> int:
    """Seconds between polls of one site so that the planned requests use at most
    (1 - reserve) of every quota, the rest being kept for retries; rounded up to `align_s`.

    E.g. SolarEdge, 3 endpoints, 300 requests a day per site, reserve 4 %: 288 / 3 = 96 polls a
    day, one every 900 s. Ten sites on one account key (300 a day in all): 28.8 / 3 = 9.6 polls
    a day per site, one every 9000 s."""
    interval = float(align_s)
    for quota in quotas:
        sharing = 1 if quota.per_site else sites
        polls = quota.limit * (1 - reserve) / (requests_per_poll * sharing)
        interval = max(interval, quota.period_s / polls)
    return math.ceil(interval / align_s) * align_s


def backoff_s(attempt: int, base_s: float, cap_s: float, rand: Callable[[], float]) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^attempt)) seconds (attempt 0 first)."""
    return rand() * min(cap_s, base_s * 2**attempt)


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """A `Retry-After` header in seconds: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # requests in all, the first included
    base_s: float = 1.0
    cap_s: float = 60.0
    max_wait_s: float = 120.0  # a longer Retry-After, or a budget further off, fails now


_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class VendorClient:
    """One vendor's HTTP client: base URL, timeouts, concurrency cap, budget and retries."""

    def __init__(
        self,
        vendor: str,
        base_url: str,
        *,
        budget: RequestBudget | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        max_concurrent: int = 4,
        verify_tls: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.vendor = vendor
        self.budget = budget
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=base_url, timeout=timeout_s, verify=verify_tls, follow_redirects=False
        )
        self._slots = asyncio.Semaphore(max_concurrent)
        self._sleep = sleep
        self._rand = rand

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        site_id: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
    ) -> Any:
        """Send with retries and return the parsed JSON body. `site_id` is whose budget pays."""
        for attempt in range(self.retry.attempts):
            await self._take_budget(site_id)
            last = attempt == self.retry.attempts - 1
            try:
                async with self._slots:
                    response = await self._http.request(
                        method, path, params=params, headers=headers, json=json, data=data
                    )
            except httpx.HTTPError as exc:
                if last or not isinstance(exc, _TRANSIENT):
                    raise VendorError(
                        f"{self.vendor} {method} {path}: {type(exc).__name__} after"
                        f" {attempt + 1} attempts"
                    ) from None  # httpx's message may carry the URL, and with it a key
                await self._sleep(self._backoff(attempt))
                continue
            status = response.status_code
            if status < 300:
                return self._body(response, method, path)
            retryable = status == 429 or status >= 500
            if not retryable or last:
                raise VendorHTTPError(self.vendor, method, path, status, _message(response))
            wait = retry_after_s(response.headers.get("Retry-After"), datetime.now(UTC))
            if wait is None:
                wait = self._backoff(attempt)
            elif wait > self.retry.max_wait_s:
                message = f"{_message(response)} (retry after {wait:.0f} s)"
                raise VendorHTTPError(self.vendor, method, path, status, message)
            await self._sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff(self, attempt: int) -> float:
        return backoff_s(attempt, self.retry.base_s, self.retry.cap_s, self._rand)

    async def _take_budget(self, site_id: str) -> None:
        if self.budget is None:
            return
        try:
            self.budget.take(site_id)
        except BudgetExhausted as exc:
            if exc.retry_in_s > self.retry.max_wait_s:
                raise
            await self._sleep(exc.retry_in_s)  # e.g. a per-minute quota: wait for its slot
            self.budget.take(site_id)

    def _body(self, response: httpx.Response, method: str, path: str) -> Any:
        try:
            return response.json()
        except (ValueError, RecursionError) as exc:
            raise VendorError(
                f"{self.vendor} {method} {path}: HTTP {response.status_code} with a body that is"
                f" not JSON: {response.text[:200]!r}"
            ) from exc


def _message(response: httpx.Response) -> str:
    """The vendor's error text: a JSON `message`, `detail`, `error`... field, else the body's
    start."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        body = None
    if isinstance(body, dict):
        for key in ("message", "detail", "error_description", "error", "title", "String", "reason"):
            if isinstance(body.get(key), str | list | dict):
                return str(body[key])[:500]
    return response.text[:500] or response.reason_phrase


class HttpConnector:
    """The parts of a `PacedConnector` every HTTP connector shares; a vendor module sets the
    class attributes and writes `fetch_format`."""

    vendor: str
    formats: tuple[str, ...]
    align_s: int = 900
    delay_s: int = 0
    windows: Mapping[str, timedelta] = {}  # the longest window one request may ask, per format

    def __init__(
        self, client: VendorClient, reserve: float = 0.04, clock: Callable[[], float] = time.time
    ) -> None:
        self.client = client
        self.reserve = reserve
        self.clock = clock

    def max_window(self, fmt: str) -> timedelta | None:
        return self.windows.get(fmt)

    def poll_s(self, sites: int) -> int:
        quotas = self.client.budget.quotas if self.client.budget else ()
        return poll_interval_s(quotas, len(self.formats), sites, self.reserve, self.align_s)

    async def fetch(self, site: Site, since: datetime, until: datetime) -> list[Fetched]:
        found = []
        for fmt in self.formats:
            cap = self.max_window(fmt)
            end = min(until, since + cap) if cap is not None else until
            found.append(await self.fetch_format(site, fmt, since, end))
        return found

    async def fetch_format(self, site: Site, fmt: str, since: datetime, until: datetime) -> Fetched:
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.client.aclose()

    def fetched(self, site: Site, fmt: str, since: datetime, until: datetime, body: Any) -> Fetched:
        """The body as received, with the window's event id; a JSON scalar is no payload."""
        if not isinstance(body, dict | list):
            raise VendorError(f"{self.vendor} {fmt}: expected a JSON object or array: {body!r:.80}")
        return Fetched(fmt, body, window_event_id(self.vendor, site.site_id, fmt, since, until))

    def fetched_live(
        self, site: Site, fmt: str, since: datetime, until: datetime, body: Any
    ) -> Fetched:
        """Live values carry no time of their own: `live_payload` labels them on the grid."""
        return self.fetched(site, fmt, since, until, live_payload(until, self.align_s, body))
