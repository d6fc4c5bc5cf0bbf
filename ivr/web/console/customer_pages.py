"""Scaffold: replaced by the module's real implementation."""

from __future__ import annotations

from typing import Any


def setup(app: Any, deps: Any) -> None:
    return None
