"""The `edgefleet` command line (typer); heavy imports happen inside the commands."""
