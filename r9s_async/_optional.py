"""Importing an optional dependency, or saying which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["import_optional"]


def import_optional(name: str, extra: str) -> ModuleType:
    """Import an optional dependency, or say which extra installs it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(
            f"this needs {name.partition('.')[0]}, which is not installed; "
            f"install it with: pip install 'r9s_async[{extra}]'"
        ) from exc
