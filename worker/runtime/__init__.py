"""The process around the loop: health and metrics server, signals, logs, and the
supervisor of several worker processes."""
