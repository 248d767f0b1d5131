"""Argument types the command-line tools share."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime


def moment(text: str) -> datetime:
    """An ISO 8601 date or datetime (`--since`); one without an offset is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or datetime: {text!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
