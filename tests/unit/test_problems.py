"""RFC 9457 problems for every error an app answers, its body limit and its OpenAPI document,
on a small app of its own (driven in-process through httpx's ASGI transport)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict

from nexwatt_shared.problems import (
    MAX_ECHO_CHARS,
    MAX_FIELD_ERRORS,
    PROBLEM_JSON,
    bounded,
    install_problems,
    problem_responses,
    require_json,
)

LIMIT_BYTES = 1000


class Thing(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    size_kw: float


def small_app(calls: list[str]) -> FastAPI:
    app = FastAPI()
    install_problems(app, max_body_bytes=LIMIT_BYTES)

    @app.post(
        "/things",
        dependencies=[Depends(require_json)],
        responses=problem_responses({413: "Too large", 415: "Not JSON", 422: "Malformed"}),
    )
    async def create(thing: Thing) -> Thing:
        calls.append(thing.name)
        return thing

    @app.post("/things/{name}/touch", responses=problem_responses({409: "Touched"}))
    async def touch(name: str) -> dict[str, str]:
        calls.append(name)  # a side effect that a refused request must not have
        if name == "taken":
            raise HTTPException(409, "already touched")
        return {"touched": name}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("password=hunter2 in a connection string")

    return app


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
async def client(calls: list[str]) -> AsyncIterator[httpx.AsyncClient]:
    # raise_app_exceptions=False: Starlette re-raises a 500's exception after answering it.
    transport = httpx.ASGITransport(app=small_app(calls), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


def post_json(text: str) -> dict:
    return {"content": text, "headers": {"content-type": "application/json"}}


async def test_an_http_error_is_a_problem(client: httpx.AsyncClient) -> None:
    answer = await client.post("/things/taken/touch")
    assert answer.status_code == 409
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.json() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "already touched",
        "instance": "/things/taken/touch",
    }
    unrouted = await client.get("/nowhere")
    assert (unrouted.status_code, unrouted.headers["content-type"]) == (404, PROBLEM_JSON)
    assert unrouted.json()["title"] == "Not Found"
    wrong_method = await client.delete("/things")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"  # the exception's headers are kept


async def test_an_invalid_request_names_each_field_without_echoing_the_input(
    client: httpx.AsyncClient,
) -> None:
    secret = "s" * 600
    answer = await client.post("/things", json={"name": 7, "size_kw": secret})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM_JSON
    body = answer.json()
    assert body["type"] == "urn:nexwatt:problem:invalid-request"
    assert body["detail"] == "2 invalid field(s), first body.name: Input should be a valid string"
    assert body["errors"] == [
        {"field": "body.name", "reason": "Input should be a valid string"},
        {
            "field": "body.size_kw",
            "reason": "Input should be a valid number, unable to parse string as a number",
        },
    ]
    assert "sss" not in answer.text


async def test_a_nan_literal_is_refused_not_a_500(client: httpx.AsyncClient) -> None:
    # Python's JSON parser accepts NaN; FastAPI's own 422 echoed it and failed to encode it.
    for literal in ["NaN", "Infinity", "-Infinity"]:
        answer = await client.post("/things", **post_json(f'{{"name": {literal}, "size_kw": 1}}'))
        assert answer.status_code == 422, literal
        assert answer.json()["errors"] == [
            {"field": "body.name", "reason": "Input should be a valid string"}
        ]
        finite = await client.post("/things", **post_json(f'{{"name": "a", "size_kw": {literal}}}'))
        assert finite.json()["errors"] == [
            {"field": "body.size_kw", "reason": "Input should be a finite number"}
        ]


async def test_echoed_pieces_and_the_number_of_errors_are_bounded(
    client: httpx.AsyncClient,
) -> None:
    # 30 unknown fields, the first named by 500 characters.
    extra = {"k" * 500: 1} | {f"x{i}": 1 for i in range(29)}
    text = json.dumps({"name": "a", "size_kw": 1, **extra})
    answer = await client.post("/things", **post_json(text))
    assert answer.status_code == 422
    body = answer.json()
    long_field = "body." + "k" * 64 + "…"
    assert (
        body["detail"] == f"30 invalid field(s), first {long_field}: Extra inputs are not permitted"
    )
    assert len(body["errors"]) == MAX_FIELD_ERRORS == 20
    assert body["errors"][0]["field"] == long_field
    broken_json = await client.post("/things", **post_json('{"name": "a",, "size_kw": 1}'))
    assert broken_json.json()["errors"] == [
        {
            "field": "body",
            "reason": "JSON decode error at character 13: Expecting property name enclosed in "
            "double quotes",
        }
    ]


def test_bounded_cuts_long_text_and_escapes_lone_surrogates() -> None:
    assert bounded("abc") == "abc"
    assert bounded("a" * 300) == "a" * MAX_ECHO_CHARS + "…"
    assert bounded("x\ud800y") == "x\\ud800y"
    assert bounded("x\ud800y").encode("utf-8")  # sendable


async def test_a_body_over_the_limit_is_refused_before_the_route_runs(
    client: httpx.AsyncClient, calls: list[str]
) -> None:
    at_limit = json.dumps({"name": "a" * (LIMIT_BYTES - 26), "size_kw": 1})
    assert len(at_limit) == LIMIT_BYTES
    assert (await client.post("/things", **post_json(at_limit))).status_code == 200
    over = await client.post("/things", **post_json(at_limit + " "))
    assert over.status_code == 413
    assert over.headers["content-type"] == PROBLEM_JSON
    assert over.json()["detail"] == "the request body is limited to 1000 bytes"
    # Content-Length says too much: the status change is never applied.
    touched = await client.post("/things/x/touch", content=b"z" * (LIMIT_BYTES + 1))
    assert touched.status_code == 413
    assert calls == ["a" * (LIMIT_BYTES - 26)]


async def test_a_streamed_body_is_refused_once_its_bytes_pass_the_limit(
    client: httpx.AsyncClient,
) -> None:
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"name": "'
        for _ in range(100):  # 40 kB on offer, in 400-byte chunks
            sent.append(400)
            yield b"a" * 400

    # No Content-Length: httpx sends it chunked.
    answer = await client.post(
        "/things", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413
    # 10 + 3 x 400 bytes pass the 1000; the ASGI transport has read one chunk ahead at most.
    assert sum(sent) <= 4 * 400


async def test_only_json_is_accepted(client: httpx.AsyncClient) -> None:
    as_text = await client.post(
        "/things", content=b'{"name": "a", "size_kw": 1}', headers={"content-type": "text/plain"}
    )
    assert as_text.status_code == 415
    assert as_text.json()["detail"] == "the body must be application/json, not text/plain"
    typed = await client.post(
        "/things",
        content=b'{"name": "a", "size_kw": 1}',
        headers={"content-type": "application/merge-patch+json; charset=utf-8"},
    )
    assert typed.status_code == 200


async def test_an_unexpected_error_is_logged_and_shown_without_internals(
    client: httpx.AsyncClient,
) -> None:
    with structlog.testing.capture_logs() as logs:
        answer = await client.get("/boom")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == PROBLEM_JSON
    assert answer.json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "instance": "/boom",
    }
    assert [(e["event"], e["path"], e["log_level"]) for e in logs] == [
        ("request failed", "/boom", "error")
    ]
    assert isinstance(logs[0]["exc_info"], RuntimeError)


def test_the_openapi_document_declares_problems_as_problem_json(calls: list[str]) -> None:
    responses = small_app(calls).openapi()["paths"]["/things"]["post"]["responses"]
    assert sorted(responses) == ["200", "413", "415", "422", "500"]
    for status in ["413", "415", "500"]:
        assert responses[status]["content"] == {
            PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
        }
    assert responses["422"]["content"] == {
        PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/InvalidRequest"}}
    }
    assert responses["200"]["content"].keys() == {"application/json"}
