"""GenICam camera source: harvesters on a GenTL producer (.cti), delivering camera frames of
`lines_per_frame` lines (a line-scan camera's Height) as strips.

Why it looks the way it does:

- Every frame is copied out of the GenTL buffer into a preallocated strip pool *before* the
  buffer is handed back to the producer, so the camera can refill it at once and no Python
  object keeps driver memory alive. The pool is a ring: a Strip's array is overwritten after
  `pool_size` further frames. Consumers must be done with a strip (the tiler copies it into its
  band; the recorder writes it) within that many frames. The pool therefore holds
  `max(source.buffers, output.strip_queue + 4)` frames, so a full strip queue plus the strip in
  the tiler's hands plus the one being filled never wrap onto each other.
- The line counter (`Strip.first_line`) follows the camera's frame id, so frames the producer
  dropped show as line gaps, which the tiler turns into incomplete (rejected) boards. A fault
  (the camera vanishes, fetch raises) closes the device, reconnects with exponential back-off
  and advances the counter by the lines the outage is estimated to have cost (at least one
  frame), so the board in flight is rejected as incomplete, never silently accepted.
- Settings are checked against what the camera says it accepts (range and increment, enum
  entries), and every problem is reported at once naming node, value and what is allowed.
  Line rate and triggers are optional features: a camera without them gets a logged warning,
  never a guessed substitute node.
- `t_ns` is in this host's monotonic clock: the camera's timestamps (when it has them) are
  mapped onto it by the offset seen at the first frame after each (re)open, which keeps the
  camera's precise frame spacing; without camera timestamps it is the monotonic time at fetch.
"""

from __future__ import annotations

import glob
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import structlog

from edge_inspect.acquisition.base import AcquisitionCounters, Strip
from edge_inspect.config import CameraSourceConfig, Config
from edge_inspect.errors import ConfigError, InputDataError
from edge_inspect.logging import LogEvery

log = structlog.get_logger(__name__)

GENTL_PATH_ENV = "GENICAM_GENTL64_PATH"

#: channels delivered per camera pixel format (colour is always RGB inside the program)
CHANNELS: dict[str, int] = {
    "Mono8": 1, "RGB8": 3, "BGR8": 3, "RGBa8": 3,
    "BayerRG8": 3, "BayerGB8": 3, "BayerGR8": 3, "BayerBG8": 3,
}
#: GenICam Bayer names give the 2x2 pattern from the top-left pixel; so do these OpenCV names
_BAYER_TO_RGB: dict[str, int] = {
    "BayerRG8": cv2.COLOR_BayerRGGB2RGB,
    "BayerGB8": cv2.COLOR_BayerGBRG2RGB,
    "BayerGR8": cv2.COLOR_BayerGRBG2RGB,
    "BayerBG8": cv2.COLOR_BayerBGGR2RGB,
}
_FETCH_SLICE_S = 0.1  # one fetch call waits at most this long, so close() is seen promptly
_EVENT_WAIT_MS = 20  # harvesters' inner GenTL wait; the GIL is released while it waits


def convert_frame(rows: np.ndarray, pixel_format: str, dst: np.ndarray) -> None:
    """Camera bytes [h, w * bytes_per_pixel] -> dst [h, w, C] (grey, or RGB), in one pass and
    without allocating: Mono8/RGB8 copy, BGR8 swaps, RGBa8 drops alpha, Bayer is demosaiced."""
    h, w = dst.shape[:2]
    if pixel_format == "Mono8":
        np.copyto(dst[:, :, 0], rows)
    elif pixel_format == "RGB8":
        np.copyto(dst, rows.reshape(h, w, 3))
    elif pixel_format == "BGR8":
        cv2.cvtColor(rows.reshape(h, w, 3), cv2.COLOR_BGR2RGB, dst=dst)
    elif pixel_format == "RGBa8":
        cv2.cvtColor(rows.reshape(h, w, 4), cv2.COLOR_RGBA2RGB, dst=dst)
    elif pixel_format in _BAYER_TO_RGB:
        cv2.cvtColor(rows, _BAYER_TO_RGB[pixel_format], dst=dst)
    else:
        raise ValueError(f"unsupported pixel format {pixel_format!r}")


class CameraUnavailableError(InputDataError):
    """No producer, no matching device, or the device cannot be opened (exit 1: it may come back)."""


def _harvesters() -> tuple[Any, Any, Any, Any]:
    """Import harvesters lazily: the camera extra is optional and replay never needs it."""
    try:
        from harvesters.core import Callback, Harvester, ParameterKey, ParameterSet
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CameraUnavailableError(
            f"the camera source needs harvesters and genicam (pip install 'edge-inspect[camera]'): {exc}"
        ) from None
    return Callback, Harvester, ParameterKey, ParameterSet


def _quiet_stdlib_logger() -> logging.Logger:
    """harvesters prints its own tracebacks to stderr by default; we log the events ourselves."""
    lg = logging.getLogger("edge_inspect.acquisition.harvesters")
    if not lg.handlers:
        lg.addHandler(logging.NullHandler())
    lg.propagate = False
    return lg


def find_cti_files(cti: list[Path]) -> list[Path]:
    """The producers to load: the configured files (each must exist), else every *.cti in the
    folders of GENICAM_GENTL64_PATH (the GenTL standard's variable)."""
    if cti:
        missing = [str(p) for p in cti if not Path(p).is_file()]
        if missing:
            raise ConfigError("source.cti: GenTL producer file(s) not found: " + ", ".join(missing))
        return [Path(p) for p in cti]
    env = os.environ.get(GENTL_PATH_ENV, "")
    folders = [f for f in env.split(os.pathsep) if f]
    found: list[Path] = []
    for folder in folders:
        found += sorted(Path(p) for p in glob.glob(os.path.join(folder, "*.cti")))
    if not found:
        where = f"the folders in {GENTL_PATH_ENV}={env!r} hold no .cti files" if env else f"{GENTL_PATH_ENV} is not set"
        raise ConfigError(f"source.cti: no GenTL producer: source.cti is empty and {where}")
    return found


def _device_line(i: int, info: dict[str, Any]) -> str:
    return (f"[{i}] {info.get('vendor')} {info.get('model')} serial={info.get('serial_number')} "
            f"id={info.get('id_')} tl={info.get('tl_type')}")


def select_device(infos: list[dict[str, Any]], serial: str | None, model: str | None, index: int) -> int:
    """Index into the device list of the device matching serial/model, then `index` among those;
    the error lists every device that IS there, so the operator can fix the config."""
    matches = [i for i, d in enumerate(infos)
               if (serial is None or str(d.get("serial_number")) == serial)
               and (model is None or d.get("model") == model)]
    if index < len(matches):
        return matches[index]
    want = ", ".join(f"{k}={v!r}" for k, v in (("serial", serial), ("model", model)) if v is not None) or "any"
    listing = "; ".join(_device_line(i, d) for i, d in enumerate(infos)) or "none"
    raise CameraUnavailableError(
        f"no camera matches {want} at index {index} ({len(matches)} match); devices found: {listing}"
    )


class _NodeWriter:
    """Writes nodes with their own checks, collecting every problem so one error lists them all."""

    def __init__(self, node_map: Any) -> None:
        from genicam import genapi

        self._genapi = genapi
        self.nm = node_map
        self.problems: list[str] = []

    def node(self, name: str) -> Any | None:
        try:
            return self.nm.get_node(name)
        except Exception:  # LogicalErrorException: node not existing
            return None

    def has(self, name: str) -> bool:
        n = self.node(name)
        return n is not None and self._genapi.is_implemented(n) and self._genapi.is_available(n)

    def read(self, name: str) -> Any:
        return self.nm.get_node(name).value

    def write(self, key: str, name: str, value: Any) -> bool:
        """Set `name` to `value` if the camera allows it; otherwise note why (key = config path)."""
        ga = self._genapi
        n = self.node(name)
        if n is None or not ga.is_implemented(n):
            self.problems.append(f"{key}: camera has no node {name!r}")
            return False
        if not ga.is_available(n) or not ga.is_writable(n):
            self.problems.append(f"{key}: camera node {name} is not writable now (value {value!r} not set)")
            return False
        kind = type(n).__name__
        try:
            if kind == "IInteger":
                if isinstance(value, bool) or not isinstance(value, int):
                    self.problems.append(f"{key}: camera node {name} takes an integer, got {value!r}")
                    return False
                lo, hi, inc = n.min, n.max, n.inc
                if not lo <= value <= hi or (inc > 1 and (value - lo) % inc):
                    self.problems.append(f"{key}: {name} = {value} is outside the camera's range "
                                         f"[{lo}, {hi}] with increment {inc}")
                    return False
            elif kind == "IFloat":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    self.problems.append(f"{key}: camera node {name} takes a number, got {value!r}")
                    return False
                value = float(value)
                lo, hi = n.min, n.max
                if not lo <= value <= hi:
                    unit = getattr(n, "unit", "") or ""
                    self.problems.append(f"{key}: {name} = {value:g} is outside the camera's range "
                                         f"[{lo:g}, {hi:g}] {unit}".rstrip())
                    return False
            elif kind == "IEnumeration":
                entries = list(n.symbolics)
                if str(value) not in entries:
                    self.problems.append(f"{key}: {name} = {value!r} is not offered by the camera; "
                                         f"entries: {', '.join(entries)}")
                    return False
                value = str(value)
            elif kind == "IBoolean":
                if not isinstance(value, bool):
                    self.problems.append(f"{key}: camera node {name} takes true/false, got {value!r}")
                    return False
            elif kind == "ICommand":
                if value is not True:
                    self.problems.append(f"{key}: {name} is a command; give true to execute it")
                    return False
                n.execute()
                log.info("camera_node_executed", node=name)
                return True
            elif kind == "IString":
                value = str(value)
            else:
                self.problems.append(f"{key}: camera node {name} ({kind}) cannot be set from the config")
                return False
            n.value = value
        except Exception as exc:  # genapi refused it after all (dependent limits, access)
            self.problems.append(f"{key}: camera refused {name} = {value!r}: {_short(exc)}")
            return False
        log.debug("camera_node_set", node=name, value=value)
        return True


def _short(exc: BaseException) -> str:
    """GenApi messages repeat the file and line of the C++ source; the first sentence is enough."""
    text = str(exc).strip() or type(exc).__name__
    return text.split(" : ")[0][:300]


class GenicamSource:
    """Strips from a GenICam camera. The camera is opened and configured in the constructor, so
    `width`, `channels` and a clear error (EdgeInspectError) are there before anything starts;
    acquisition starts on the first `strips()` step. Faults later never escape `strips()`: they
    are logged, counted and recovered from by reconnecting until `close()`."""

    live = True

    def __init__(self, cfg: CameraSourceConfig, lines_per_frame: int, *, strip_queue: int = 0,
                 name: str | None = None) -> None:
        self.cfg = cfg
        self.lines_per_frame = int(lines_per_frame)
        self.pool_size = max(cfg.buffers, strip_queue + 4)
        self.counters = AcquisitionCounters()
        # repeated warnings, one line per few seconds each (a flood of lost frames must not flood the log)
        self._warn_every = {k: LogEvery() for k in ("timeout", "bad_buffer", "lost")}
        self.pixel_format = cfg.pixel_format
        self.channels = CHANNELS[cfg.pixel_format]
        self.line_rate_node: str | None = None  # which node line_rate_hz went to, if any
        self.device_info: dict[str, Any] = {}
        self._cti = find_cti_files(cfg.cti)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running = False
        self._h: Any = None
        self._ia: Any = None
        self._dead_ia: Any = None
        self.io_lock = threading.Lock()  # held while the strips() thread uses the acquirer
        self._requeue_error: Exception | None = None
        self._acquiring = False
        self._next_line = 0
        self._last_fid: int | None = None
        self._last_t_ns: int | None = None
        self._frame_dt_ns: float | None = None
        self._ts_mode: str | None = None  # "ns" | "ticks" | "none", found at the first buffer
        self._ts_offset: int | None = None
        self._tick_hz: float | None = None
        self._slot = 0
        self._waited = 0.0
        try:
            self._connect(first=True)
        except BaseException:
            self._release()  # the producer is a process-wide resource: never leave it open
            raise
        self.width: int = self._width
        self.name = name or f"genicam:{self.device_info.get('model')}:{self.device_info.get('serial_number')}"
        self._pool = np.empty((self.pool_size, self.lines_per_frame, self.width, self.channels), np.uint8)

    @classmethod
    def from_config(cls, cfg: Config) -> "GenicamSource":
        """The source of `run`/`record`: Height = camera.lines_per_frame, pool >= strip_queue + 4."""
        return cls(cfg.source, cfg.camera.lines_per_frame, strip_queue=cfg.output.strip_queue)

    # -- opening ----------------------------------------------------------------------------
    def _connect(self, first: bool) -> None:
        """Load the producers, pick the device, open it and write every setting."""
        Callback, Harvester, ParameterKey, ParameterSet = _harvesters()
        if self._h is None:
            self._h = Harvester(config=ParameterSet({ParameterKey.LOGGER: _quiet_stdlib_logger()}))
            for path in self._cti:
                try:
                    self._h.add_file(str(path), check_existence=True, check_validity=True)
                except (OSError, FileNotFoundError) as exc:
                    raise ConfigError(f"source.cti: {path}: not a loadable GenTL producer ({exc})") from None
        try:
            self._h.update()
        except Exception as exc:
            h, self._h = self._h, None  # start from a fresh Harvester next time
            try:
                h.reset()
            except Exception:
                pass
            raise CameraUnavailableError(f"GenTL producer(s) {self._cti_names()} failed to enumerate: {_short(exc)}") from None
        infos = [dict(d.property_dict) for d in self._h.device_info_list]
        if not infos:
            raise CameraUnavailableError(f"no camera found by GenTL producer(s) {self._cti_names()}")
        idx = select_device(infos, self.cfg.serial, self.cfg.model, self.cfg.index)
        info = {k: v for k, v in infos[idx].items() if k not in ("parent", "thisown")}
        if not first and self.device_info and info.get("serial_number") != self.device_info.get("serial_number"):
            log.warning("camera_changed", before=self.device_info.get("serial_number"), now=info.get("serial_number"))
        ia = self._create(idx, info)
        try:
            self._configure(ia)
            counters = self.counters

            class _Incomplete(Callback):
                def emit(self, context: Any = None) -> None:
                    counters.incomplete_buffers += 1

            ia.add_callback(ia.Events.INCOMPLETE_BUFFER, _Incomplete())
            ia.num_buffers = max(ia.min_num_buffers, self.cfg.buffers)
            ia.timeout_period_on_client_fetch_call = _FETCH_SLICE_S
            ia.timeout_period_on_update_event_data_call = _EVENT_WAIT_MS
        except BaseException:
            _destroy_quietly(ia)
            raise
        self.device_info = info
        self._ia = ia
        self._acquiring = False
        self._last_fid = None
        self._ts_offset = None

    def _cti_names(self) -> str:
        return ", ".join(str(p) for p in self._cti)

    def _create(self, idx: int, info: dict[str, Any]) -> Any:
        """Open the device. harvesters installs its own SIGINT handler when called from the main
        thread (it destroys the acquirer instead of stopping the program): keep ours."""
        main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGINT) if main else None
        try:
            return self._h.create(self._h.device_info_list[idx])
        except Exception as exc:
            raise CameraUnavailableError(
                f"cannot open camera {_device_line(idx, info)}: {_short(exc)} (in use by another program?)"
            ) from None
        finally:
            if main and previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _configure(self, ia: Any) -> None:
        """Write the settings in dependency order (format before width, width before offset),
        then the free-form nodes; raise one ConfigError listing every problem."""
        cfg = self.cfg
        w = _NodeWriter(ia.remote_device.node_map)
        w.write("source.pixel_format", "PixelFormat", cfg.pixel_format)
        if cfg.width is not None:
            w.write("source.width", "Width", cfg.width)
        if cfg.offset_x is not None:
            w.write("source.offset_x", "OffsetX", cfg.offset_x)
        w.write("camera.lines_per_frame", "Height", self.lines_per_frame)
        if cfg.line_rate_hz is not None:
            self._apply_line_rate(w, cfg.line_rate_hz)
        for i, trig in enumerate(cfg.triggers):
            self._apply_trigger(w, i, trig)
        for name, value in cfg.nodes.items():
            w.write(f"source.nodes.{name}", name, value)
        if w.problems:
            raise ConfigError(f"camera settings: {len(w.problems)} problem(s):\n  " + "\n  ".join(w.problems))
        try:
            self._width = int(w.read("Width"))
            height = int(w.read("Height"))
            fmt = str(w.read("PixelFormat"))
        except Exception as exc:
            raise CameraUnavailableError(f"cannot read Width/Height/PixelFormat back: {_short(exc)}") from None
        if height != self.lines_per_frame or fmt != cfg.pixel_format:
            raise ConfigError(f"camera reports Height={height} PixelFormat={fmt} after writing "
                              f"Height={self.lines_per_frame} PixelFormat={cfg.pixel_format}")
        if hasattr(self, "width") and self._width != self.width:
            raise ConfigError(f"camera width changed from {self.width} to {self._width} on reconnect")
        self._tick_hz = None
        for node in ("GevTimestampTickFrequency", "DeviceTimestampFrequency", "TimestampTickFrequency"):
            if w.has(node):
                try:
                    self._tick_hz = float(w.read(node))
                    break
                except Exception:
                    continue
        log.info("camera_configured", width=self._width, height=height, pixel_format=fmt,
                 line_rate_node=self.line_rate_node, timestamp_tick_hz=self._tick_hz)

    def _apply_line_rate(self, w: _NodeWriter, rate: float) -> None:
        if w.has("AcquisitionLineRate"):
            if w.has("AcquisitionLineRateEnable"):
                w.write("source.line_rate_hz", "AcquisitionLineRateEnable", True)
            if w.write("source.line_rate_hz", "AcquisitionLineRate", rate):
                self.line_rate_node = "AcquisitionLineRate"
                log.info("line_rate_applied", node="AcquisitionLineRate", value=rate)
        elif w.has("AcquisitionFrameRate"):
            fps = rate / self.lines_per_frame
            log.warning(f"camera has no AcquisitionLineRate; applying line_rate_hz / lines_per_frame = "
                        f"{fps:g} fps to AcquisitionFrameRate", line_rate_hz=rate, frame_rate=fps)
            if w.has("AcquisitionFrameRateEnable"):
                w.write("source.line_rate_hz", "AcquisitionFrameRateEnable", True)
            if w.write("source.line_rate_hz", "AcquisitionFrameRate", fps):
                self.line_rate_node = "AcquisitionFrameRate"
        else:
            log.warning("camera has no AcquisitionLineRate nor AcquisitionFrameRate; line_rate_hz not applied",
                        line_rate_hz=rate)

    def _apply_trigger(self, w: _NodeWriter, i: int, trig: Any) -> None:
        key = f"source.triggers.{i}"
        sel = w.node("TriggerSelector")
        if sel is None or not w.has("TriggerSelector"):
            log.warning(f"camera has no TriggerSelector; trigger {trig.selector} not applied",
                        selector=trig.selector, mode=trig.mode)
            return
        if trig.selector not in list(sel.symbolics):
            log.warning(f"camera has no {trig.selector} trigger; not applied", selector=trig.selector,
                        offered=list(sel.symbolics))
            return
        if not w.write(f"{key}.selector", "TriggerSelector", trig.selector):
            return
        if trig.source is not None:
            w.write(f"{key}.source", "TriggerSource", trig.source)
        w.write(f"{key}.mode", "TriggerMode", trig.mode)
        log.info("trigger_applied", selector=trig.selector, mode=trig.mode, source=trig.source)

    # -- acquisition ------------------------------------------------------------------------
    def strips(self) -> Iterator[Strip]:
        """Yield strips until close(). Harvesters/GenTL exceptions never escape: a fault is
        logged and counted, and the camera is reconnected with back-off."""
        with self._lock:
            if self._stop.is_set():
                return
            self._running = True
        try:
            while not self._stop.is_set():
                if self._ia is None:
                    if not self._reconnect():
                        break
                    continue
                try:
                    strip = self._next_strip()
                except Exception as exc:  # harvesters/GenTL: the camera is gone or failing
                    self._fault(exc)
                    continue
                if strip is not None:
                    yield strip
                if self._requeue_error is not None:  # the frame was copied; the stream is broken
                    exc, self._requeue_error = self._requeue_error, None
                    self._fault(exc)
        finally:
            with self._lock:
                self._running = False
                self._release()

    @property
    def image_acquirer(self) -> Any:
        """The harvesters ImageAcquirer now in use (None while reconnecting). Another thread may
        touch it only while holding `io_lock`: harvesters frees buffer memory in destroy() and
        stop(), and doing that under a running fetch crashes the process."""
        return self._ia

    @property
    def reconnecting(self) -> bool:
        """True while the camera is gone and the source waits in its reconnect back-off."""
        return self._ia is None

    def with_node_map(self, fn: Any) -> Any:
        """Call fn(node_map) on the camera's remote-device node map under `io_lock`, so the
        acquirer cannot be destroyed (reconnect, close) meanwhile; for the digital-output sink.
        Raises CameraUnavailableError while the camera is reconnecting."""
        with self.io_lock:
            ia = self._ia
            if ia is None:
                raise CameraUnavailableError("camera is reconnecting: node map not available")
            return fn(ia.remote_device.node_map)

    def _next_strip(self) -> Strip | None:
        """One fetch slice under io_lock: a strip, or None (timeout slice, unusable buffer)."""
        with self.io_lock:
            return self._next_strip_locked()

    def _next_strip_locked(self) -> Strip | None:
        ia = self._ia
        if ia is None:
            return None
        if not self._acquiring:
            ia.start()
            self._acquiring = True
            self._waited = 0.0
        from genicam.gentl import TimeoutException

        slice_s = min(_FETCH_SLICE_S, self.cfg.fetch_timeout_s)
        try:
            buf = ia.fetch(timeout=slice_s)
        except TimeoutException:
            if not ia.is_valid() or not ia.is_acquiring():
                raise RuntimeError("acquisition stopped: the image acquirer was destroyed or stopped") from None
            self._waited += slice_s
            if self._waited >= self.cfg.fetch_timeout_s - 1e-9:
                self._waited = 0.0
                self.counters.timeouts += 1
                n = self._warn_every["timeout"].due()
                if n:
                    log.warning("camera_fetch_timeout", timeout_s=self.cfg.fetch_timeout_s,
                                timeouts=self.counters.timeouts, since_last_line=n)
                ia.remote_device.node_map.get_node("Width").value  # raises if the device is gone
            return None
        self._waited = 0.0
        t_fetch = time.monotonic_ns()
        try:
            return self._copy_out(buf, t_fetch)
        finally:  # back to the producer at once: the frame is already in the pool
            try:
                buf.queue()
            except Exception as exc:
                self._requeue_error = exc

    def _copy_out(self, buf: Any, t_fetch: int) -> Strip | None:
        """Copy (and convert) the frame into the next pool slot; the GenTL buffer is re-queued
        by the caller right after, so the camera never waits on the pipeline."""
        n, width = self.lines_per_frame, self.width
        mod = buf.module
        fid = self._frame_id(mod)
        payload = buf.payload
        comps = payload.components if payload is not None else []
        comp = comps[0] if comps else None
        if comp is None or comp.data is None:
            self._bad_buffer(fid, "buffer has no image component")
            return None
        fmt, w, h = comp.data_format, comp.width, comp.height
        if fmt != self.pixel_format or w != width or h != n:
            self._bad_buffer(fid, f"buffer is {w}x{h} {fmt}, expected {width}x{n} {self.pixel_format}")
            return None
        data = comp.data
        bpp = 4 if fmt == "RGBa8" else 3 if fmt in ("RGB8", "BGR8") else 1
        pad = comp.x_padding
        if pad:
            rows = np.lib.stride_tricks.as_strided(data, (h, w * bpp), (w * bpp + pad, 1))
        else:
            if data.size < h * w * bpp:
                self._bad_buffer(fid, f"buffer holds {data.size} bytes, expected {h * w * bpp}")
                return None
            rows = data[: h * w * bpp].reshape(h, w * bpp)
        slot = self._pool[self._slot]
        self._slot = (self._slot + 1) % self.pool_size
        convert_frame(rows, fmt, slot)
        t_ns = self._timestamp(mod, t_fetch)
        first = self._advance(fid)
        self.counters.frames += 1
        if self._last_t_ns is not None and t_ns > self._last_t_ns:
            dt = t_ns - self._last_t_ns
            self._frame_dt_ns = dt if self._frame_dt_ns is None else 0.9 * self._frame_dt_ns + 0.1 * dt
        self._last_t_ns = t_ns
        return Strip(lines=slot, first_line=first, t_ns=t_ns, frame_id=first // n)

    def _bad_buffer(self, fid: int | None, why: str) -> None:
        self.counters.incomplete_buffers += 1
        n = self._warn_every["bad_buffer"].due()
        if n:
            log.warning("camera_buffer_unusable", frame_id=fid, why=why,
                        incomplete_buffers=self.counters.incomplete_buffers, since_last_line=n)

    def _frame_id(self, mod: Any) -> int | None:
        try:
            fid = int(mod.frame_id)
        except Exception:
            return None
        return fid

    def _advance(self, fid: int | None) -> int:
        """First line of this frame: frame-id steps > 1 are lost frames, i.e. a line gap. A
        missing or backwards id (first frame, wrap-around of a 16-bit block id) counts as +1."""
        step = 1
        if fid is not None and self._last_fid is not None and fid > self._last_fid:
            step = fid - self._last_fid
        if fid is not None:
            self._last_fid = fid
        if step > 1:
            self.counters.lost_frames += step - 1
            n = self._warn_every["lost"].due()
            if n:
                log.warning("camera_frames_lost", lost=step - 1, frame_id=fid, lost_frames=self.counters.lost_frames,
                            since_last_line=n)
        first = self._next_line + (step - 1) * self.lines_per_frame
        self._next_line = first + self.lines_per_frame
        return first

    def _timestamp(self, mod: Any, t_fetch: int) -> int:
        """Camera time mapped onto the monotonic clock, else the fetch time. Which way works is
        found once per session (exceptions per frame would cost)."""
        if self._ts_mode is None:
            self._ts_mode = "none"
            try:
                if int(mod.timestamp_ns) > 0:
                    self._ts_mode = "ns"
            except Exception:
                try:
                    if int(mod.timestamp) > 0 and self._tick_hz:
                        self._ts_mode = "ticks"
                except Exception:
                    pass
            log.info("camera_timestamps", source={"ns": "camera (ns)", "ticks": "camera (ticks)",
                                                  "none": "host monotonic at fetch"}[self._ts_mode])
        try:
            if self._ts_mode == "ns":
                cam = int(mod.timestamp_ns)
            elif self._ts_mode == "ticks":
                cam = int(int(mod.timestamp) * 1e9 / self._tick_hz)  # type: ignore[operator]
            else:
                return t_fetch
        except Exception:
            return t_fetch
        if self._ts_offset is None or abs(cam + self._ts_offset - t_fetch) > 1_000_000_000:
            self._ts_offset = t_fetch - cam
        return cam + self._ts_offset

    # -- faults -----------------------------------------------------------------------------
    def _fault(self, exc: BaseException) -> None:
        """The camera vanished or the stack failed: drop the acquirer; strips() reconnects."""
        if self._stop.is_set():
            return
        log.error("camera_fault", error=f"{type(exc).__name__}: {_short(exc)}", frames=self.counters.frames)
        with self._lock:
            # Destroyed after the first back-off wait, not now: whatever broke it (a driver
            # thread, another caller's destroy) gets time to finish, and two destroys never race.
            self._dead_ia, self._ia = self._ia, None
            self._acquiring = False

    def _bury(self) -> None:
        """Destroy the acquirer of a fault, and make sure the Harvester forgets it: harvesters'
        update() destroys every acquirer it knows again and would fail on a broken one forever."""
        ia, self._dead_ia = self._dead_ia, None
        if ia is None:
            return
        with self.io_lock:
            _destroy_quietly(ia)
        known = getattr(self._h, "_ias", None)
        if isinstance(known, list) and ia in known:
            known.remove(ia)

    def _reconnect(self) -> bool:
        """Reopen with exponential back-off until it works (True) or close() is called (False).
        The line counter then skips the lines the outage is estimated to have cost."""
        lo, hi = self.cfg.reconnect_backoff_s
        wait = lo
        attempt = 0
        t_lost = time.monotonic_ns()
        while not self._stop.wait(wait):
            attempt += 1
            try:
                with self._lock:
                    if self._stop.is_set():
                        return False
                    self._bury()
                    self._connect(first=False)
            except Exception as exc:
                log.warning("camera_reconnect_failed", attempt=attempt, error=_short(exc),
                            next_try_s=min(hi, wait * 2))
                wait = min(hi, wait * 2)
                continue
            self.counters.reconnects += 1
            outage_ns = time.monotonic_ns() - (self._last_t_ns or t_lost)
            frames = 1
            if self._frame_dt_ns:
                frames = max(1, int(outage_ns / self._frame_dt_ns))
            self._next_line += frames * self.lines_per_frame
            log.warning("camera_reconnected", attempt=attempt, reconnects=self.counters.reconnects,
                        skipped_lines=frames * self.lines_per_frame, outage_s=round(outage_ns / 1e9, 3))
            return True
        return False

    # -- closing ----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop: safe from any thread and more than once. A running strips() sees it within one
        fetch slice (0.1 s) or at once during back-off, and releases the camera itself."""
        self._stop.set()
        with self._lock:
            if not self._running:
                self._release()

    def _release(self) -> None:
        self._bury()
        ia, self._ia = self._ia, None
        if ia is not None:
            with self.io_lock:
                _destroy_quietly(ia)
        h, self._h = self._h, None
        if h is not None:
            try:
                h.reset()
            except Exception as exc:
                log.debug("harvester_reset_failed", error=_short(exc))
        self._acquiring = False


def _destroy_quietly(ia: Any) -> None:
    """Destroy an acquirer whose device may already be gone."""
    try:
        ia.destroy()
    except Exception as exc:
        log.debug("image_acquirer_destroy_failed", error=_short(exc))
