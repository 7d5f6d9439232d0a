"""The project's own recording format (scan input format (c)): raw camera frames with their line
counters and timestamps, so a replay sees exactly what the pipeline saw, gaps included.

A recording is a folder:

```
recording.json         {"format": "edge-inspect-recording", "version": 1, "width": W,
                        "channels": C (1 grey, 3 RGB), "pixel_format": "Mono8" | "RGB8" (as stored),
                        "lines_per_frame": N, "camera": {...device info, camera pixel format...},
                        "created": ISO-8601 UTC, "source": name of the source recorded,
                        "closed": bool, "frames": frames written, "chunks": chunk files written}
chunk_000000.npz       uncompressed numpy .npz (np.load reads it) holding
chunk_000001.npz         lines      uint8 [n, N, W, C]  the frames, in order
...                      first_line int64 [n]           camera line counter of each frame's first line
                         t_ns       int64 [n]           frame time, ns (the recording host's monotonic clock)
                         frame_id   int64 [n]           frame index of the source
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
  recording.json or chunk file is a clear InputDataError naming the file.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import structlog

from edge_inspect.acquisition.base import Strip
from edge_inspect.atomic import atomic_path, write_atomic
from edge_inspect.errors import InputDataError

log = structlog.get_logger(__name__)

FORMAT = "edge-inspect-recording"
VERSION = 1
META_FILE = "recording.json"
_CHUNK_RE = re.compile(r"^chunk_(\d{6,})\.npz$")
_ARRAYS = ("lines", "first_line", "t_ns", "frame_id")


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
        self.chunks_written = 0
        self.chunks_removed = 0
        self._index = 0
        self._part: Any = None
        self._meta_small: dict[str, list[int]] = {k: [] for k in _ARRAYS[1:]}
        self._closed = False
        self._lock = threading.Lock()
        self.meta: dict[str, Any] = {
            "format": FORMAT, "version": VERSION, "width": self.width, "channels": self.channels,
            "pixel_format": "Mono8" if self.channels == 1 else "RGB8",
            "lines_per_frame": self.lines_per_frame, "camera": dict(camera or {}),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": source, "closed": False, "frames": 0, "chunks": 0,
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
        """Append one frame (must be lines_per_frame x width x channels uint8)."""
        a = strip.lines
        if a.dtype != np.uint8 or a.shape != self.frame_shape:
            raise InputDataError(f"recording: frame {strip.frame_id} is {a.dtype} {tuple(a.shape)}, "
                                 f"expected uint8 {self.frame_shape}")
        with self._lock:
            if self._closed:
                raise InputDataError(f"{self.out}: recorder is closed")
            if self._part is None:
                self._part = open(self._part_path(), "wb")
            self._part.write(np.ascontiguousarray(a).data)
            self._meta_small["first_line"].append(int(strip.first_line))
            self._meta_small["t_ns"].append(int(strip.t_ns))
            self._meta_small["frame_id"].append(int(strip.frame_id))
            self.frames += 1
            if len(self._meta_small["t_ns"]) >= self.max_file_frames:
                self._finish_chunk()

    def _finish_chunk(self) -> None:
        """Assemble the .npz from the streamed frames, fsync, rename; then keep the budget."""
        n = len(self._meta_small["t_ns"])
        if self._part is None or n == 0:
            return
        self._part.close()
        part = self._part_path()
        self._part = None
        final = self.out / chunk_name(self._index)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                  "shape": (n, *self.frame_shape)}
        with atomic_path(final) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED,
                                                        allowZip64=True) as zf:
            with zf.open("lines.npy", "w", force_zip64=True) as f, open(part, "rb") as src:
                np.lib.format.write_array_header_1_0(f, header)
                shutil.copyfileobj(src, f, 1 << 20)
            for key in _ARRAYS[1:]:
                with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.asarray(self._meta_small[key], np.int64))
        part.unlink()
        self.chunks_written += 1
        log.debug("recording_chunk_written", file=final.name, frames=n)
        self._meta_small = {k: [] for k in _ARRAYS[1:]}
        self._index += 1
        self._keep_budget()

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
            self._closed = True
            self._finish_chunk()
            if self._part is not None:  # opened but nothing in it
                self._part.close()
                self._part_path().unlink(missing_ok=True)
                self._part = None
            self.meta.update(closed=True, frames=self.frames, chunks=self.chunks_written)
            _write_json_atomic(self.out / META_FILE, self.meta)
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
    for key in ("width", "channels", "lines_per_frame"):
        if not isinstance(meta.get(key), int) or meta[key] < 1:
            raise InputDataError(f"{path}: {key} missing or not a positive integer")
    if meta["channels"] not in (1, 3):
        raise InputDataError(f"{path}: channels must be 1 or 3, got {meta['channels']}")
    return meta


class _Chunk:
    """One chunk file opened for reading: lines memory-mapped, the small arrays loaded."""

    def __init__(self, path: Path, frame_shape: tuple[int, int, int]) -> None:
        self.path = path
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
                missing = [k for k in _ARRAYS if f"{k}.npy" not in names]
                if missing:
                    raise InputDataError(f"{path}: corrupt chunk (missing {', '.join(missing)})")
                small = {}
                for key in _ARRAYS[1:]:
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
                f.seek(info.header_offset + 30 + name_len + extra_len)
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
        if (dtype != np.uint8 or fortran or tuple(shape) != (n, *frame_shape)
                or any(len(small[k]) != n or small[k].dtype != np.int64 for k in _ARRAYS[1:])):
            raise InputDataError(f"{path}: corrupt chunk (lines {dtype} {tuple(shape)} with {n} frame records; "
                                 f"expected uint8 ({n}, {', '.join(map(str, frame_shape))}))")
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
        _Chunk(self.files[0], self._shape)  # fail at open on a corrupt first chunk
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
            if not path.is_file():
                raise InputDataError(f"{path}: chunk file vanished during replay")
            chunk = _Chunk(path, self._shape)
            fl, ts, fid = chunk.small["first_line"], chunk.small["t_ns"], chunk.small["frame_id"]
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
                    lines = np.array(chunk.lines[i])  # a private copy: the map closes with the chunk
                except (OSError, ValueError) as exc:
                    raise InputDataError(f"{path}: unreadable frame {i} ({exc})") from None
                yield Strip(lines=lines, first_line=int(fl[i]), t_ns=t, frame_id=int(fid[i]))
            del chunk

    def close(self) -> None:
        self._stop.set()
