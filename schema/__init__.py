"""JSON Schemas of the loader's files; installed as the package ``loader.schemas`` (see pyproject.toml)."""
