"""The Prometheus files an operator installs (docs/monitoring/), checked by Prometheus's own promtool:
the config and the alert rules are valid, and each alert fires on the series that should raise it and
not on those beside it (``alerts_test.yml``: a busy process, a quiet one on an old classifier, one
alert for a figure every process reports). A real Prometheus scrapes real daphne processes with them in
tests/integration/test_production_topology.py."""

from __future__ import annotations

import shutil
import subprocess

from tests.conftest import require_binary
from tests.live import MONITORING, alert_names


def promtool(*args: str, cwd=MONITORING) -> subprocess.CompletedProcess:
    return subprocess.run([require_binary("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_alert_rules_are_valid():
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in checked.stdout


def test_each_alert_fires_where_it_should_and_nowhere_else():
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # Every alert has a case that raises it.
    alerts = alert_names()
    tests = (MONITORING / "alerts_test.yml").read_text()
    assert alerts and all(f"alertname: {alert}\n        exp_alerts:\n          - exp_labels" in tests for alert in alerts)


def test_the_example_prometheus_config_is_valid(tmp_path):
    # promtool also opens the token file the config names: give it one where the config expects it.
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(MONITORING / name, tmp_path / name)
    token = tmp_path / "portal-metrics-token"
    token.write_text("a-metrics-token-of-at-least-24-characters")
    config = tmp_path / "prometheus.yml"
    config.write_text(config.read_text().replace("/etc/prometheus/portal-metrics-token", str(token)))
    checked = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout
