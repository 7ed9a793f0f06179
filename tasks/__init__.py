"""Prefect task shells around leadflow's core: retries, timeouts, logging and artifacts."""
