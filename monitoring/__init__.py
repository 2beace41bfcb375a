"""Monitoring: inference-log windows, Evidently drift, labelled performance, decisions,
reports, and the retrain / revert pull requests that follow (see docs/MONITORING.md)."""
