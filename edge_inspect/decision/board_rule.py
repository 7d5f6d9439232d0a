"""The calibration's board rule: tile scores of one board -> board score, reject or not, why."""

from __future__ import annotations

import numpy as np

from edge_inspect.decision.calibration_file import Calibration


def apply_board_rule(scores: np.ndarray, cal: Calibration) -> tuple[float, bool, list[str]]:
    """(board score, over the rule, reasons). `max`: the worst tile; `topk_mean`: mean of the k
    worst; `count`: tiles over the threshold. A board without scores has score NaN and is not
    over the rule (the aggregator rejects it as incomplete)."""
    thr = cal.tile_threshold
    rule = cal.board_rule
    over = scores > thr
    if scores.size == 0:
        return float("nan"), False, []
    if rule.type == "max":
        board_score = float(scores.max())
    elif rule.type == "topk_mean":
        k = min(rule.k, scores.size)
        board_score = float(np.partition(scores, scores.size - k)[-k:].mean())
    else:
        board_score = float(over.sum())
    if rule.type == "count":
        bad = board_score >= rule.min_count
        why = f"{int(board_score)} tiles over {thr:.4g} (rule: count >= {rule.min_count})"
    else:
        bad = board_score > thr
        why = f"{cal.score} {board_score:.4g} > {thr:.4g} ({rule.type}; {int(over.sum())} tiles over)"
    return board_score, bool(bad), [why] if bad else []
