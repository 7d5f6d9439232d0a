"""Typed configuration loaded from YAML; every problem is reported at once with its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edge_inspect.errors import ConfigError
from edge_inspect.training_config import TrainingConfig

M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default. Infinity and
    NaN are errors too (`.inf` as a timeout or a rate is never meant), and every duration and
    rate has an upper bound: values past it overflow the clocks and sockets they feed."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


#: Line rates a line-scan camera can have (1 Hz .. 10 MHz); outside them time arithmetic overflows.
LINE_RATE_MIN_HZ, LINE_RATE_MAX_HZ = 1.0, 1e7
_HOUR = 3600.0  # upper bound of timeouts and back-offs
_DAY = 86400.0  # upper bound of intervals


class CameraConfig(_Strict):
    lines_per_frame: int = Field(64, ge=1, le=65536, description="lines in one camera frame")
    line_rate_hz: float = Field(5000.0, ge=LINE_RATE_MIN_HZ, le=LINE_RATE_MAX_HZ,
                                description="lines per second, paces realtime replay")


class SegmenterConfig(_Strict):
    mode: Literal["image", "frame"] = "image"
    foreground_level: int = Field(
        30, ge=0, le=255, description="grey level above which a pixel is board: between the conveyor's brightest "
        "and the darkest wood")
    enter_fraction: float = Field(
        0.25, gt=0, le=1, description="share of the camera width that must be foreground to start a board "
        "(below the narrowest board's share)")
    exit_fraction: float = Field(
        0.05, ge=0, le=1, description="share of the camera width below which a line counts as gap (nearly all "
        "conveyor)")
    conveyor_margin: int | None = Field(
        None, ge=1, le=100, description="when set, the foreground level follows the conveyor: the p99.9 grey of "
        "recent gaps plus this margin, never above foreground_level (a ceiling); unset, foreground_level is fixed")
    min_gap_lines: int = Field(16, ge=1, le=100_000, description="gap lines needed to end a board")
    min_board_lines: int = Field(256, ge=1, le=100_000, description="shorter pieces are recorded and rejected as fragments")
    max_board_lines: int = Field(20000, ge=1, le=10_000_000, description="longer boards are closed and a new segment begun")
    edge_close_px: int = Field(
        32, ge=0, le=4096, description="across the board: dark gaps up to this wide near an edge (knots, stains) are "
        "still board")
    edge_band_px: int = Field(
        8, ge=0, le=4096, description="outermost columns of each board side where conveyor-dark pixels (skew, a ragged "
        "edge) are filled with the mirrored board before scoring")

    @model_validator(mode="after")
    def _hysteresis(self) -> "SegmenterConfig":
        if self.exit_fraction > self.enter_fraction:
            raise ValueError("exit_fraction must not exceed enter_fraction (hysteresis)")
        if self.max_board_lines < self.min_board_lines:
            raise ValueError("max_board_lines must be at least min_board_lines")
        return self


class TilingConfig(_Strict):
    tile_size: int = Field(256, ge=16, le=1024)
    stride: int = Field(256, ge=1, description="tile step in pixels; below tile_size tiles overlap")
    segmenter: SegmenterConfig = SegmenterConfig()

    @model_validator(mode="after")
    def _stride(self) -> "TilingConfig":
        if self.stride > self.tile_size:
            raise ValueError("stride must not exceed tile_size (pixels would be skipped)")
        if self.segmenter.min_board_lines < self.tile_size:
            raise ValueError("segmenter.min_board_lines must be at least tile_size")
        return self


class OnnxRuntimeBackendConfig(_Strict):
    type: Literal["onnxruntime"] = "onnxruntime"
    model: Path = Path("engines/demo.onnx")
    threads: int = Field(0, ge=0, le=1024, description="intra-op threads; 0 = one per core")


class TorchBackendConfig(_Strict):
    """A training checkpoint scored by torch (CPU or CUDA). On CUDA: FP16, channels_last and one
    CUDA graph per batch size (a partial batch is padded up to the nearest captured size)."""

    type: Literal["torch"]
    model: Path = Field(Path("model.pt"), description="training checkpoint (model.pt from train)")
    onnx: Path | None = Field(
        None, description="the ONNX export of this checkpoint: its sha256 names the model for calibration and records")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:[0-9]+)?)$", description="cpu, cuda or cuda:N")
    fp16: bool = Field(True, description="half precision (CUDA only; the CPU runs FP32)")
    channels_last: bool = Field(True, description="NHWC memory format for the convolutions (CUDA only)")
    cuda_graphs: bool = Field(True, description="capture one CUDA graph per batch size (CUDA only)")
    batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [1, 4, 8, 16, 32, 64], min_length=1,
        description="batch sizes captured as CUDA graphs; larger batches are split")
    threads: int = Field(0, ge=0, le=1024, description="CPU intra-op threads; 0 = torch's default")


class TensorRTBackendConfig(_Strict):
    """A serialized TensorRT engine (`edge-inspect build-engine`) run through pycuda."""

    type: Literal["tensorrt"]
    engine: Path = Field(Path("engines/demo.plan"), description="engine file; its manifest is <engine>.json")
    device: int = Field(0, ge=0, description="CUDA device index")
    streams: int = Field(2, ge=1, le=8, description="batches in flight, one CUDA stream and context each")

    @property
    def model(self) -> Path:
        """The file a running service watches for a model change (same key as the other backends)."""
        return self.engine


BackendConfig = Annotated[
    Union[OnnxRuntimeBackendConfig, TorchBackendConfig, TensorRTBackendConfig], Field(discriminator="type")
]


class InferenceConfig(_Strict):
    backend: BackendConfig = OnnxRuntimeBackendConfig()
    batch_size: int = Field(16, ge=1, le=4096)
    max_wait_ms: float = Field(20.0, ge=0, le=60_000, description="a partial batch is scored after this wait")
    ring_tiles: int = Field(256, ge=1, le=65536,
                            description="tile ring capacity, allocated once (65536 RGB 256 px tiles are 12 GiB)")

    @model_validator(mode="after")
    def _ring(self) -> "InferenceConfig":
        if self.ring_tiles < self.batch_size:
            raise ValueError("ring_tiles must be at least batch_size")
        return self


class DecisionConfig(_Strict):
    calibration: Path = Path("calibration/current.yaml")


class OutputConfig(_Strict):
    records_dir: Path = Path("records")
    strip_queue: int = Field(64, ge=1, le=4096, description="strips buffered between acquisition and tiling")


PixelFormatName = Literal["Mono8", "RGB8", "BGR8", "RGBa8", "BayerRG8", "BayerGB8", "BayerGR8", "BayerBG8"]


class TriggerConfig(_Strict):
    """One SFNC trigger: TriggerSelector=selector, then TriggerSource, then TriggerMode."""

    selector: Literal["FrameStart", "LineStart"]
    mode: Literal["On", "Off"] = "On"
    source: str | None = Field(None, description="TriggerSource entry, e.g. Line0 or Encoder0; None keeps the camera's")


class CameraSourceConfig(_Strict):
    """The GenICam camera of `run` and `record` (harvesters + a GenTL producer). Every node
    written is checked against the camera's range, increment or enum entries."""

    type: Literal["genicam"] = "genicam"
    cti: list[Path] = Field(default_factory=list, description="GenTL producers; empty = *.cti in GENICAM_GENTL64_PATH folders")
    serial: str | None = Field(None, description="pick the device with this serial number")
    model: str | None = Field(None, description="pick the device with this model name")
    index: int = Field(0, ge=0, description="index among the devices that match serial/model")
    pixel_format: PixelFormatName = "Mono8"
    width: int | None = Field(None, ge=1, description="Width node; None keeps the camera's")
    offset_x: int | None = Field(None, ge=0, description="OffsetX node; None keeps the camera's")
    line_rate_hz: float | None = Field(
        None, ge=LINE_RATE_MIN_HZ, le=LINE_RATE_MAX_HZ,
        description="AcquisitionLineRate, else AcquisitionFrameRate = line_rate_hz / lines_per_frame"
    )
    triggers: list[TriggerConfig] = Field(default_factory=list)
    nodes: dict[str, Union[bool, int, float, str]] = Field(
        default_factory=dict, description="further nodes by name, written in order after the others"
    )
    fetch_timeout_s: float = Field(1.0, gt=0, le=_HOUR, description="no frame for this long counts as a timeout")
    buffers: int = Field(16, ge=2, le=4096, description="strip pool size (at least output.strip_queue + 4 is used)")
    reconnect_backoff_s: tuple[float, float] = Field(
        (0.5, 10.0), description="first and largest wait between reconnect attempts"
    )

    @field_validator("serial", mode="before")
    @classmethod
    def _serial_text(cls, v: object) -> object:
        """YAML reads an unquoted serial number as an int; it is text to the camera."""
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _backoff(self) -> "CameraSourceConfig":
        lo, hi = self.reconnect_backoff_s
        if lo <= 0 or hi < lo or hi > _HOUR:
            raise ValueError("reconnect_backoff_s must be (first, largest) with 0 < first <= largest <= 3600")
        return self


class ReplaySourceConfig(_Strict):
    """Recorded scans as the source of `run`: for commissioning, soak tests and demos without a
    camera. `realtime` paces at camera.line_rate_hz like a camera (and drops like one)."""

    type: Literal["replay"]
    path: Path = Field(description="scan file, folder of frames, or recording folder")
    speed: Literal["max", "realtime"] = "realtime"
    loop: bool = Field(False, description="start again at the end, the line counter running on")


SourceConfig = Annotated[Union[CameraSourceConfig, ReplaySourceConfig], Field(discriminator="type")]


class RecordConfig(_Strict):
    max_bytes: int = Field(10 * 1024**3, ge=1, description="disk budget of one recording; oldest chunks go first")
    max_file_frames: int = Field(1000, ge=1, le=1_000_000, description="frames per chunk file")


# -- service (run): sinks, records, heatmaps, metrics, drift, watchdog ---------------------------


class TcpSinkConfig(_Strict):
    """Reject signals as JSON lines to a PLC gateway over TCP (own thread, bounded queue)."""

    type: Literal["tcp"]
    host: str = Field(description="gateway host name or address")
    port: int = Field(ge=1, le=65535)
    queue: int = Field(1000, ge=1, description="messages kept while disconnected; when full the oldest is dropped (counted, logged)")
    only_rejects: bool = Field(False, description="send only reject verdicts (default: every board)")
    connect_timeout_s: float = Field(2.0, gt=0, le=_HOUR)
    backoff_s: tuple[float, float] = Field((0.1, 5.0), description="first and largest wait between reconnects")
    ack: bool = Field(False, description="the gateway acknowledges ({\"ack\": seq} lines); unacknowledged messages are sent again")
    ack_timeout_s: float = Field(5.0, gt=0, le=_HOUR, description="with ack: reconnect and resend when the oldest message waits this long")

    @model_validator(mode="after")
    def _backoff(self) -> "TcpSinkConfig":
        lo, hi = self.backoff_s
        if lo <= 0 or hi < lo or hi > _HOUR:
            raise ValueError("backoff_s must be (first, largest) with 0 < first <= largest <= 3600")
        return self


class GenicamOutputSinkConfig(_Strict):
    """A reject pulse on a camera digital output (needs `source.type: genicam`). The pulse starts
    `delay` after the board's first line passed the camera (the ejector sits downstream)."""

    type: Literal["genicam_output"]
    line: str = Field("Line1", description="LineSelector entry of the output line")
    user_output: str = Field("UserOutput1", description="UserOutputSelector entry routed to the line (LineSource)")
    pulse_ms: float | None = Field(None, gt=0, le=_HOUR * 1e3, description="pulse length in ms (default 50 unless pulse_lines)")
    pulse_lines: int | None = Field(None, ge=1, le=10**9, description="pulse length in camera lines")
    delay_ms: float | None = Field(None, ge=0, le=_HOUR * 1e3, description="delay from the board's first line, in ms")
    delay_lines: int | None = Field(None, ge=0, le=10**9, description="delay from the board's first line, in camera lines")
    only_rejects: bool = Field(True, description="pulse on rejects only (false: on every board)")

    @model_validator(mode="after")
    def _one_of(self) -> "GenicamOutputSinkConfig":
        if self.pulse_ms is not None and self.pulse_lines is not None:
            raise ValueError("give pulse_ms or pulse_lines, not both")
        if self.delay_ms is not None and self.delay_lines is not None:
            raise ValueError("give delay_ms or delay_lines, not both")
        return self


class LogSinkConfig(_Strict):
    """One structlog event per board (journald under systemd)."""

    type: Literal["log"]
    only_rejects: bool = False


SinkConfig = Annotated[Union[TcpSinkConfig, GenicamOutputSinkConfig, LogSinkConfig], Field(discriminator="type")]


class RecordsConfig(_Strict):
    """Board records: JSONL (records_dir/boards.jsonl) and/or SQLite in WAL mode with retention."""

    jsonl: bool = True
    sqlite: bool = False
    sqlite_path: Path | None = Field(None, description="default: <output.records_dir>/boards.sqlite")
    retention_days: float | None = Field(90.0, gt=0, le=36500, description="SQLite rows and rotated JSONL files older than this are deleted; null = keep")
    jsonl_max_mb: float | None = Field(64.0, gt=0, le=1e6, description="boards.jsonl is rotated at this size; null = never")
    max_rows: int | None = Field(None, ge=1, le=2**62, description="SQLite keeps at most this many newest rows; null = no limit")
    prune_interval_s: float = Field(600.0, gt=0, le=_DAY, description="how often retention is applied")
    backlog: int = Field(10_000, ge=1, description="records kept in memory per store while it fails (full disk); oldest dropped, counted, beyond")
    retry_s: float = Field(5.0, gt=0, le=_HOUR, description="how often a failing store is tried again")


class HeatmapsConfig(_Strict):
    """Overlay PNGs of rejected boards (downscaled board + tile-score heat) within a disk budget."""

    enabled: bool = False
    dir: Path | None = Field(None, description="default: <output.records_dir>/heatmaps")
    max_bytes: int = Field(512 * 1024**2, ge=1, description="disk budget; oldest PNGs removed first")
    max_width: int = Field(512, ge=16, description="thumbnail width in px: board lines are kept downscaled by ceil(width / max_width)")
    queue: int = Field(32, ge=1, description="images waiting for the writer thread; more are skipped (counted)")


class MetricsConfig(_Strict):
    """Prometheus metrics over HTTP (prometheus-client)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535, description="0 = any free port (logged)")


class DriftConfig(_Strict):
    """Alarm when the good boards' scores move away from what the calibration assumed. With the
    calibration's good-board scores: their Kolmogorov-Smirnov distance from the last `window`
    accepted boards' scores above `max_distance`. Without them (or with `reference` given): the
    window's `quantile` divided by `reference` (default the tile threshold) outside
    [min_ratio, max_ratio]."""

    enabled: bool = True
    window: int = Field(200, ge=10, le=1_000_000, description="accepted boards in the rolling window")
    min_boards: int = Field(50, ge=1, description="no alarm before this many accepted boards")
    quantile: float = Field(0.5, gt=0, lt=1)
    max_distance: float = Field(0.35, gt=0, lt=1, description="KS distance that raises the alarm (0.35: about a one-standard-deviation shift)")
    reference: float | None = Field(None, gt=0, description="expected value of that quantile; compare with this number instead of the calibration's good boards")
    min_ratio: float = Field(0.0, ge=0)
    max_ratio: float = Field(0.8, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> "DriftConfig":
        if self.min_ratio >= self.max_ratio:
            raise ValueError("min_ratio must be below max_ratio")
        return self


class ServiceConfig(_Strict):
    """systemd integration of `run`."""

    status_interval_s: float = Field(2.0, gt=0, le=_DAY, description="STATUS= update period")
    stall_after_s: float = Field(10.0, gt=0, le=_DAY, description="a stage with work waiting and no progress for this long stops the watchdog pings")
    heap_trim_interval_s: float = Field(60.0, ge=0, le=_DAY, description="hand freed heap memory back to the kernel (glibc malloc_trim) this often; 0 = never")


class LoggingConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(_Strict):
    @model_validator(mode="before")
    @classmethod
    def _source_type(cls, data: object) -> object:
        """`source:` without a `type` is the camera, the service's normal source."""
        if isinstance(data, dict) and isinstance(data.get("source"), dict) and "type" not in data["source"]:
            data = {**data, "source": {"type": "genicam", **data["source"]}}
        return data

    camera: CameraConfig = CameraConfig()
    tiling: TilingConfig = TilingConfig()
    inference: InferenceConfig = InferenceConfig()
    decision: DecisionConfig = DecisionConfig()
    output: OutputConfig = OutputConfig()
    logging: LoggingConfig = LoggingConfig()
    training: TrainingConfig = TrainingConfig()
    source: SourceConfig = CameraSourceConfig()
    record: RecordConfig = RecordConfig()
    sinks: list[SinkConfig] = Field(default_factory=lambda: [LogSinkConfig(type="log")])
    records: RecordsConfig = RecordsConfig()
    heatmaps: HeatmapsConfig = HeatmapsConfig()
    metrics: MetricsConfig = MetricsConfig()
    drift: DriftConfig = DriftConfig()
    service: ServiceConfig = ServiceConfig()


def _validation_problems(err: ValidationError) -> list[str]:
    """One line per problem, each naming the key path, so an operator fixes all of them at once."""
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = "unknown key (typo?)" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"{path}: {msg}")
    return lines


def _problems_error(source: str, problems: list[str]) -> ConfigError:
    return ConfigError(f"{source}: {len(problems)} configuration problem(s):\n" + "\n".join(f"  {p}" for p in problems))


def duplicate_keys(node: yaml.Node | None) -> list[str]:
    """Every key given twice in one mapping, as "key.path: given twice, at line A and line B".
    YAML forbids them, but PyYAML keeps the last silently, so a second `camera:` section, say,
    would quietly replace the first."""
    found: list[str] = []
    seen_nodes: set[int] = set()  # aliases share nodes: each is walked once

    def walk(n: yaml.Node, path: tuple[str, ...]) -> None:
        if id(n) in seen_nodes:
            return
        seen_nodes.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: dict[str, int] = {}
            for k, v in n.value:
                name = str(k.value) if isinstance(k, yaml.ScalarNode) else "?"
                if isinstance(k, yaml.ScalarNode) and name != "<<":
                    line = k.start_mark.line + 1
                    if name in first:
                        found.append(f"{'.'.join((*path, name))}: given twice, at line {first[name]} and line {line}")
                    else:
                        first[name] = line
                walk(v, (*path, name))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                walk(item, (*path, str(i)))

    if node is not None:
        walk(node, ())
    return found


def _read_yaml_mapping(path: Path, what: str) -> tuple[dict, list[str]]:
    """A YAML file whose top level is a mapping (empty = {}), and its duplicate keys;
    ConfigError naming the file otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None
    try:
        dups = duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid as {what}: nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # e.g. a date like 2026-13-01, which YAML reads as a timestamp
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}, dups
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level of the {what} must be a mapping, got {type(data).__name__}")
    return data, dups


def load_yaml_model(path: Path, what: str, model: type[M], context: dict | None = None) -> M:
    """A YAML file validated as `model`; ConfigError naming the file and listing every problem at
    once, duplicate keys included (checked on what PyYAML made of them: the last one)."""
    data, problems = _read_yaml_mapping(path, what)
    try:
        result = model.model_validate(data, context=context)
    except ValidationError as err:
        problems = problems + _validation_problems(err)
    if problems:
        raise _problems_error(str(path), problems)
    return result


def load_config(path: Path | None) -> Config:
    """Load and validate; raise ConfigError listing every problem."""
    if path is None:
        return Config()
    return load_yaml_model(path, "configuration", Config)
