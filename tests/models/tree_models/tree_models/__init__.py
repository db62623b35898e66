"""Tree-ensemble test models (see pyproject.toml)."""
