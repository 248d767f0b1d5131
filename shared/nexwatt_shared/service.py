"""Running a service process: its workers, its HTTP surface, and a clean stop on SIGTERM.

Every service's `bootstrap()` returns a `ServiceProcess`; `ServiceProcess.run()` is the whole
lifetime: start the workers (consumer loops) and the HTTP server, wait for SIGTERM/SIGINT or a
worker's death, let the workers finish what they hold, then close resources in reverse order.

The HTTP surface always has `/healthz` (the process is alive), `/readyz` (every dependency
answers and the consumers have caught up) and `/metrics` (Prometheus).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import structlog
import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from nexwatt_shared.settings import ServiceSettings

log = structlog.get_logger()

Worker = Callable[[asyncio.Event], Awaitable[None]]
Closer = Callable[[], Awaitable[None]]
ReadinessCheck = Callable[[], Awaitable[bool]]


def health_app(
    title: str, checks: dict[str, ReadinessCheck], app: FastAPI | None = None
) -> FastAPI:
    """Add /healthz, /readyz and /metrics to `app` (or to a new bare app)."""
    app = app or FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(response: Response) -> dict[str, object]:
        results: dict[str, bool] = {}
        for name, check in checks.items():
            try:
                results[name] = bool(await asyncio.wait_for(check(), timeout=2))
            except Exception:
                results[name] = False
        ready = all(results.values())
        response.status_code = 200 if ready else 503
        return {"ready": ready, "checks": results}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside our own loop: the process, not uvicorn, owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class ServiceProcess:
    settings: ServiceSettings
    app: FastAPI
    workers: list[Worker] = field(default_factory=list)
    closers: list[Closer] = field(default_factory=list)  # closed in reverse order

    async def run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = _EmbeddedServer(
            uvicorn.Config(
                self.app,
                host=self.settings.http_host,
                port=self.settings.http_port,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
        )
        tasks = [asyncio.create_task(worker(stop)) for worker in self.workers]
        http = asyncio.create_task(server.serve())
        log.info("service started", port=self.settings.http_port)
        failed: BaseException | None = None
        try:
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait(
                [stopping, http, *tasks], return_when=asyncio.FIRST_COMPLETED
            )
            for task in done - {stopping}:
                # A worker that returns as soon as it sees `stop` may finish before `stopping`
                # does: that is the stop, not a failure.
                failed = task.exception() or (
                    None if stop.is_set() else RuntimeError(f"{task.get_name()} ended on its own")
                )
                if failed is not None:
                    log.error("a worker ended; stopping the service", error=repr(failed))
            stop.set()
            stopping.cancel()
            # Workers see `stop`, finish the batch in hand and commit.
            results = await asyncio.gather(*tasks, return_exceptions=True)
            failed = failed or next((r for r in results if isinstance(r, BaseException)), None)
        finally:
            server.should_exit = True
            await asyncio.gather(http, return_exceptions=True)
            for close in reversed(self.closers):
                try:
                    await close()
                except Exception:
                    log.exception("closing a resource failed")
            log.info("service stopped")
        if failed is not None:
            raise SystemExit(1)
