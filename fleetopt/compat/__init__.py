"""Compatibility models: the published 1/W model (``paper``)."""
