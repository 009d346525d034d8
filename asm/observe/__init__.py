"""Watching the fleet: worker status, progress, metrics, Prometheus and `asm status`."""
