"""mw bench: scenarios that measure throughput, latency, failover and scale (see scenarios.py)."""
