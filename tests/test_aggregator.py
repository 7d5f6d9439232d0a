import math

import numpy as np

from edge_inspect.decision.aggregator import BoardAggregator
from edge_inspect.decision.calibration_file import BoardRule, Calibration
from edge_inspect.tiling.events import BoardEnded, BoardStarted, TileMeta


def cal(rule="max", **kw):
    return Calibration(version="v1", created="now", score="s", tile_threshold=1.0,
                       board_rule=BoardRule(type=rule, **kw))


def metas(board, n, cols=4):
    return [TileMeta(board, i // cols, i % cols, 256 * (i % cols), 256 * (i // cols)) for i in range(n)]


def ended(board, n, incomplete=False, reason="gap"):
    return BoardEnded(board, 100, 1100, 900, n, reason, incomplete, 0)


def test_verdict_waits_for_end_and_all_tiles_in_any_order():
    agg = BoardAggregator(cal(), 256, "abc" * 20, "scan")
    agg.started(BoardStarted(1, 100, 5))
    m = metas(1, 8)
    assert agg.scored(m[:4], np.full(4, 0.5, np.float32)) == []
    assert agg.ended(ended(1, 8)) == []           # 4 tiles still unscored
    (v,) = agg.scored(m[4:], np.full(4, 0.2, np.float32))
    assert v.verdict == "accept" and v.n_tiles == 8 and v.score == 0.5 and v.reasons == []
    assert v.t_first_line_ns == 5 and v.model == "abcabcabcabc"


def test_reject_with_reason_and_defect_region():
    agg = BoardAggregator(cal(), 256, "f" * 64, "scan")
    agg.started(BoardStarted(2, 0, 0))
    s = np.zeros(8, np.float32)
    s[[1, 2, 5]] = [1.5, 2.5, 1.2]  # tiles (0,1), (0,2), (1,1): one 8-connected region
    agg.scored(metas(2, 8), s)
    (v,) = agg.ended(ended(2, 8))
    assert v.verdict == "reject" and v.score == 2.5
    assert "3 tiles over" in v.reasons[0]
    assert v.defects == [{"x": 256, "board_x": 0, "y": 0, "w": 512, "h": 512, "peak_score": 2.5, "tiles": 3}]


def test_topk_and_count_rules():
    s = np.array([0.1, 0.2, 3.0, 0.1], np.float32)
    for rule, kw, score, verdict in [("topk_mean", {"k": 2}, 1.6, "reject"),
                                     ("topk_mean", {"k": 4}, 0.85, "accept"),
                                     ("count", {"min_count": 2}, 1.0, "accept"),
                                     ("count", {"min_count": 1}, 1.0, "reject")]:
        agg = BoardAggregator(cal(rule, **kw), 256, "0" * 64, "scan")
        agg.started(BoardStarted(1, 0, 0))
        agg.scored(metas(1, 4), s)
        (v,) = agg.ended(ended(1, 4))
        assert math.isclose(v.score, score, rel_tol=1e-6) and v.verdict == verdict, rule


def test_incomplete_board_is_rejected_even_with_low_scores():
    agg = BoardAggregator(cal(), 256, "0" * 64, "scan")
    agg.started(BoardStarted(1, 0, 0))
    agg.scored(metas(1, 2), np.zeros(2, np.float32))
    (v,) = agg.ended(ended(1, 2, incomplete=True, reason="lines_lost"))
    assert v.verdict == "reject" and v.incomplete and v.reasons == ["incomplete: lines_lost"]


def test_abandoned_boards_all_get_rejected_records():
    agg = BoardAggregator(cal(), 256, "0" * 64, "scan")
    agg.started(BoardStarted(1, 0, 0))
    agg.started(BoardStarted(2, 2000, 0))
    agg.scored(metas(1, 2), np.zeros(2, np.float32))
    agg.ended(ended(2, 3))
    out = agg.abandon_open("shutdown")
    assert [v.board_id for v in out] == [1, 2]
    assert all(v.verdict == "reject" and v.incomplete for v in out)
    assert out[1].reasons == ["incomplete: shutdown, 3 tiles unscored"]
    assert agg.open_boards == 0
