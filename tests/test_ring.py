import threading

import numpy as np
import pytest

from edge_inspect.inference.ring import RingClosed, TileRing


def test_reservations_are_contiguous_and_skip_the_end():
    ring = TileRing(10, 4, 1)
    a = ring.reserve(6)
    assert a == 0
    ring.release(6)
    b = ring.reserve(6)  # 4 slots left before the end: skipped, starts at slot 0 again
    assert b % 10 == 0 and b == 10
    assert ring.view(b, 6).shape == (6, 4, 4, 1)
    assert ring.view(b, 6).base is ring.slots or np.shares_memory(ring.view(b, 6), ring.slots)


def test_full_ring_times_out_then_frees():
    ring = TileRing(4, 2, 1)
    assert ring.reserve(4) == 0
    assert ring.reserve(1, timeout=0.05) is None
    ring.release(2)
    assert ring.reserve(2, timeout=0.05) == 4


def test_waiting_writer_wakes_on_release_and_on_close():
    ring = TileRing(2, 2, 1)
    ring.reserve(2)
    got = []
    th = threading.Thread(target=lambda: got.append(ring.reserve(1, timeout=5)))
    th.start()
    ring.release(1)
    th.join(2)
    assert got == [2]  # the ring is full again
    errors = []

    def wait_closed():
        try:
            ring.reserve(2, timeout=5)
        except RingClosed:
            errors.append("closed")

    th = threading.Thread(target=wait_closed)
    th.start()
    ring.close()
    th.join(2)
    assert errors == ["closed"]


def test_oversized_request_is_refused():
    with pytest.raises(ValueError):
        TileRing(4, 2, 1).reserve(5)
