"""Prefect flows: composition of library calls only (the library never imports Prefect)."""
