"""Errors of every service's HTTP API as RFC 9457 problem details (`application/problem+json`).

`install_problems(app, max_body_bytes)` makes every 4xx/5xx the app answers a problem: members
`type`, `title`, `status`, `detail`, `instance`, plus extension members where a problem type
defines them (`errors` of an invalid request). It also:
- refuses a body over `max_body_bytes` with 413 without reading it whole: at once when its
  Content-Length says so (before any route runs), else as soon as the bytes streamed in pass it;
- answers an unexpected exception with a bare 500 problem (logged here, never shown);
- never echoes more than `MAX_ECHO_CHARS` of any piece of the caller's input, nor more than
  `MAX_FIELD_ERRORS` errors (FastAPI's own 422 body repeats the whole input, so a 30 MB body
  would come back in the error);
- declares the problems in the OpenAPI document under `application/problem+json`.

Routes declare their problems with `problem_responses({404: "Unknown asset", ...})`; a route
taking a JSON body adds `dependencies=[Depends(require_json)]` for a 415 on any other type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger()

PROBLEM_JSON = "application/problem+json"
MAX_ECHO_CHARS = 200  # of any piece of the caller's input repeated in a problem
MAX_FIELD_ERRORS = 20  # listed in an invalid request's `errors` (a body may break thousands)
INVALID_REQUEST = "urn:nexwatt:problem:invalid-request"


class Problem(BaseModel):
    """An RFC 9457 problem; a problem `type` other than `about:blank` may add members."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        "about:blank",
        description="URI naming the kind of problem; `about:blank`: the HTTP status says it all",
    )
    title: str = Field(description="Short summary of the problem type")
    status: int = Field(ge=400, le=599, description="The HTTP status code")
    detail: str | None = Field(None, description="What went wrong in this occurrence")
    instance: str | None = Field(None, description="The request path it happened on")


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the input: `body.capacity_kw`, `path.asset_id`")
    reason: str


class InvalidRequest(Problem):
    """The request is malformed (type `urn:nexwatt:problem:invalid-request`); `errors` names
    each field that is wrong and why."""

    errors: list[FieldError]


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def bounded(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`text` cut to `limit` characters, lone surrogates escaped (they can't be sent as UTF-8)."""
    cut = text if len(text) <= limit else text[:limit] + "…"
    return cut.encode("utf-8", "backslashreplace").decode("utf-8")


def problem(
    request: Request,
    status: int,
    detail: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    """A problem of type `about:blank`, titled with the status's reason phrase."""
    body = Problem(
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=_instance(request),
    )
    return problem_response(body, headers)


def _instance(request: Request) -> str:
    # The path as a URI reference: percent-encoded again (the ASGI path is decoded).
    return bounded(quote(request.url.path))


def problem_response(body: Problem, headers: Mapping[str, str] | None = None) -> ProblemResponse:
    return ProblemResponse(
        body.model_dump(mode="json", exclude_none=True), body.status, headers=headers
    )


def field_errors(errors: Sequence[Any]) -> list[FieldError]:
    """FastAPI's/pydantic's error dicts as {field, reason}, without the input they carry."""
    found = []
    for error in errors[:MAX_FIELD_ERRORS]:
        loc, reason = error["loc"], error["msg"]
        if error["type"] == "json_invalid":  # loc is ("body", character position)
            loc, reason = loc[:1], f"{reason} at character {loc[1]}: {error['ctx']['error']}"
        field = ".".join(bounded(str(part), 64) for part in loc)
        found.append(FieldError(field=field, reason=bounded(reason)))
    return found


def problem_responses(described: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status described, as a problem (422 as an invalid
    request), and the 500 every route may answer."""
    declared: dict[int | str, dict[str, Any]] = {
        status: {"model": InvalidRequest if status == 422 else Problem, "description": text}
        for status, text in described.items()
    }
    declared[500] = {"model": Problem, "description": "An unexpected error (logged, not shown)"}
    return declared


async def require_json(request: Request) -> None:
    """Route dependency: the body must be JSON (`application/json` or `application/*+json`),
    415 otherwise (FastAPI would try to validate the raw bytes and answer 422)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        sent = bounded(media_type, 64) or "no Content-Type"
        raise HTTPException(415, f"the body must be application/json, not {sent}")


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413.

    Starlette's own limit (`max_body_size`) lets a route run and replaces its answer, so a
    status change would be applied and then reported as 413; this one refuses before."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        too_large = f"the request body is limited to {self.max_bytes} bytes"
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await problem(request, 413, too_large)(scope, receive, send)
            return
        received_bytes = 0

        async def counting() -> Message:
            nonlocal received_bytes
            message = await receive()
            if message["type"] == "http.request":
                received_bytes += len(message.get("body", b""))
                if received_bytes > self.max_bytes:
                    raise HTTPException(413, too_large)  # reaches the app's handler below
            return message

        await self.app(scope, counting, send)


def install_problems(app: FastAPI, max_body_bytes: int) -> None:
    """Make every error `app` answers a problem, limit request bodies, document both."""

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException) -> ProblemResponse:
        return problem(request, exc.status_code, bounded(str(exc.detail)), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> ProblemResponse:
        errors = field_errors(exc.errors())
        body = InvalidRequest(
            type=INVALID_REQUEST,
            title="The request is malformed",
            status=422,
            detail=f"{len(exc.errors())} invalid field(s), first {errors[0].field}: "
            f"{errors[0].reason}",
            instance=_instance(request),
            errors=errors,
        )
        return problem_response(body)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> ProblemResponse:
        log.error("request failed", method=request.method, path=request.url.path, exc_info=exc)
        return problem(request, 500)

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    _document_problems_as_problem_json(app)


def _document_problems_as_problem_json(app: FastAPI) -> None:
    # FastAPI documents a declared response's model under the route's own media type
    # (application/json); errors are sent as application/problem+json.
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for operations in schema["paths"].values():
                for operation in operations.values():
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        if status[0] in "45" and "application/json" in content:
                            content[PROBLEM_JSON] = content.pop("application/json")
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
