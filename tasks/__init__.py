"""Prefect tasks: one side effect each, retries declared on the decorator."""
