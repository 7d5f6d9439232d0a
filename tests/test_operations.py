"""What operations get: the Grafana dashboard and the Prometheus alert rules (docs/) name only
metrics a real running service exports, and the alerts fire on the series that should raise
them (`promtool test rules`, skipped where promtool is not installed)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import urllib.request

import pytest
import yaml
from conftest import DEMO_CAL, DEMO_MODEL, ROOT
from test_service import Gateway, NotifyListener, start, wait_event, write_config

DASHBOARD = ROOT / "docs" / "grafana" / "edge-inspect.json"
ALERTS = ROOT / "docs" / "prometheus" / "edge-inspect-alerts.yml"
ALERT_TESTS = ROOT / "docs" / "prometheus" / "edge-inspect-alerts.test.yml"
PROMTOOL = shutil.which("promtool")
_METRIC = re.compile(r"\b((?:edge_inspect|process)_[a-z0-9_]+)")


def _dashboard_exprs() -> list[str]:
    d = json.loads(DASHBOARD.read_text())
    panels = [p for p in d["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in panels:
        assert p["title"] and p["description"] and p["targets"], p["title"]
        assert p["datasource"]["uid"] == "${datasource}"
        assert all('instance=~"$instance"' in t["expr"] for t in p["targets"]), p["title"]
    return [t["expr"] for p in panels for t in p["targets"]]


def _alert_rules() -> list[dict]:
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    for r in rules:
        assert r["labels"]["severity"] in ("warning", "critical") and r["annotations"]["summary"], r["alert"]
    return rules


def test_dashboard_and_alerts_cover_what_operations_watch():
    exprs = " ".join(_dashboard_exprs())
    for metric in ("boards_total", "rejects_total", "verdict_latency_seconds_bucket", "dropped_strips_total",
                   "lines_lost_total", "drift_distance", "drift_alarm", "sink_queued", "sink_unacked",
                   "records_pending", "stage_stalled"):
        assert f"edge_inspect_{metric}" in exprs, metric
    alerts = {r["alert"]: r["expr"] for r in _alert_rules()}
    assert "edge_inspect_stage_stalled" in alerts["EdgeInspectStageStalled"]
    assert "edge_inspect_drift_alarm" in alerts["EdgeInspectDriftAlarm"]
    assert "edge_inspect_sink_queued" in alerts["EdgeInspectSinkBacklog"]
    assert "edge_inspect_records_pending" in alerts["EdgeInspectRecordsFailing"]


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian: apt-get install prometheus)")
def test_alert_rules_are_valid_and_fire_when_they_should():
    check = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run([PROMTOOL, "test", "rules", ALERT_TESTS.name], cwd=ALERT_TESTS.parent,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr


@pytest.mark.slow
def test_every_metric_in_the_dashboard_and_alerts_is_exported(tmp_path, small_scan):
    """The shipped model, a looping replay and a TCP gateway with acks: the service exports every
    family the dashboard and the alerts read (none misspelt, none missing)."""
    gw = Gateway()
    cfg = write_config(tmp_path, DEMO_MODEL, DEMO_CAL, f"{{type: replay, path: {small_scan}, loop: true, speed: realtime}}",
                       f"sinks: [{{type: tcp, host: 127.0.0.1, port: {gw.port}, ack: true}}]\n"
                       "records: {jsonl: true, sqlite: true}\n")
    notify = NotifyListener()
    proc, err = start(cfg, notify)
    try:
        notify.wait_for("READY=1", 120)
        port = wait_event(err, "metrics_listening")["port"]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
        gw.stop()
    exported = {line.split("{")[0].split()[0] for line in text.splitlines() if line and not line.startswith("#")}
    wanted = set(_METRIC.findall(" ".join(_dashboard_exprs()))) | set(
        _METRIC.findall(" ".join(r["expr"] for r in _alert_rules())))
    assert wanted and not wanted - exported, sorted(wanted - exported)
    assert 'edge_inspect_stage_stalled{stage="inference"} 0.0' in text
