"""Per-sample scores and embeddings from a proxy model."""
