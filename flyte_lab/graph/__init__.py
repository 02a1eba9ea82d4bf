"""Notebook -> typed task graph: parsing, static types, validation (no user imports)."""
