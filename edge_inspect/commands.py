"""Subcommand bodies; `cli.py` parses, these do the work and return an exit code."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from typing import Any

import structlog

from edge_inspect.config import Config, load_config
from edge_inspect.errors import ConfigError, InputDataError, UsageError
from edge_inspect.logging import setup_logging
from edge_inspect.progress import echo, set_interval

log = structlog.get_logger(__name__)


def _setup(args: argparse.Namespace, cfg: Config | None = None) -> Config:
    cfg = cfg or load_config(getattr(args, "config", None))
    setup_logging(args.log_level or cfg.logging.level, args.log_format or cfg.logging.format)
    set_interval(args.progress_every)
    return cfg


def _out(text: str) -> None:
    echo(text)  # above a progress bar on the same terminal, not through it


def _board_line(v) -> str:
    score = "   n/a" if math.isnan(v.score) else f"{v.score:.4g}"
    reasons = "; ".join(v.reasons)
    return (f"board {v.board_id:4d}  lines {v.start_line:7d}-{v.end_line:<7d} tiles {v.n_tiles:4d}  "
            f"score {score:>8}  {v.verdict.upper():6s}  {reasons}")


def _model_and_calibration(cfg: Config):
    """The backend and the calibration that belongs to it, or a clear refusal."""
    from edge_inspect.decision.calibration_file import (
        check_against_model,
        load_calibration,
    )
    from edge_inspect.inference.registry import create_configured_backend

    cal = load_calibration(cfg.decision.calibration)
    backend = create_configured_backend(cfg.inference.backend)
    check_against_model(cal, cfg.decision.calibration, backend.model_sha256, backend.score_names)
    return backend, cal


def _until_stopped(body, stop, max_seconds: float | None = None) -> tuple[Any, int | None]:
    """Run `body()`; SIGINT/SIGTERM and the time limit call `stop()`, which ends it by draining
    instead of killing it. Returns body's result and the signal that stopped it, if one did."""
    got: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        got.append(signum)
        stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    timer = threading.Timer(max_seconds, stop) if max_seconds else None
    try:
        if timer:
            timer.start()
        return body(), (got[0] if got else None)
    finally:
        if timer:
            timer.cancel()
        for s, h in previous.items():
            signal.signal(s, h)


def replay(args: argparse.Namespace) -> int:
    from edge_inspect.acquisition.factory import open_scan
    from edge_inspect.acquisition.ground_truth import (
        compare,
        load_truth,
        truth_path_for,
    )
    from edge_inspect.acquisition.recording import is_recording
    from edge_inspect.acquisition.replay import scan_files
    from edge_inspect.monitoring.board_view import scan_label
    from edge_inspect.pipeline import Pipeline, check_fit
    from edge_inspect.progress import Progress
    from edge_inspect.records.jsonl import JsonlRecords
    from edge_inspect.records.keeper import RecordKeeper

    cfg = _setup(args)
    for scan in args.scans:  # every path checked before any work starts
        if not is_recording(scan):
            scan_files(scan)
    backend, cal = _model_and_calibration(cfg)
    model_sha = backend.model_sha256
    out_dir = args.out or cfg.output.records_dir
    jsonl = JsonlRecords(out_dir / "boards.jsonl")
    # a full disk must not hide verdicts already reached: they are printed, and records the file
    # could not take are logged whole and reported at the end
    records = RecordKeeper([jsonl], cfg.records.backlog, cfg.records.retry_s)
    report = None
    if args.report is not None:
        from edge_inspect.monitoring.replay_report import ReportCollector

        report = ReportCollector(cal, cfg.tiling.tile_size)
    failed = False
    interrupted: int | None = None
    rows = []
    try:
        for scan in args.scans:
            source = open_scan(scan, cfg, args.speed)
            check_fit(backend, cfg.tiling.tile_size, str(scan), source.width, source.channels, InputDataError)
            truth_file = truth_path_for(scan)
            truth = load_truth(truth_file) if truth_file is not None else None
            verdicts: list[dict] = []

            def on_verdict(v, verdicts=verdicts) -> None:
                records.write(v)
                verdicts.append(v.to_record())
                _out(_board_line(v))

            pipe = Pipeline(cfg, source, backend, cal, on_verdict, source.width, source.channels,
                            observer=report, image_scale=report.image_scale(source.width) if report else 0)
            if report is not None:
                report.begin_scan(scan, truth)
            with Progress(f"replay {scan_label(scan)}", total=source.total_lines, unit="lines") as bar:
                stats, interrupted = _until_stopped(lambda: pipe.run(tick=lambda st: bar.set(st.lines_decided)),
                                                    pipe.stop)
            if stats.error:
                failed = True
                sys.stderr.write(f"edge-inspect: error: {scan}: {stats.error}\n")
            rows.append((scan, stats))
            c = compare(verdicts, truth) if truth is not None else None
            if c is not None:
                _out(f"ground truth {truth_file}: defective boards rejected {c.defective_rejected}/{c.defective}"
                     f" (with a defect >= 20x20 px: {c.large_defective_rejected}/{c.large_defective}),"
                     f" good boards rejected {c.good_rejected}/{c.good},"
                     f" boards without a verdict {len(c.missed_boards)}")
            if report is not None:
                report.end_scan(scan, stats, c, truth_file)
            if interrupted is not None:
                break  # drained; later scans are not begun
    finally:
        record_problems = records.close()
        backend.close()
    for problem in record_problems:
        failed = True
        sys.stderr.write(f"edge-inspect: error: {problem}\n")
    _out("")
    _out(f"{'scan':40s} {'boards':>6s} {'rejects':>7s} {'incompl':>7s} {'tiles':>7s} {'tiles/s':>8s} {'drops':>5s} {'lost':>6s}")
    for scan, st in rows:
        _out(f"{str(scan)[-40:]:40s} {st.boards:6d} {st.rejects:7d} {st.incomplete:7d} {st.tiles:7d} "
             f"{st.tiles_per_s:8.1f} {st.dropped_strips:5d} {st.lines_lost:6d}")
    _out(f"records: {jsonl.path}")
    if report is not None:
        from edge_inspect.monitoring.replay_report import write_replay_report

        model = getattr(cfg.inference.backend, "model", None) or getattr(cfg.inference.backend, "engine", "")
        _out(f"report: {write_replay_report(args.report, report, str(model), model_sha)}")
    if interrupted is not None:  # a replay cut short is not a success: scripts must see it
        left = len(args.scans) - len(rows)
        sys.stderr.write(f"edge-inspect: interrupted by {signal.Signals(interrupted).name}: drained, every board "
                         f"begun has its record ({sum(st.boards for _, st in rows)} boards)"
                         + (f"; {left} scan(s) not replayed" if left else "") + "\n")
        return 128 + interrupted
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    """The service: see edge_inspect/service/runner.py (systemd notify, watchdog, SIGHUP reload,
    SIGTERM drain, sinks, records, metrics)."""
    from edge_inspect.service.runner import run_service

    cfg = _setup(args)
    return run_service(cfg, args.max_seconds, _model_and_calibration)


def record(args: argparse.Namespace) -> int:
    from edge_inspect.acquisition.factory import open_source
    from edge_inspect.acquisition.recording import Recorder

    cfg = _setup(args)
    source = open_source(cfg)
    rec = Recorder.for_source(args.out, source, cfg.record)

    def copy_all() -> None:
        for strip in source.strips():
            rec.write(strip)

    try:  # a signal or the time limit is how a recording normally ends: exit 0
        _until_stopped(copy_all, source.close, args.max_seconds)
    finally:
        source.close()
        rec.close()
    counters = source.counters
    _out(f"recorded {rec.frames} frames to {args.out}"
         + (f" ({rec.chunks_removed} oldest chunks removed for the disk budget)" if rec.chunks_removed else "")
         + (f" ({rec.short_frames} short frame(s): the end of a scan, its real line count kept)"
            if rec.short_frames else ""))
    if counters:
        _out("camera: " + ", ".join(f"{k} {v}" for k, v in counters.as_dict().items()))
    return 0


def synth(args: argparse.Namespace) -> int:
    from edge_inspect.acquisition.synthetic import SynthSpec, write_synthetic_scans

    _setup(args, Config())
    try:  # the arguments are checked here, where their ranges are defined (README: usage errors exit 2)
        spec = SynthSpec(boards=args.boards, defect_rate=args.defect_rate, seed=args.seed,
                         width=args.width, channels=1 if args.grey else 3, style=args.style,
                         board_lines=tuple(args.board_lines))
        spec.validate()
        if args.lines_per_frame < 1:
            raise ValueError(f"lines_per_frame must be >= 1, got {args.lines_per_frame}")
    except ValueError as exc:
        raise UsageError(f"synth: {exc}") from None
    truth = write_synthetic_scans(args.out, spec, fmt=args.format, lines_per_frame=args.lines_per_frame)
    _out(f"wrote {args.boards} {args.style} boards to {args.out} (ground truth {truth})")
    return 0


def train(args: argparse.Namespace) -> int:
    cfg = _setup(args)
    existing = args.out / "model.pt"
    if existing.exists() and not args.force:  # hours of training are not overwritten by a typo
        raise UsageError(f"{existing}: a checkpoint is already there; choose another --out, or add --force to "
                         f"overwrite it")
    try:
        from edge_inspect.training.loop import train as run_training
    except ImportError as exc:
        raise InputDataError(f"training needs the train extra (pip install 'edge-inspect[train]'): {exc}") from None
    from edge_inspect.datasets.contamination import record_contamination
    from edge_inspect.datasets.sources import combined, training_contamination, training_data

    if getattr(args, "contaminate", None) is not None:  # the flag overrides training.contaminate
        from pydantic import ValidationError

        from edge_inspect.training_config import TrainingConfig
        try:
            tc = TrainingConfig.model_validate({**cfg.training.model_dump(), "contaminate": args.contaminate})
        except ValidationError as exc:
            raise ConfigError(f"--contaminate {args.contaminate}: {exc.errors()[0]['msg']}") from None
        cfg = cfg.model_copy(update={"training": tc})
    parts = [training_data(path, cfg, args.data_kind) for path in args.data]
    for part in parts:
        _out(f"training data: {part.describe()}")
    data = combined(parts)
    picked, extra = training_contamination(args.data[0], cfg.training)
    result = run_training(cfg.training, data.images, args.out, extra_train=extra, trained_on=data.manifest(),
                          groups=data.groups)
    record_contamination(args.out, picked)
    if picked is not None:
        _out(f"contamination: {len(picked.images)} defect images mixed into training "
             f"(list in {args.out / 'contamination.json'})")
    _out(f"checkpoint {result.checkpoint} ({result.patches_seen} patches in {result.seconds:.0f} s, "
         f"{result.epochs_run} epochs; decision score {result.decision_score}, kept validation "
         f"{result.selected.get('validation')} by {result.selected.get('rule')})")
    return 0


def export(args: argparse.Namespace) -> int:
    _setup(args, Config())
    try:
        from edge_inspect.export.onnx_export import export_onnx
    except ImportError as exc:
        raise InputDataError(f"export needs the train extra (pip install 'edge-inspect[train]'): {exc}") from None
    manifest = export_onnx(args.model, args.out, fp16=args.fp16)
    _out(f"wrote {args.out} (sha256 {manifest['sha256'][:12]})")
    if args.calibration is not None:
        from edge_inspect.recalibration.initial import write_initial_calibration

        score = args.score or manifest.get("decision_score") or "residual_max"
        cal = write_initial_calibration(args.model.parent / "validation_scores.npz", score,
                                        manifest["sha256"], args.calibration)
        _out(f"wrote {args.calibration} ({cal.score} tile_threshold {cal.tile_threshold:.4g})")
    return 0


def bench(args: argparse.Namespace) -> int:
    from edge_inspect.bench import run_bench

    cfg = _setup(args)
    for line in run_bench(cfg, args.scan, args.seconds, args.rounds):
        _out(line)
    return 0


def calibrate(args: argparse.Namespace) -> int:
    """Operator recalibration: propose a threshold from recent good boards, show what it does,
    apply it only when confirmed; or roll back to the previous one."""
    from edge_inspect.decision.calibration_file import (
        BoardRule,
        load_calibration,
        write_calibration,
    )
    from edge_inspect.inference.registry import create_configured_backend
    from edge_inspect.recalibration.apply import (
        apply_calibration,
        new_version,
        notify_service,
        rollback,
    )
    from edge_inspect.recalibration.proposal import build_proposal, summary_lines
    from edge_inspect.recalibration.report import write_report
    from edge_inspect.acquisition.scan_sets import scan_set
    from edge_inspect.recalibration.scoring import (
        check_records_model,
        provisional_calibration,
        score_scan,
    )
    from edge_inspect.recalibration.training_scans import check_training_scans

    cfg = _setup(args)
    current_path = cfg.decision.calibration
    if args.rollback:
        backend = create_configured_backend(cfg.inference.backend)
        sha = backend.model_sha256
        backend.close()
        try:
            restored, replaced = rollback(current_path, sha)
        except OSError as exc:
            raise InputDataError(f"could not write the calibration ({exc}); {current_path} is unchanged") from None
        was = f" (was {replaced.version}, tile threshold {replaced.tile_threshold:.4f})" if replaced else ""
        _out(f"Rolled back: current calibration is now {restored.version}, tile threshold "
             f"{restored.tile_threshold:.4f}{was}")
        _out(notify_service(args.pid_file))
        return 0
    if not args.scans:
        sys.stderr.write("edge-inspect calibrate: error: --scans is required (or --rollback)\n")
        return 2
    bound = args.max_frr is not None  # the two flags are mutually exclusive
    target_frr = args.max_frr if bound else args.target_frr
    if not 0 < target_frr < 1:
        flag = "--max-frr" if bound else "--target-frr"
        sys.stderr.write(f"edge-inspect calibrate: error: {flag} must be between 0 and 1, got {target_frr}\n")
        return 2
    # every path checked before any work starts; each argument may stand for several scans
    sets = [(flag, scan_set(p, cfg.camera.lines_per_frame))
            for flag, paths in (("--scans", args.scans), ("--defect-scans", args.defect_scans or [])) for p in paths]
    good = [s for flag, ss in sets if flag == "--scans" for s in ss.scans]
    defect = [s for flag, ss in sets if flag == "--defect-scans" for s in ss.scans]
    current = load_calibration(current_path) if current_path.exists() else None
    backend = create_configured_backend(cfg.inference.backend)
    try:
        if args.records is not None:
            check_records_model(args.records, backend.model_sha256)
        learned = check_training_scans(sets, backend.trained_on, args.allow_training_scans)
        for flag, ss in sets:
            _out(f"{flag} {ss.path}: {ss.describe()}")
        for t in learned:
            _out(f"{t.flag} {t.given}: {t.scan} was training data of the model (allowed by --allow-training-scans)")
        score = args.score or (current.score if current is not None else "residual_max")
        if score not in backend.score_names:
            raise ConfigError(f"score {score!r} is not an output of the model ({', '.join(backend.score_names)})")
        rule = current.board_rule if current is not None else BoardRule()
        cal0 = provisional_calibration(score, rule)
        good_scores = [score_scan(cfg, backend, cal0, s) for s in good]
        defect_scores = [score_scan(cfg, backend, cal0, s) for s in defect]
        sha = backend.model_sha256
    finally:
        backend.close()
    proposal = build_proposal(good_scores, defect_scores, target_frr, score, rule, sha,
                              new_version(current_path), current, [t.scan for t in learned],
                              "bound" if bound else "measured")
    cal = proposal.calibration
    report_dir = args.report or current_path.parent / "reports" / cal.version
    page = write_report(proposal, report_dir, cfg.tiling.tile_size)
    write_calibration(report_dir / "proposed.yaml", cal)
    for line in summary_lines(proposal):
        _out(line)
    _out(f"Report: {page}")
    if args.yes:
        ok = True
    elif sys.stdin.isatty():
        try:
            ok = input("Apply? [y/N] ").strip().lower() in ("y", "yes")
        except EOFError:
            ok = False
    else:
        _out(f"Not applied: no terminal to ask on and no --yes given (proposal: {report_dir / 'proposed.yaml'})")
        return 0
    if not ok:
        _out("Not applied; the current calibration is unchanged.")
        return 0
    try:
        hist = apply_calibration(cal, current_path)
    except OSError as exc:
        raise InputDataError(f"could not write the calibration ({exc}); {current_path} is unchanged") from None
    _out(f"Applied: {current_path} is now {cal.version} (history: {hist})")
    _out(notify_service(args.pid_file))
    return 0


def build_engine(args: argparse.Namespace) -> int:
    """TensorRT plan + manifest; progress on stderr, the result line on stdout."""
    from edge_inspect.export.engine import build_engine as build

    _setup(args, Config())
    m = build(args.onnx, args.out, min_batch=args.min_batch, opt_batch=args.opt_batch, max_batch=args.max_batch,
              workspace_mb=args.workspace_mb, timing_cache=args.timing_cache, device=args.device)
    _out(f"wrote {args.out} ({m['precision']}, TensorRT {m['tensorrt']}, {m['gpu']['name']}, "
         f"batch {m['profile']['min']}..{m['profile']['max']}, sha256 {m['sha256'][:12]}) and {args.out}.json")
    return 0


def parity(args: argparse.Namespace) -> int:
    """Exit 1 when the candidate's ranking or AUROC drifts past the gate."""
    import json

    from edge_inspect.export.parity import run_parity

    _setup(args, Config())
    rep = run_parity(args.reference, args.candidate, args.tiles, labels=args.labels, score=args.score,
                     device=args.device, max_tiles=args.max_tiles)
    for line in rep.lines():
        _out(line)
    if args.json is not None:
        args.json.write_text(json.dumps(rep.to_json(), indent=2), encoding="utf-8")
    return 0 if rep.passed else 1


def evaluate(args: argparse.Namespace) -> int:
    """Image (and pixel) metrics of a checkpoint on an MVTec-layout test set; thresholds come
    from the checkpoint's validation scores, never from the test labels."""
    import json

    _setup(args, Config())
    try:
        from edge_inspect.evaluation.evaluate import evaluate as run_evaluation
    except ImportError as exc:
        raise InputDataError(f"evaluate needs the train extra (pip install 'edge-inspect[train]'): {exc}") from None
    report = run_evaluation(args.model, args.data, batch_size=args.batch_size, device=args.device,
                            plots=args.plots)
    for line in report.lines():
        _out(line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.doc, indent=2), encoding="utf-8")
        _out(f"json: {args.json}")
    if args.plots is not None:
        _out(f"plots: {', '.join(report.doc['plots'])}")
    return 0


def doctor(args: argparse.Namespace) -> int:
    """Always exit 0: findings, not failures."""
    from edge_inspect.doctor import run_doctor

    _setup(args, Config())
    for line in run_doctor().lines():
        _out(line)
    return 0
