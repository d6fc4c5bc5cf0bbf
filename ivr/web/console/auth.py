"""Scaffold: replaced by the module's real implementation."""

from __future__ import annotations

from typing import Any


def setup(app: Any, deps: Any) -> None:
    return None


def current_user(request: Any) -> Any:
    return None


def csrf_token(request: Any) -> str:
    return ""
