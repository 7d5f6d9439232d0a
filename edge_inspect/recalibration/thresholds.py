"""Statistics of recalibration, kept free of I/O so they can be checked against known values.

Every board rule is reduced to one threshold-free statistic per board such that the board is
rejected exactly when that statistic exceeds the tile threshold; picking a threshold is then a
question about the order statistics of good boards only."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_inspect.decision.calibration_file import BoardRule, TargetRule

# A float product like 0.07 * 100 can land just below an integer; floor must not lose it.
_EPS = 1e-9
CONFIDENCE = 0.95


def board_statistic(tile_scores: np.ndarray, rule: BoardRule) -> float:
    """The board's value under `rule` that is compared with the tile threshold (reject iff >).

    `max` and `topk_mean` are what the aggregator computes. For `count` (reject when at least
    min_count tiles exceed the threshold) it is the min_count-th largest tile score, so the
    comparison is the same; a board with fewer tiles than min_count can never be rejected
    (-inf). An empty board is NaN (it has no verdict from scores)."""
    s = np.asarray(tile_scores, dtype=np.float32).reshape(-1)
    if s.size == 0:
        return float("nan")
    if rule.type == "max":
        return float(s.max())
    if rule.type == "topk_mean":
        k = min(rule.k, s.size)
        return float(np.partition(s, s.size - k)[-k:].mean())
    if s.size < rule.min_count:
        return float("-inf")
    return float(np.partition(s, s.size - rule.min_count)[s.size - rule.min_count])


def rejected(board_stats: np.ndarray, threshold: float) -> np.ndarray:
    """Boards the aggregator would reject at `threshold` (NaN boards are not counted)."""
    b = np.asarray(board_stats, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (b > threshold) & ~np.isnan(b)


def min_good_boards(target_frr: float) -> int:
    """Below 1/target boards not even one false reject can be allowed: the target cannot be
    told apart from zero."""
    if not 0 < target_frr < 1:
        raise ValueError(f"target FRR must be between 0 and 1, got {target_frr}")
    return math.ceil(1.0 / target_frr - _EPS)


def allowed_exceedances(target_frr: float, n: int) -> int:
    return int(math.floor(target_frr * n + _EPS))


def min_good_boards_for_bound(max_frr: float, confidence: float = CONFIDENCE) -> int:
    """Below this even no false reject leaves the upper bound over `max_frr`: the bound of 0 in n
    is 1 - (1 - confidence)**(1/n)."""
    if not 0 < max_frr < 1:
        raise ValueError(f"target FRR must be between 0 and 1, got {max_frr}")
    return math.ceil(math.log(1.0 - confidence) / math.log1p(-max_frr) - _EPS)


def allowed_within_bound(max_frr: float, n: int, confidence: float = CONFIDENCE) -> int:
    """The most good boards that may be over the threshold with the upper bound still within
    `max_frr`; -1 when even none is too many (too few boards). The bound grows with k, so the
    answer is found by bisection."""
    ok, too_many = -1, n  # the bound of n in n is 1
    while too_many - ok > 1:
        mid = (ok + too_many) // 2
        if clopper_pearson_upper(mid, n, confidence) <= max_frr:
            ok = mid
        else:
            too_many = mid
    return ok


def min_boards_for(target_frr: float, rule: TargetRule) -> int:
    return min_good_boards_for_bound(target_frr) if rule == "bound" else min_good_boards(target_frr)


def allowed_for(target_frr: float, rule: TargetRule, n: int) -> int:
    return allowed_within_bound(target_frr, n) if rule == "bound" else allowed_exceedances(target_frr, n)


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space so large n does not overflow."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    lgn = math.lgamma(n + 1)
    terms = [lgn - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


def clopper_pearson_upper(k: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided upper confidence bound of a rate after k events in n trials: the p at which
    seeing k or fewer would happen only 1 - confidence of the time (the Beta(k+1, n-k)
    quantile), found by bisection on the binomial CDF, which falls as p grows."""
    if n <= 0:
        raise ValueError("n must be positive")
    if not 0 <= k <= n:
        raise ValueError(f"k must be in 0..n, got k={k}, n={n}")
    if k == n:
        return 1.0
    alpha = 1.0 - confidence
    lo, hi = 0.0, 1.0
    for _ in range(100):  # 2**-100: far below float resolution of the answer
        mid = (lo + hi) / 2
        if binom_cdf(k, n, mid) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    n: int                  # good boards used
    allowed: int            # exceedances the target allows (floor(target * n) when measured)
    exceedances: int        # good boards over the chosen threshold (<= allowed; less on ties)
    expected_frr: float     # exceedances / n
    frr_upper95: float      # one-sided 95 % Clopper-Pearson bound for exceedances in n


def pick_threshold(good_stats: np.ndarray, target_frr: float, rule: TargetRule = "measured") -> ThresholdChoice:
    """Midway between the (k+1)-th largest good-board statistic and the k-th (the next one up),
    k allowed by the target (`allowed_for`): exactly the k worst good boards are rejected, and
    the threshold sits in the gap rather than on a board. Ties at the boundary keep the threshold on the tied value,
    which rejects fewer than k (the count reported is the real one). With k = 0 the threshold
    goes above the worst board by half the gap to the second worst."""
    s = np.asarray(good_stats, dtype=np.float64)
    s = s[~np.isnan(s)]
    n = int(s.size)
    if n == 0:
        raise ValueError("no good boards")
    desc = np.sort(s)[::-1]
    k = min(allowed_for(target_frr, rule, n), n - 1)
    if k < 0:
        raise ValueError(f"{n} good boards cannot bound the false-reject rate within {target_frr}")
    lower = desc[k]  # (k+1)-th largest: must stay accepted
    if k == 0:
        gap = desc[0] - desc[1] if n > 1 and math.isfinite(desc[1]) else 0.0
        thr = desc[0] + gap / 2
    else:
        upper = desc[k - 1]  # k-th largest
        thr = (lower + upper) / 2 if math.isfinite(lower) else upper
    if not math.isfinite(thr):
        raise ValueError("good boards have no finite score (fewer tiles than the board rule needs?)")
    exceed = int(np.count_nonzero(s > thr))
    return ThresholdChoice(
        threshold=float(thr), n=n, allowed=k, exceedances=exceed, expected_frr=exceed / n,
        frr_upper95=clopper_pearson_upper(exceed, n, CONFIDENCE),
    )


@dataclass(frozen=True)
class Outliers:
    mask: np.ndarray        # True where a board scores far above the rest
    median: float
    mad: float              # after the floor
    limit: float            # median + 5 MAD
    too_many: bool          # more than max(1, 5 %) of boards


def find_outliers(stats: np.ndarray, n_mads: float = 5.0, mad_floor: float = 0.01,
                  max_fraction: float = 0.05) -> Outliers:
    """Good boards of one product cluster; a few far above the rest mean defects or another
    product in the 'good' data, which would drag the threshold up and let defects through.
    Median and MAD are robust to those boards; the MAD floor (1 % of the median) keeps very
    tight data from flagging ordinary spread."""
    s = np.asarray(stats, dtype=np.float64)
    fin = s[np.isfinite(s)]
    if fin.size == 0:
        return Outliers(np.zeros(s.shape, bool), float("nan"), float("nan"), float("nan"), False)
    med = float(np.median(fin))
    mad = max(float(np.median(np.abs(fin - med))), mad_floor * abs(med))
    limit = med + n_mads * mad
    mask = np.isfinite(s) & (s > limit)
    too_many = int(mask.sum()) > max(1.0, max_fraction * fin.size)
    return Outliers(mask, med, mad, limit, too_many)
