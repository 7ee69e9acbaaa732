"""Continuous training: when to retrain (triggers) and what each step trains on (history mixing)."""
