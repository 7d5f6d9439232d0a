"""Tiler: strips in, board and tile events out, in line order. The one class the pipeline uses.

Per strip: one copy into the band, one vectorised foreground pass (image mode), segmentation over
the strip's transitions, and tile rows cut as soon as their lines are known to be board lines.
Tile pixels are not copied here: each TilesCut carries `write_into`, which copies straight from
the band into the consumer's buffer (e.g. a ring slot) and is valid until the next push/flush.

Lost lines are fail-safe: an open board is closed as "lines_lost" and marked incomplete, and a
board already in view after the gap is incomplete too, so neither can be silently accepted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import structlog

from edge_inspect.acquisition.base import Strip
from edge_inspect.config import TilingConfig
from edge_inspect.errors import InputDataError
from edge_inspect.logging import LogEvery
from edge_inspect.tiling.conveyor import ConveyorLevel
from edge_inspect.tiling.cutter import BoardTiles, TileCutter
from edge_inspect.tiling.events import BoardEnded, BoardStarted, TilesCut, TilingEvent
from edge_inspect.tiling.joints import JOINT_REACH, JOINT_SLACK, block_profile, joint_in, may_hold_joint
from edge_inspect.tiling.segmenter import (
    CONFIRM,
    START,
    BoardSegmenter,
    SegEvent,
    column_counts,
    foreground_mask,
    line_counts,
)
from edge_inspect.tiling.lateral import board_extent
from edge_inspect.tiling.stitcher import BandStitcher

_log = structlog.get_logger(__name__)

END_OF_STREAM = "end_of_stream"
#: Board ends that were seen whole; any other reason (lines_lost, stopped, a source error) cut it.
_SEEN_ENDS = frozenset({"gap", "max_length", END_OF_STREAM, "fragment", "seam"})


@dataclass(slots=True)
class _Segment:
    """The open segment: a candidate until confirmed (then `tiles` is set)."""

    start: int
    incomplete: bool
    t_start: int
    counts: np.ndarray  # per-column foreground line counts over [start, acc)
    acc: int
    board_id: int = -1
    tiles: BoardTiles | None = field(default=None)
    extents: list[tuple[int, int]] = field(default_factory=list)  # board extent per seam block
    shades: list[float] = field(default_factory=list)  # the wood's median grey, per seam block
    line_means: list[np.ndarray] = field(default_factory=list)  # mean grey per line, last seam blocks
    ref: tuple[int, int] | None = None  # the board's established extent
    ref_shade: float = 0.0              # ...and shade
    seam: int | None = None  # a seam found, waiting until the piece after it is a board of its own


SEAM_BLOCK = 32     # lines per lateral-extent measurement for seams
SEAM_JUMP_PX = 24   # an edge moving this far between two blocks is another board (skew moves < 1 px)
SEAM_CONFIRM = 2    # ...if the new extent holds for this many more blocks
SHADE_JUMP = 0.25   # or the wood's shade changes by more than this ratio
SHADE_SAMPLES = 256  # columns sampled across the board for its shade
_JOINT_BLOCKS_KEPT = SEAM_CONFIRM + 2  # line means kept: the candidate, one block before it, those after


def _jump(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return abs(a[0] - b[0]) > SEAM_JUMP_PX or abs(a[1] - b[1]) > SEAM_JUMP_PX


def _shade_jump(a: float, b: float, ratio: float = SHADE_JUMP) -> bool:
    lo, hi = min(a, b), max(a, b)
    return hi > (1.0 + ratio) * max(lo, 1.0)


def _shade_step(shades: np.ndarray, y0: int, rising: bool) -> int:
    """The line where per-line shades from line y0 on step up (`rising`) or down (`_step_at`)."""
    return _step_at(shades if rising else -shades, y0)


def _step_at(vote: np.ndarray, y0: int) -> int:
    """The line of [y0, y0 + 2 blocks) where per-line votes rise from an old level to a new one:
    the split k maximising sqrt(k (n - k) / n) x (mean after k - mean before k), the least-squares
    fit of two levels, rises only. It holds wherever in the window the change lies and whatever
    ramps into it: a midpoint between the two blocks' medians put the seam where a sawn end's
    fading shade crossed it, 8 lines early when the change lay late in the second block."""
    n = len(vote)
    k = np.arange(1, n)
    before = np.cumsum(vote, dtype=np.float64)[:-1]
    rise = (before[-1] + vote[-1] - before) / (n - k) - before / k
    return y0 + int(k[np.argmax(np.sqrt(k * (n - k) / n) * rise)])


class Tiler:
    """Turns strips into BoardStarted / TilesCut / BoardEnded events; see the module docstring."""

    def __init__(
        self, cfg: TilingConfig, width: int, channels: int, first_board_id: int = 1
    ) -> None:
        t = cfg.tile_size
        if width < t:
            raise InputDataError(f"camera width {width} px is smaller than the tile size {t} px")
        if channels < 1:
            raise InputDataError(f"channels must be at least 1, got {channels}")
        seg = cfg.segmenter
        self._tile = t
        self._width = width
        self._channels = channels
        self._frame_mode = seg.mode == "frame"
        self._level = seg.foreground_level
        self._cutter = TileCutter(t, cfg.stride, width, channels, seg.foreground_level,
                                  seg.edge_close_px, seg.edge_band_px)
        capacity = 4 * (t + cfg.stride + seg.min_board_lines + seg.min_gap_lines + 2 * SEAM_BLOCK)
        self._band = BandStitcher(width, channels, capacity)
        self._segmenter = BoardSegmenter(seg, width)
        self._conveyor = (None if seg.conveyor_margin is None else
                          ConveyorLevel(seg.foreground_level, seg.conveyor_margin, seg.min_gap_lines,
                                        seg.exit_fraction * width, channels))
        self._min_board = seg.min_board_lines
        self._next_id = first_board_id
        self._expected: int | None = None
        self._times: deque[tuple[int, int]] = deque()  # (first_line, t_ns) of recent strips
        self._seg: _Segment | None = None
        self._fg: np.ndarray | None = None  # foreground mask of the strip being processed
        self._fg_first = 0
        self.lines_seen = 0
        self.lines_lost = 0
        self._gap_log = LogEvery()

    @property
    def fragments(self) -> int:
        """Pieces of material shorter than a board, recorded and rejected as fragments."""
        return self._segmenter.fragments

    # -- public ----------------------------------------------------------------------------

    def push(self, strip: Strip) -> list[TilingEvent]:
        """Add one strip; returns the events it completes, in order."""
        lines = self._check(strip)
        n = lines.shape[0]
        events: list[TilingEvent] = []
        if n == 0:
            return events
        first = strip.first_line
        keep_views = False
        if self._expected is not None and first != self._expected:
            if first > self._expected:
                lost = first - self._expected
                self.lines_lost += lost
                gaps = self._gap_log.due()
                if gaps:  # one line per few seconds under overload, with the running total
                    _log.warning(
                        "camera lines lost", lost=lost, expected_line=self._expected, got_line=first,
                        lines_lost=self.lines_lost, gaps_since_last_line=gaps,
                    )
            else:
                _log.warning(
                    "camera line counter went back; starting a new stream",
                    expected_line=self._expected,
                    got_line=first,
                )
            self._close_open("lines_lost", events)
            # Tiles just emitted read the current buffer: the new strip must not overwrite it.
            keep_views = bool(events)
            self._segmenter.reset(after_gap=True)
            self._band.reset(first)
            self._times.clear()
        else:
            self._band.release_before(self._keep_from())
            self._trim_times()
        self._band.append(lines, first, keep_views)
        self._times.append((first, strip.t_ns))
        self.lines_seen += n
        self._expected = first + n
        if self._frame_mode:
            self._frame_board(first, n, strip.t_ns, events)
        else:
            self._image_strip(first, n, events)
        return events

    def flush(self, reason: str = END_OF_STREAM, stream_end: int | None = None) -> list[TilingEvent]:
        """End of stream: close an open board; the next push starts afresh. A stream that ran
        out (end of a file) ends as "end_of_stream". Any other reason means the board in flight
        was cut: "stopped" (service shutdown while the material kept coming) or the source's
        error (a corrupt frame file); that board, even a fragment too short to be confirmed, is
        incomplete with the reason given.

        `stream_end`: one past the last line the source delivered. Lines after the last strip
        tiled never arrived here (strips dropped at the end under overload): they are counted
        lost like a gap in mid-stream, and the open board is cut: "lines_lost", or the stop or
        error that ended the stream."""
        events: list[TilingEvent] = []
        if stream_end is not None and self._expected is not None and stream_end > self._expected:
            lost = stream_end - self._expected
            self.lines_lost += lost
            _log.warning("camera lines lost", lost=lost, expected_line=self._expected, got_line=stream_end,
                         lines_lost=self.lines_lost, gaps_since_last_line=self._gap_log.last(),
                         at="end of stream")
            if reason == END_OF_STREAM:  # a stop or a source error already says why it was cut
                reason = "lines_lost"
        if not self._frame_mode:
            self._close_open(reason, events)
        self._segmenter.reset(after_gap=True)  # a board in view when the next stream starts is incomplete
        self._expected = None
        return events

    # -- per strip -------------------------------------------------------------------------

    def _check(self, strip: Strip) -> np.ndarray:
        lines = strip.lines
        if not isinstance(lines, np.ndarray) or lines.ndim != 3 or lines.dtype != np.uint8:
            desc = (
                f"{lines.dtype} array of shape {lines.shape}"
                if isinstance(lines, np.ndarray)
                else type(lines).__name__
            )
            raise InputDataError(
                f"strip (frame {strip.frame_id}) must be a uint8 array [lines, width, channels], "
                f"got {desc}"
            )
        _, w, c = lines.shape
        if w != self._width or c != self._channels:
            raise InputDataError(
                f"strip (frame {strip.frame_id}) is {w} px x {c} channel(s), the tiler was set up "
                f"for {self._width} px x {self._channels} channel(s)"
            )
        return lines

    def _frame_board(self, first: int, n: int, t_ns: int, events: list[TilingEvent]) -> None:
        """Frame mode: the strip is the board."""
        bid = self._new_id()
        events.append(BoardStarted(bid, first, t_ns))
        tiles = BoardTiles(bid, first, self._cutter)
        tiles.cut_final(self._band, n)
        cut = tiles.take()
        if cut is not None:
            events.append(cut)
        events.append(
            BoardEnded(bid, first, first + n, self._width, tiles.n_tiles, "frame", False, t_ns)
        )

    def _image_strip(self, first: int, n: int, events: list[TilingEvent]) -> None:
        lines = self._band.lines(first, first + n)
        fg = foreground_mask(lines, self._level)
        counts = line_counts(fg)
        if self._conveyor is not None:  # a gap that ended in this strip sets the level this strip is judged at
            self._conveyor.observe(lines, counts)
            if self._conveyor.level != self._level:
                self._level = self._cutter.level = self._conveyor.level
                fg = foreground_mask(lines, self._level)
                counts = line_counts(fg)
        self._fg, self._fg_first = fg, first
        try:
            for ev in self._segmenter.feed(counts, first):
                self._apply(ev, events)
            seg = self._seg
            if seg is not None:
                settled = self._segmenter.settled
                if seg.tiles is not None:
                    seg = self._split_seams(seg, settled, events)
                self._accumulate(seg, settled)
                if seg.tiles is not None:  # rows only over lines whose seam blocks are checked
                    seg.tiles.cut_ready(self._band, min(settled, self._checked_until(seg)) - seg.start)
                    self._emit_tiles(seg.tiles, events)
        finally:
            self._fg = None

    @property
    def foreground_level(self) -> int:
        """The level pixels are judged by now (fixed, or following the conveyor)."""
        return self._level

    def _apply(self, ev: SegEvent, events: list[TilingEvent]) -> None:
        if ev.kind == START:
            self._seg = _Segment(
                start=ev.line,
                incomplete=ev.incomplete,
                t_start=self._t_of(ev.line),
                counts=np.zeros(self._width, np.int64),
                acc=ev.line,
            )
            return
        seg = self._seg
        if seg is None:  # cannot happen: the segmenter always starts before it confirms/ends
            raise RuntimeError(f"segmenter event {ev} without an open segment")
        if ev.kind == CONFIRM:
            seg.board_id = self._new_id()
            seg.tiles = BoardTiles(seg.board_id, seg.start, self._cutter)
            events.append(BoardStarted(seg.board_id, seg.start, seg.t_start))
        else:  # END
            self._end_board(seg, ev.line, ev.reason, events)
            if ev.reason == "max_length" and self._conveyor is not None:  # no gap for that long
                self._conveyor.reset()
                self._level = self._cutter.level = self._conveyor.level

    # -- touching boards: a seam is a jump of the board's lateral extent ---------------------

    def _foreground(self, y0: int, y1: int) -> np.ndarray:
        """Foreground of lines [y0, y1): a view of the strip's mask when it holds them all."""
        fg, f0 = self._fg, self._fg_first
        if fg is not None and f0 <= y0 and y1 <= f0 + fg.shape[0]:
            return fg[y0 - f0 : y1 - f0]
        return foreground_mask(self._band.lines(y0, y1), self._level)

    def _block_extent(self, y: int) -> tuple[int, int] | None:
        return board_extent(self._foreground(y, y + SEAM_BLOCK), self._cutter.close_px)

    def _checked_until(self, seg: _Segment) -> int:
        """Lines before this are known to hold no seam: a seam is looked for in a candidate block
        and the one before it once SEAM_CONFIRM more blocks are in; a seam found and waiting
        (`seg.seam`) may lie in the block before the candidate, and rows must not cross it."""
        until = seg.start + max(len(seg.extents) - 1 - SEAM_CONFIRM, 0) * SEAM_BLOCK
        return until if seg.seam is None else min(until, seg.seam)

    def _shade_sample(self, y0: int, y1: int, extent: tuple[int, int], line_step: int = 1) -> np.ndarray:
        """Pixels of lines [y0, y1) across the board, about SHADE_SAMPLES columns of each."""
        step = max(1, (extent[1] - extent[0]) // SHADE_SAMPLES)
        lines = self._band.lines(y0, y1)[::line_step, extent[0]:extent[1]:step]
        return lines.reshape(lines.shape[0], -1)

    def _measure_block(self, seg: _Segment, y: int, extent: tuple[int, int]) -> None:
        """Record the seam block at `y`: its median grey across the board (every 4th line; a
        knot or a stain over less than half the board leaves it where the wood is) and each
        line's mean grey (what `may_hold_joint` reads), both from one sample of its pixels."""
        sample = self._shade_sample(y, y + SEAM_BLOCK, extent)
        seg.shades.append(float(np.median(sample[::4])))
        seg.line_means.append(sample.mean(axis=1, dtype=np.float32))
        del seg.line_means[:-_JOINT_BLOCKS_KEPT]

    def _seam_in(self, seg: _Segment, upto: int) -> int | None:
        """Measure the seam blocks of `seg` complete before `upto`; the line where the board
        changes from its established extent and shade (`ref`, `ref_shade`, which follow slow
        drift such as skew; the shade not to a block more than SHADE_JUMP / 2 from it: a change
        mid-block leaves that block's shade halfway, and following it hid the change from the
        next block) and stays changed for SEAM_CONFIRM more blocks; or None. A change is
        an extent jumping by more than SEAM_JUMP_PX to one a board could have (a block that is no
        plausible board, a sliver beside a dark stain, changes nothing), or, at the same extent,
        the shade changing by more than SHADE_JUMP, in the blocks after it too and alike (butted
        boards of the same width but of different wood: within one board, the median of three blocks' shades (each the median
        of its lines' medians) against the block before changed by at most 0.22 over 430
        synthetic boards, knots and stains included, 0.09 at the 99th percentile); or, at the
        same extent and shade, a joint across the board in the candidate block (`joints.py`)."""
        while seg.start + (len(seg.extents) + 1) * SEAM_BLOCK <= upto:
            y = seg.start + len(seg.extents) * SEAM_BLOCK
            extent = self._block_extent(y) or (0, self._width)
            seg.extents.append(extent)
            self._measure_block(seg, y, extent)
            ext, shades = seg.extents, seg.shades
            if seg.ref is None:
                seg.ref, seg.ref_shade = ext[0], shades[0]
            if len(ext) < 1 + SEAM_CONFIRM:
                continue
            cand, after = ext[-1 - SEAM_CONFIRM], ext[-SEAM_CONFIRM:]
            shade = shades[-1 - SEAM_CONFIRM]
            moved, shaded = _jump(seg.ref, cand), _shade_jump(seg.ref_shade, shade)
            settled = shades[-SEAM_CONFIRM:]
            passing = shaded and any(_shade_jump(shade, a) for a in settled)
            held = shaded and all(_shade_jump(seg.ref_shade, a) for a in settled)
            y0 = y - SEAM_CONFIRM * SEAM_BLOCK - SEAM_BLOCK  # the block before the candidate
            if moved:
                if not self._plausible(seg.ref, cand) or any(_jump(cand, a) for a in after):
                    continue
                line = self._seam_line(y0, seg.ref, cand)
            elif passing:
                seg.ref = cand  # a passing stain: the extent follows, the shade waits
                continue
            elif held:
                line = _shade_step(self._line_shades(y0, cand), y0, rising=shade > seg.ref_shade)
            else:
                joint = self._joint_line(seg, y0 + SEAM_BLOCK, cand)
                if joint is None:
                    seg.ref = cand
                    if not _shade_jump(seg.ref_shade, shade, SHADE_JUMP / 2):
                        seg.ref_shade = shade
                    continue
                line = joint
            if line - seg.start >= self._min_board:
                return line
            seg.ref, seg.ref_shade = cand, shade  # the piece before is no board of its own (an end knot, a short end)
        return None

    def _joint_line(self, seg: _Segment, yc: int, extent: tuple[int, int]) -> int | None:
        """A joint (`joints.py`: butted boards alike in extent and shade) in the candidate block
        [yc, yc + SEAM_BLOCK), far enough after the board's start for the test's reach; its line
        or None. The block before the candidate and the two after it hold the lines the test
        reads beyond it; the full test runs only where the lines' means across the board dip."""
        reach = JOINT_REACH + JOINT_SLACK
        first = max(yc, seg.start + reach)
        last = yc + SEAM_BLOCK
        if first >= last:
            return None
        base = seg.start + (len(seg.extents) - len(seg.line_means)) * SEAM_BLOCK  # the first kept line
        if not may_hold_joint(np.concatenate(seg.line_means), first - base, last - base):
            return None
        lo = first - reach
        profile = block_profile(self._band.lines(lo, last + reach), extent)
        if profile is None:
            return None
        joint = joint_in(profile, first - lo, last - lo)
        return None if joint is None else self._on_shade_step(lo + joint, extent)

    def _on_shade_step(self, joint: int, extent: tuple[int, int]) -> int:
        """A joint where the wood's shade also steps by more than SHADE_JUMP (the 32 lines before
        it against the 32 after) is placed where the shade steps (`_shade_step`), not where the
        dip is deepest. Why: the joint can be found in the block that holds both boards, before
        the shade seam is; where one board is much darker and its end shading only a grey level
        or two (seed 86001, board 48: pale wood at 124 butted to dark wood at 28), a line past
        the change passed as deeper, and the record before held the next board's first line."""
        y0 = joint - SEAM_BLOCK
        shades = self._line_shades(y0, extent)
        old, new = float(np.median(shades[:SEAM_BLOCK])), float(np.median(shades[SEAM_BLOCK:]))
        return _shade_step(shades, y0, rising=new > old) if _shade_jump(old, new) else joint

    def _line_shades(self, y0: int, extent: tuple[int, int]) -> np.ndarray:
        """The median grey across the board of each line of [y0, y0 + 2 blocks)."""
        return np.median(self._shade_sample(y0, y0 + 2 * SEAM_BLOCK, extent), axis=1)

    def _plausible(self, old: tuple[int, int], new: tuple[int, int]) -> bool:
        """A board of its own is at least a tile and 30 % of the one before wide; a sliver left
        beside a dark stain across most of a board is not."""
        return new[1] - new[0] >= max(self._tile, 0.3 * (old[1] - old[0]))

    def _seam_line(self, y0: int, old: tuple[int, int], new: tuple[int, int]) -> int:
        """Where in [y0, y0 + 2 blocks) (the last old-looking block and the first new one) the
        board changes: each line votes with its foreground in the columns only the new extent has
        minus that in the columns only the old has, and the seam is where the votes step
        (`_step_at`). The step is fitted between two levels rather than found by a sign: uncentred,
        a board wider than the one before (votes >= 0) put the seam at y0; centred on the full
        column counts, dark wood partly under the foreground level (its darker side, its fading
        end) put it early."""
        fg = self._foreground(y0, y0 + 2 * SEAM_BLOCK)
        cols = np.arange(self._width)
        in_old = (cols >= old[0]) & (cols < old[1])
        in_new = (cols >= new[0]) & (cols < new[1])
        new_only, old_only = in_new & ~in_old, in_old & ~in_new
        vote = fg[:, new_only].sum(1).astype(np.float64) - fg[:, old_only].sum(1)
        return _step_at(vote, y0)

    def _split_seams(self, seg: _Segment, upto: int, events: list[TilingEvent], end: int | None = None) -> _Segment:
        """End the board at every seam found before `upto` and go on with the next one. Pieces
        shorter than min_board_lines on either side of a seam are merged into the board they
        touch, never split off: the one before by `_seam_in`, the one after by waiting until
        min_board_lines follow the seam (`end` None: `seg` is the segmenter's open segment, which
        then restarts at the seam too) or by the board's known `end` (the segmenter has ended it
        and may have begun another, so only the tiler's side follows the seam)."""
        while True:
            if seg.seam is None:
                seg.seam = self._seam_in(seg, upto)
            line = seg.seam
            if line is None:
                return seg
            if (upto if end is None else end) - line < self._min_board:
                if end is not None:  # the board ends too soon after it: an end knot, a short end piece
                    seg.seam = None
                return seg
            self._end_board(seg, line, "seam", events, check_seams=False)
            restart = self._segmenter.restart_at(line) if end is None else [SegEvent(START, line), SegEvent(CONFIRM, line)]
            for ev in restart:
                self._apply(ev, events)
            seg = self._seg

    def _end_board(self, seg: _Segment, end: int, reason: str, events: list[TilingEvent],
                   check_seams: bool = True) -> None:
        tiles = seg.tiles
        if tiles is None:
            raise RuntimeError("board ended before it was confirmed")
        if check_seams:  # touching boards ending together: split them before the last rows are cut
            rest = self._split_seams(seg, end, events, end=end)
            if rest is not seg:
                self._end_board(rest, end, reason, events)
                return
        length = end - seg.start
        self._accumulate(seg, end)
        tiles.cut_final(self._band, length)
        self._emit_tiles(tiles, events)
        width = self._board_width(seg)
        events.append(
            BoardEnded(
                board_id=seg.board_id,
                start_line=seg.start,
                end_line=end,
                width=width,
                n_tiles=tiles.n_tiles,
                reason=reason,
                incomplete=seg.incomplete or reason not in _SEEN_ENDS,
                t_last_ns=self._t_of(end - 1),
            )
        )
        self._seg = None

    def _close_open(self, reason: str, events: list[TilingEvent]) -> None:
        for ev in self._segmenter.close(reason):
            self._apply(ev, events)

    @staticmethod
    def _emit_tiles(tiles: BoardTiles, events: list[TilingEvent]) -> None:
        cut: TilesCut | None = tiles.take()
        if cut is not None:
            events.append(cut)

    # -- bookkeeping -----------------------------------------------------------------------

    def _board_width(self, seg: _Segment) -> int:
        """Horizontal extent so far: columns foreground in at least half of the board's lines
        (the camera width before any line is in)."""
        n = seg.acc - seg.start
        return int(np.count_nonzero(2 * seg.counts >= n)) if n > 0 else self._width

    def _accumulate(self, seg: _Segment, upto: int) -> None:
        """Add the foreground columns of lines [seg.acc, upto) to the segment's counts. Lines of
        the current strip use its mask; older ones (held back while the segment's extent was
        unsettled, at most a gap run) are re-measured from the band."""
        a = seg.acc
        if upto <= a:
            return
        fg, f0 = self._fg, self._fg_first
        if fg is not None and upto > f0:
            if a < f0:
                seg.counts += column_counts(foreground_mask(self._band.lines(a, f0), self._level))
                a = f0
            seg.counts += column_counts(fg[a - f0 : upto - f0])
        else:
            seg.counts += column_counts(
                foreground_mask(self._band.lines(a, upto), self._level)
            )
        seg.acc = upto

    def _keep_from(self) -> int:
        """First line the band must still hold for the open segment (none: release all)."""
        seg = self._seg
        if seg is None:
            return self._band.end_line
        if seg.tiles is None:
            return seg.start
        return min(seg.acc, seg.start + seg.tiles.keep_from_y, self._checked_until(seg))  # the next search reads these

    def _trim_times(self) -> None:
        """Keep strip timestamps back to the line before the band's first line (a board's end
        can be decided after its last line's strip was released)."""
        lo = self._band.start_line - 1
        times = self._times
        while len(times) >= 2 and times[1][0] <= lo:
            times.popleft()

    def _t_of(self, line: int) -> int:
        for first, t_ns in reversed(self._times):
            if first <= line:
                return t_ns
        return self._times[0][1] if self._times else 0

    def _new_id(self) -> int:
        bid = self._next_id
        self._next_id += 1
        return bid
