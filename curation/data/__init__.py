"""Data set versions: the contract, sources, the Parquet store and DVC versioning."""
