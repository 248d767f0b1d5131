"""Rules of the repository's shape that would otherwise erode quietly."""

from __future__ import annotations

import ast
from pathlib import Path

from nexwatt_onboarding import openapi
from nexwatt_shared.schema_export import render_all

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schemas_match_the_contracts() -> None:
    expected = {**render_all(), "openapi.json": openapi.render()}
    committed = {p.name: p.read_text() for p in (ROOT / "schemas").glob("*.json")}
    stale = sorted(
        n for n in expected.keys() | committed.keys() if expected.get(n) != committed.get(n)
    )
    assert not stale, f"schemas/ is stale for {stale}: run `make schemas` and commit"


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_services_never_import_each_other_and_shared_imports_no_service() -> None:
    services = {p.name for p in (ROOT / "services").iterdir() if p.name.startswith("nexwatt_")}
    offenders = []
    for package in ["shared/nexwatt_shared", *(f"services/{s}" for s in services)]:
        own = Path(package).name
        for path in (ROOT / package).rglob("*.py"):
            crossing = (_imported_roots(path) & services) - {own}
            if crossing:
                offenders.append(f"{path.relative_to(ROOT)} imports {sorted(crossing)}")
    assert not offenders, offenders
