"""Monitoring a deployed variant: Prometheus metrics on the serving path, label-free drift against the data the
variant was measured on, rolling mAP when labels arrive late, and a replay harness (docs/monitoring.md)."""
