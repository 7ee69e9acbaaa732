"""Continuous training: triggers, history mixing, multi-chunk data, proactive steps and the retrain lineage."""
