"""The project's own recording format (scan input format (c)): raw camera frames with their line
counters and timestamps, so a replay sees exactly what the pipeline saw, gaps included.

A recording is a folder:

```
recording.json         {"format": "edge-inspect-recording", "version": 1, "width": W,
                        "channels": C (1 grey, 3 RGB), "pixel_format": "Mono8" | "RGB8" (as stored),
                        "lines_per_frame": N, "camera": {...device info, camera pixel format...},
                        "created": ISO-8601 UTC, "source": name of the source recorded,
                        "closed": bool, "frames": frames written, "chunks": chunk files written,
                        "short_frames": frames holding fewer than N lines}
chunk_000000.npz       uncompressed numpy .npz (np.load reads it) holding
chunk_000001.npz         lines      uint8 [n, N, W, C]  the frames, in order
...                      first_line int64 [n]           camera line counter of each frame's first line
                         t_ns       int64 [n]           frame time, ns (the recording host's monotonic clock)
                         frame_id   int64 [n]           frame index of the source
                         n_lines    int64 [n]           lines of each frame that are real (N but for a
                                                        short last frame of a scan, padded in `lines`
                                                        by repeating its last line); absent = all N
```

- A chunk holds up to `record.max_file_frames` frames. Frames are streamed to
  `chunk_NNNNNN.npz.part` as they arrive (memory stays flat whatever the chunk size); when the
  chunk is full, or at close, the .npz is assembled as `.chunk_NNNNNN.npz.tmp`, fsynced and
  renamed, so a chunk file is either complete or absent. `.part`/`.tmp` files are leftovers of an
  interrupted recording and are ignored when reading.
- Disk budget: after each chunk, the oldest chunk files are removed until the folder's chunks
  plus one more chunk fit in `record.max_bytes` (the newest chunk is always kept). Removed
  chunks simply leave a gap in `first_line`, which replay treats like lost camera lines.
- Reading memory-maps `lines` (the file is uncompressed), so replaying a chunk does not load it
  whole; the small arrays are read with their zip CRC checked. A missing or corrupt
  recording.json or chunk file is a clear InputDataError naming the file. Every array is checked
  against its zip CRC-32 before any of the chunk's frames is delivered, `lines` included, so an
  overwritten pixel is refused rather than scored.
- A write that fails (a full disk) stops the recording cleanly: the unfinished chunk's `.part`
  and temp files are removed, recording.json is closed with the frames of the complete chunks,
  and the error names the folder.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import zipfile
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import structlog

from edge_inspect.acquisition.base import Strip
from edge_inspect.atomic import atomic_path, temp_path, write_atomic
from edge_inspect.errors import EdgeInspectError, InputDataError

log = structlog.get_logger(__name__)

FORMAT = "edge-inspect-recording"
VERSION = 1
META_FILE = "recording.json"
_CHUNK_RE = re.compile(r"^chunk_(\d{6,})\.npz$")
_ARRAYS = ("lines", "first_line", "t_ns", "frame_id")  # every chunk has these
_SMALL = ("first_line", "t_ns", "frame_id", "n_lines")  # per-frame int64 arrays written; n_lines may be absent


def is_recording(path: Path) -> bool:
    """True for a folder holding recording.json (a corrupt one is then a clear error on open,
    not a confusing "no scan images")."""
    p = Path(path)
    return p.is_dir() and (p / META_FILE).is_file()


def chunk_name(index: int) -> str:
    return f"chunk_{index:06d}.npz"


def _chunk_files(folder: Path) -> list[tuple[int, Path]]:
    """Finished chunk files in index order."""
    out = []
    for p in folder.iterdir():
        m = _CHUNK_RE.match(p.name)
        if m and p.is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def chunk_files(folder: Path) -> list[Path]:
    """A recording's finished chunk files in index order."""
    return [p for _, p in _chunk_files(folder)]


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


class Recorder:
    """Writes strips into a recording folder. `write()` copies the strip at once (strips from a
    camera pool are reused), so it is safe to call from the acquisition loop."""

    def __init__(self, out: Path, *, width: int, channels: int, lines_per_frame: int,
                 camera: dict[str, Any] | None = None, source: str = "",
                 max_bytes: int = 10 * 1024**3, max_file_frames: int = 1000) -> None:
        if channels not in (1, 3):
            raise InputDataError(f"recording: channels must be 1 or 3, got {channels}")
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise InputDataError(f"{self.out}: exists and is not a folder")
        if is_recording(self.out) or (self.out.is_dir() and _chunk_files(self.out)):
            raise InputDataError(f"{self.out}: already holds a recording; choose a new folder")
        self.out.mkdir(parents=True, exist_ok=True)
        self.width, self.channels, self.lines_per_frame = int(width), int(channels), int(lines_per_frame)
        self.max_bytes = int(max_bytes)
        self.max_file_frames = int(max_file_frames)
        self.frame_shape = (self.lines_per_frame, self.width, self.channels)
        self.frame_bytes = int(np.prod(self.frame_shape))
        self.frames = 0
        self.short_frames = 0
        self.chunks_written = 0
        self.chunks_removed = 0
        self._index = 0
        self._part: Any = None
        self._meta_small: dict[str, list[int]] = {k: [] for k in _SMALL}
        self._closed = False
        self._lock = threading.Lock()
        self.meta: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "width": self.width, "channels": self.channels,
            "pixel_format": "Mono8" if self.channels == 1 else "RGB8",
            "lines_per_frame": self.lines_per_frame, "camera": dict(camera or {}),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": source, "closed": False, "frames": 0, "chunks": 0, "short_frames": 0,
        }
        _write_json_atomic(self.out / META_FILE, self.meta)
        if self.frame_bytes * self.max_file_frames > self.max_bytes:
            log.warning("recording_budget_below_one_chunk", max_bytes=self.max_bytes,
                        chunk_bytes=self.frame_bytes * self.max_file_frames,
                        note="only the newest chunk will be kept")

    @classmethod
    def for_source(cls, out: Path, source: Any, cfg: Any) -> "Recorder":
        """A recorder shaped like `source` (width, channels, lines_per_frame; device_info and
        pixel_format when it is a camera), with the budget of a RecordConfig `cfg`."""
        camera = dict(getattr(source, "device_info", {}) or {})
        if getattr(source, "pixel_format", None):
            camera["pixel_format"] = source.pixel_format
        return cls(out, width=source.width, channels=source.channels, lines_per_frame=source.lines_per_frame,
                   camera=camera, source=getattr(source, "name", ""), max_bytes=cfg.max_bytes,
                   max_file_frames=cfg.max_file_frames)

    def _part_path(self) -> Path:
        return self.out / (chunk_name(self._index) + ".part")

    def write(self, strip: Strip) -> None:
        """Append one frame: lines_per_frame x width x channels uint8, or fewer lines (the end
        of a scan whose height is not a multiple of lines_per_frame), padded by repeating its
        last line and stored with its real line count. A failed write (full disk) closes the
        recording (see `_fail`)."""
        a = strip.lines
        n = self.lines_per_frame
        if (a.dtype != np.uint8 or a.ndim != 3 or a.shape[1:] != self.frame_shape[1:]
                or not 1 <= a.shape[0] <= n):
            raise InputDataError(f"recording: frame {strip.frame_id} is {a.dtype} {tuple(a.shape)}, "
                                 f"expected uint8 {self.frame_shape} (or fewer lines)")
        with self._lock:
            if self._closed:
                raise InputDataError(f"{self.out}: recorder is closed")
            try:
                if self._part is None:
                    self._part = open(self._part_path(), "wb")
                self._part.write(np.ascontiguousarray(a).data)
                if len(a) < n:
                    self._part.write(np.repeat(a[-1:], n - len(a), axis=0).data)
            except OSError as exc:
                self._fail(exc)
            self._meta_small["first_line"].append(int(strip.first_line))
            self._meta_small["t_ns"].append(int(strip.t_ns))
            self._meta_small["frame_id"].append(int(strip.frame_id))
            self._meta_small["n_lines"].append(len(a))
            self.frames += 1
            if len(self._meta_small["t_ns"]) >= self.max_file_frames:
                self._finish_chunk()

    def _finish_chunk(self) -> None:
        """Assemble the .npz from the streamed frames, fsync, rename; then keep the budget."""
        n = len(self._meta_small["t_ns"])
        if self._part is None or n == 0:
            return
        part = self._part_path()
        final = self.out / chunk_name(self._index)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                  "shape": (n, *self.frame_shape)}
        try:
            self._part.close()
            self._part = None
            with atomic_path(final) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED,
                                                            allowZip64=True) as zf:
                with zf.open("lines.npy", "w", force_zip64=True) as f, open(part, "rb") as src:
                    np.lib.format.write_array_header_1_0(f, header)
                    shutil.copyfileobj(src, f, 1 << 20)
                for key in _SMALL:
                    with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                        np.lib.format.write_array(f, np.asarray(self._meta_small[key], np.int64))
        except OSError as exc:
            self._fail(exc)
        part.unlink()
        self.chunks_written += 1
        self.short_frames += sum(k < self.lines_per_frame for k in self._meta_small["n_lines"])
        log.debug("recording_chunk_written", file=final.name, frames=n)
        self._meta_small = {k: [] for k in _SMALL}
        self._index += 1
        self._keep_budget()

    def _fail(self, exc: OSError) -> None:
        """A write failed (a full disk, an I/O error): the unfinished chunk is given up (its
        .part and temp file removed, which also frees the room to close the metadata), and
        recording.json is closed with what the complete chunks hold. Raises, naming the folder."""
        lost = len(self._meta_small["t_ns"])
        if self._part is not None:
            try:
                self._part.close()
            except OSError:
                pass  # the data it could not flush is given up with the chunk anyway
            self._part = None
        self._part_path().unlink(missing_ok=True)
        temp_path(self.out / chunk_name(self._index)).unlink(missing_ok=True)
        self.frames -= lost
        self._meta_small = {k: [] for k in _SMALL}
        self._closed = True
        note = ""
        try:
            self._write_closed_meta()
        except OSError as meta_exc:
            note = f"; {META_FILE} could not be closed ({meta_exc.strerror or meta_exc})"
        log.error("recording_failed", out=str(self.out), error=str(exc), frames=self.frames,
                  chunks=self.chunks_written, frames_lost=lost)
        raise EdgeInspectError(
            f"{self.out}: recording stopped: {exc.strerror or exc}; kept {self.frames} frames in "
            f"{self.chunks_written} complete chunk(s), the last {lost} frame(s) (an unfinished chunk) "
            f"were not saved{note}") from None

    def _write_closed_meta(self) -> None:
        self.meta.update(closed=True, frames=self.frames, chunks=self.chunks_written,
                         short_frames=self.short_frames)
        _write_json_atomic(self.out / META_FILE, self.meta)

    def _keep_budget(self) -> None:
        chunks = _chunk_files(self.out)
        sizes = {p: p.stat().st_size for _, p in chunks}
        total = sum(sizes.values())
        next_chunk = self.frame_bytes * self.max_file_frames
        while len(chunks) > 1 and total + next_chunk > self.max_bytes:
            _, oldest = chunks.pop(0)
            total -= sizes[oldest]
            oldest.unlink()
            self.chunks_removed += 1
            log.warning("recording_chunk_removed", file=oldest.name, reason="disk budget",
                        max_bytes=self.max_bytes, kept_bytes=total)

    def close(self) -> None:
        """Write the last partial chunk and the final recording.json; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._finish_chunk()
            self._closed = True
            if self._part is not None:  # opened but nothing in it
                self._part.close()
                self._part_path().unlink(missing_ok=True)
                self._part = None
            try:
                self._write_closed_meta()
            except OSError as exc:
                raise EdgeInspectError(f"{self.out}: could not close {META_FILE}: {exc.strerror or exc}; "
                                       f"its {self.chunks_written} chunk(s) are complete") from None
        log.info("recording_closed", out=str(self.out), frames=self.frames, chunks=self.chunks_written,
                 chunks_removed=self.chunks_removed)

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_meta(folder: Path) -> dict[str, Any]:
    """recording.json, checked; InputDataError naming the file and the problem otherwise."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise InputDataError(f"{folder}: not a recording ({META_FILE} missing)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputDataError(f"{path}: corrupt ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputDataError(f"{path}: not an {FORMAT} file")
    if meta.get("version") != VERSION:
        raise InputDataError(f"{path}: format version {meta.get('version')!r} is not supported (this is {VERSION})")
    for key, most in (("width", 1 << 16), ("channels", 3), ("lines_per_frame", 1 << 16)):
        if not isinstance(meta.get(key), int) or not 1 <= meta[key] <= most:
            raise InputDataError(f"{path}: {key} missing or not an integer from 1 to {most}")
    if meta["channels"] not in (1, 3):
        raise InputDataError(f"{path}: channels must be 1 or 3, got {meta['channels']}")
    return meta


def _entry_crc(f: Any, start: int, size: int) -> int:
    """CRC-32 of `size` bytes of the open file from `start` (a stored zip entry's data)."""
    f.seek(start)
    crc = 0
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while size > 0:
        got = f.readinto(view[:min(size, len(buf))])
        if not got:
            break
        crc = zlib.crc32(view[:got], crc)
        size -= got
    return crc


class _Chunk:
    """One chunk file opened for reading: lines memory-mapped after their CRC-32 was checked
    (so no frame of a damaged chunk is ever delivered), the small arrays loaded."""

    def __init__(self, path: Path, frame_shape: tuple[int, int, int]) -> None:
        self.path = path
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
                missing = [k for k in _ARRAYS if f"{k}.npy" not in names]
                if missing:
                    raise InputDataError(f"{path}: corrupt chunk (missing {', '.join(missing)})")
                small = {}
                for key in _SMALL:
                    if f"{key}.npy" in names:
                        with zf.open(f"{key}.npy") as f:
                            small[key] = np.lib.format.read_array(f, allow_pickle=False)
                info = zf.getinfo("lines.npy")
                if info.compress_type != zipfile.ZIP_STORED:
                    raise InputDataError(f"{path}: lines are compressed; a recording chunk must be uncompressed")
            with open(path, "rb") as f:
                f.seek(info.header_offset)
                local = f.read(30)
                if len(local) != 30 or local[:4] != b"PK\x03\x04":
                    raise InputDataError(f"{path}: corrupt chunk (bad zip entry for lines)")
                name_len = int.from_bytes(local[26:28], "little")
                extra_len = int.from_bytes(local[28:30], "little")
                data_start = info.header_offset + 30 + name_len + extra_len
                if _entry_crc(f, data_start, info.compress_size) != info.CRC:
                    raise InputDataError(f"{path}: corrupt chunk (pixel data fails its CRC-32 check)")
                f.seek(data_start)
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                else:
                    raise InputDataError(f"{path}: unsupported .npy version {version} for lines")
                offset = f.tell()
        except InputDataError:
            raise
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
            raise InputDataError(f"{path}: corrupt chunk ({exc})") from None
        n = len(small["t_ns"])
        small.setdefault("n_lines", np.full(n, frame_shape[0], np.int64))  # written before short frames existed
        if (dtype != np.uint8 or fortran or tuple(shape) != (n, *frame_shape)
                or any(len(small[k]) != n or small[k].dtype != np.int64 for k in _SMALL)):
            raise InputDataError(f"{path}: corrupt chunk (lines {dtype} {tuple(shape)} with {n} frame records; "
                                 f"expected uint8 ({n}, {', '.join(map(str, frame_shape))}))")
        if n and not ((small["n_lines"] >= 1) & (small["n_lines"] <= frame_shape[0])).all():
            raise InputDataError(f"{path}: corrupt chunk (n_lines outside 1..{frame_shape[0]})")
        if offset + int(np.prod(shape)) > path.stat().st_size:
            raise InputDataError(f"{path}: corrupt chunk (truncated)")
        self.n = n
        self.small = small
        self.lines = np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=tuple(shape)) if n else None


class RecordingSource:
    """Replays a recording with its recorded first_line, t_ns and frame_id (gaps stay gaps).
    speed "max" is not live (paced by back-pressure); "realtime" waits by the recorded t_ns
    (a jump of more than a second, e.g. where chunks were removed, is not waited out) and is live."""

    def __init__(self, path: Path, speed: str = "max") -> None:
        self.path = Path(path)
        self.name = str(path)
        self.meta = read_meta(self.path)
        self.width = self.meta["width"]
        self.channels = self.meta["channels"]
        self.lines_per_frame = self.meta["lines_per_frame"]
        self.live = speed == "realtime"
        self.counters = None  # the recording's gaps are in its line counters
        self.reconnecting = False
        self._stop = threading.Event()
        self.files = chunk_files(self.path)
        if not self.files:
            raise InputDataError(f"{self.path}: recording holds no chunk files (nothing was recorded)")
        self._shape = (self.lines_per_frame, self.width, self.channels)
        self._first: _Chunk | None = _Chunk(self.files[0], self._shape)  # fail at open on a corrupt first chunk
        #: lines in the chunks still present, for progress bars (estimated from the frame count)
        frames, chunks = self.meta.get("frames"), self.meta.get("chunks")
        known = isinstance(frames, int) and isinstance(chunks, int) and chunks > 0
        self.total_lines = frames * len(self.files) // chunks * self.lines_per_frame if known else None

    def strips(self) -> Iterator[Strip]:
        t0_wall: int | None = None
        t0_rec = 0
        for path in self.files:
            if self._stop.is_set():
                return
            chunk = self._first if self._first is not None and self._first.path == path else None
            self._first = None  # checked at open: not read twice
            if chunk is None:
                if not path.is_file():
                    raise InputDataError(f"{path}: chunk file vanished during replay")
                chunk = _Chunk(path, self._shape)
            fl, ts, fid, nl = (chunk.small[k] for k in _SMALL)
            for i in range(chunk.n):
                if self._stop.is_set():
                    return
                t = int(ts[i])
                if self.live:
                    now = time.monotonic_ns()
                    if t0_wall is None:
                        t0_wall, t0_rec = now, t
                    wait = (t - t0_rec) - (now - t0_wall)
                    if wait > 1_000_000_000 or wait < -1_000_000_000:
                        t0_wall, t0_rec = now, t  # a jump in the recording: do not wait it out
                    elif wait > 0:
                        self._stop.wait(wait / 1e9)
                try:
                    lines = np.array(chunk.lines[i, :nl[i]])  # a private copy: the map closes with the chunk
                except (OSError, ValueError) as exc:
                    raise InputDataError(f"{path}: unreadable frame {i} ({exc})") from None
                yield Strip(lines=lines, first_line=int(fl[i]), t_ns=t, frame_id=int(fid[i]))
            del chunk

    def close(self) -> None:
        self._stop.set()
