"""Measuring on this host: fresh-process timing and memory, host energy counters,
and the modelled device latency and energy (never measured on a device)."""
