"""Reject-signal sinks, one per file: log, TCP to a PLC gateway, a camera output line."""
