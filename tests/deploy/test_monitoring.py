"""/metrics as Prometheus scrapes it from a running daemon's admin listener, and the Grafana
dashboard and alert rules shipped in deploy/ checked against it (and against promtool)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bridge import __version__
from bridge.config import HttpConfig
from bridge.simulator.app import create_app
from bridge.simulator.sample import SAMPLE_TOKENS, sample_world
from bridge.simulator.server import serve_in_thread
from tests.helpers.daemon import write_config
from tests.helpers.servers import free_port
from tests.helpers.service import REPO
from tests.helpers.sim import Sim

DASHBOARD = REPO / "deploy" / "grafana" / "calbridge.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
METRIC_NAME = re.compile(r"\b((?:calbridge|process|python)_[a-z0-9_]+|up)\b(?!\s*\()")


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The text of GET /metrics from `calbridge run` after one poll and one feed request, read
    from the admin listener (write_config puts it on the feed port + 1)."""
    tmp = tmp_path_factory.mktemp("monitoring")
    world = sample_world()
    with serve_in_thread(create_app(world, control=True)) as server:
        port = free_port()
        config = write_config(tmp, Sim(world, server, dict(SAMPLE_TOKENS)), port)
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
            deadline = time.monotonic() + 60
            text = ""
            while 'outcome="ok"' not in text and time.monotonic() < deadline:
                time.sleep(0.2)
                try:
                    text = httpx.get(f"{admin}/metrics").text
                except httpx.TransportError:
                    continue
            assert 'outcome="ok"' in text, "the daemon never finished a poll"
            httpx.get(f"{base}/feeds/alice/not-the-secret.ics")  # a 404 feed request
            assert httpx.get(f"{base}/metrics").status_code == 404  # not on the feed listener
            yield httpx.get(f"{admin}/metrics").text
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _exposed_names(text: str) -> set[str]:
    """Every series name /metrics declares, including those of families with no sample yet
    (a labelled counter before its first increment)."""
    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_sum", "_count"],
        "info": ["_info"],
    }
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, []))
        names.update(sample.name for sample in family.samples)
    return names


def test_metrics_have_process_python_and_build_info_and_no_created(scraped: str) -> None:
    families = {f.name: f for f in text_string_to_metric_families(scraped)}
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "python_info",
        "python_gc_collections",
    ):
        assert families[name].samples, name
    (build,) = families["calbridge_build_info"].samples
    assert build.value == 1.0
    assert build.labels["version"] == __version__
    samples = [s for f in families.values() for s in f.samples]
    assert not [s.name for s in samples if s.name.endswith("_created")]
    assert "_created" not in scraped
    polls = {
        (s.labels["account"], s.labels["outcome"]): s.value
        for s in families["calbridge_polls"].samples
    }
    assert polls[("alice", "ok")] >= 1
    requests = {s.labels["status"]: s.value for s in families["calbridge_feed_requests"].samples}
    assert requests["404"] >= 1


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return exprs


def _alert_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_dashboard_and_alerts_use_only_metrics_that_exist(scraped: str) -> None:
    exposed = _exposed_names(scraped) | {"up"}  # `up` is Prometheus's own, per scrape target
    for source, exprs in (
        ("dashboard", _dashboard_expressions()),
        ("alerts", _alert_expressions()),
    ):
        used = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
        assert used, source
        assert used <= exposed, f"{source} uses metrics calbridge does not expose: {used - exposed}"
    # Every calbridge metric has a panel.
    ours = {
        f.name for f in text_string_to_metric_families(scraped) if f.name.startswith("calbridge_")
    }
    dashboard_text = " ".join(_dashboard_expressions())
    assert not [name for name in ours if name not in dashboard_text]


def test_readme_scrape_target_is_the_default_admin_listener() -> None:
    """The README's Prometheus job scrapes where config.example.toml and the default put
    /metrics, not the feed listener."""
    section = (REPO / "README.md").read_text().split("### Monitoring", 1)[1].split("\n### ", 1)[0]
    scrape = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])
    (job,) = scrape["scrape_configs"]
    assert job["job_name"] == "calbridge" and job.get("metrics_path", "/metrics") == "/metrics"
    (target,) = [t for group in job["static_configs"] for t in group["targets"]]
    example = tomllib.loads((REPO / "config.example.toml").read_text())["http"]
    assert target == example["admin_listen"] == HttpConfig().admin_listen
    assert target != example["listen"]


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: run scripts/system-deps.sh (Debian package prometheus)"
    return path


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    check = subprocess.run(
        [_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60
    )
    rules = len(_alert_expressions())
    assert check.returncode == 0 and f"SUCCESS: {rules} rules found" in check.stdout, (
        check.stdout + check.stderr
    )
    # Each alert has a promtool case that fires it, but for these (a list that may only shrink).
    cases = yaml.safe_load((ALERTS.parent / "alerts.test.yml").read_text())["tests"]
    tested = {c["alertname"] for test in cases for c in test["alert_rule_test"] if c["exp_alerts"]}
    alerts = yaml.safe_load(ALERTS.read_text())["groups"]
    assert {r["alert"] for g in alerts for r in g["rules"]} - tested <= {
        "CalbridgeCanvasThrottled",
        "CalbridgeCalDAVErrors",
        "CalbridgeWritebackFailures",
        "CalbridgeMemoryHigh",
        "CalbridgeFileDescriptorsLow",
    }
    unit = subprocess.run(
        [_promtool(), "test", "rules", "alerts.test.yml"],
        cwd=ALERTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unit.returncode == 0 and "SUCCESS" in unit.stdout, unit.stdout + unit.stderr


def test_dashboard_is_well_formed_and_its_queries_parse(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
    # promtool parses PromQL: each query as a recording rule, Grafana's variables filled in.
    rules = [
        {"record": f"calbridge:dashboard_query_{i}", "expr": expr}
        for i, expr in enumerate(_dashboard_expressions()[:-1])  # the last is label_values()
    ]
    for rule in rules:
        rule["expr"] = rule["expr"].replace("$__rate_interval", "5m").replace("$instance", ".*")
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    check = subprocess.run(
        [_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(rules)} rules found" in check.stdout
