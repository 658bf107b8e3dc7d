"""Test-only helpers shared by several test directories (never part of the installed package)."""
