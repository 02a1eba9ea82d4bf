"""Notebook -> typed task graph: parsing, static types, validation (no user imports).

Also the declared types' run-time side, `value_checks` (live values against
evaluated annotations), imported by both the magics' kernel and task kernels.
"""
