"""Prefect deployment definitions of edgefleet's flows (served by `edgefleet up`)."""
