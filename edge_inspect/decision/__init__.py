"""Decision: tile scores to board verdicts, records and reject signals."""
