"""Measuring what training costs and what it buys: the compute ledger and accuracy per compute."""
