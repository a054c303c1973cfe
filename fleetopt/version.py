"""The fleetopt version, recorded in every plan's ``inputs`` (kept in step with pyproject.toml)."""

__version__ = "0.1.0"
