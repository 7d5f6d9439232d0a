"""Operator recalibration (`edge-inspect calibrate`): score recent good boards with the
configured model, pick the tile threshold that meets a false-reject target, show what it
would do, and apply it (history kept, rollback possible)."""
