"""Prefect flows: they only orchestrate tasks."""
