"""The JSON Schemas the project ships in ``schema/``, read from the installed package.

A leaf every package may use: configuration, plugin manifests, streams,
rules and the OpenAPI document all validate against these files, and a wheel
carries them as the package data of ``loader.schemas``.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

SCHEMA_PACKAGE = "loader.schemas"


def load_schema(name: str) -> dict[str, Any]:
    """A JSON Schema shipped in ``schema/``, parsed from the installed package data."""
    schema: dict[str, Any] = json.loads(resources.files(SCHEMA_PACKAGE).joinpath(name).read_text(encoding="utf-8"))
    return schema
