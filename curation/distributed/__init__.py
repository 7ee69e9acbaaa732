"""Larger-than-memory pairwise subset selection on Dask (Böther et al., MLSys 2025)."""
