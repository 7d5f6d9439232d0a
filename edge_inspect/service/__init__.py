"""The `run` service: systemd notify/watchdog, reload, metrics and the wiring of sinks and records."""
