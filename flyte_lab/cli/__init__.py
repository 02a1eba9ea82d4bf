"""The `flyte-lab` command line."""
