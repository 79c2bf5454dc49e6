"""The public Python API: the operations the CLI runs, one module per concept."""
