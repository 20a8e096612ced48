"""Prefect flows: composition of tasks; parameters are pipeline config models."""
