"""Typer sub-apps, one module per area; heavy libraries are imported inside the commands."""
