"""Prefect tasks: thin wrappers, one pipeline function each."""
