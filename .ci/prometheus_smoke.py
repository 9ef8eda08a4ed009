#!/usr/bin/env python3
"""taskman under Prometheus's own tooling.

Starts the built example on loopback, sends it some traffic, checks a scrape with
`promtool check metrics`, then runs a real Prometheus server (loopback only, temporary
storage) that scrapes taskman, and asks its query API for taskman_http_requests_total.
Needs `promtool` and `prometheus` on PATH (Debian package `prometheus`).

Usage: prometheus_smoke.py PATH/TO/taskman
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile

import time
import urllib.error
import urllib.parse
import urllib.request

from taskman_process import fail, start_taskman




def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as response:
        return response.status, response.read().decode()


def traffic(addr):
    try:
        request(f"http://{addr}/health/ready")
    except urllib.error.HTTPError:
        pass  # 503 when the backend is down: counted all the same
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "create_task", "arguments": {"title": "scraped"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}}).encode()
    request(f"http://{addr}/mcp", body, {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "create_task",
    })


KIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "taskman", "observability")


def check_operator_kit(binary, scrape):
    """promtool accepts the kit's config and rules, and every metric they and the Grafana
    dashboard use exists in a real scrape (of this taskman, and of one whose backend is down,
    which is what makes the error series appear)."""
    for what, path in (("config", "prometheus.yml"), ("rules", "alerts.yml")):
        check = subprocess.run(["promtool", "check", what, os.path.join(KIT, path)],
                               capture_output=True, text=True)
        print(f"$ promtool check {what} examples/taskman/observability/{path}   -> exit {check.returncode}")
        if check.returncode != 0:
            fail(f"promtool check {what}:\n{check.stdout}{check.stderr}")

    dead = free_port()  # nothing listens there
    down, addr = start_taskman(binary, {
        "TASK_MANAGER_API_ENDPOINT": f"http://127.0.0.1:{dead}/api/v1",
        # One failure opens a breaker, so that the transition series exist too.
        "CIRCUIT_BREAKER_VOLUME_THRESHOLD": "1",
    })
    try:
        traffic(addr)
        _, down_scrape = request(f"http://{addr}/metrics")
    finally:
        down.send_signal(signal.SIGTERM)
        down.wait(20)
    exposed = set()
    for line in (scrape + "\n" + down_scrape).splitlines():
        if line and not line.startswith("#"):
            exposed.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    used = set()
    with open(os.path.join(KIT, "alerts.yml")) as f:
        used |= set(re.findall(r"taskman_[a-z_]+", f.read()))
    with open(os.path.join(KIT, "grafana-dashboard.json")) as f:
        dashboard = json.load(f)
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"taskman_[a-z_]+", target["expr"]))
    missing = sorted(name for name in used if name not in exposed)
    print(f"operator kit uses {len(used)} metric names; a real scrape exposes {len(exposed)} series names")
    if missing:
        fail(f"metrics used by the dashboard or the rules but not exposed: {missing}")
    families = {re.sub(r"_(bucket|sum|count|created)$", "", name) for name in exposed}
    uncovered = sorted(f for f in families if not any(u.startswith(f) for u in used))
    if uncovered:
        fail(f"metrics the dashboard does not show: {uncovered}")


def main():
    if len(sys.argv) != 2:
        fail(__doc__)
    taskman, addr = start_taskman(sys.argv[1])
    prometheus = None
    work = tempfile.mkdtemp(prefix="prometheus-smoke-")
    try:
        traffic(addr)
        status, text = request(f"http://{addr}/metrics")
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        print(f"$ curl http://{addr}/metrics | promtool check metrics   -> exit {check.returncode}")
        if check.returncode != 0:
            fail(f"promtool check metrics:\n{check.stdout}{check.stderr}")
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        print(f"  {series} series, promtool found no problem")

        port = free_port()
        config = os.path.join(work, "prometheus.yml")
        with open(config, "w") as f:
            f.write(f"global:\n  scrape_interval: 1s\nscrape_configs:\n"
                    f"  - job_name: taskman\n    static_configs:\n      - targets: ['{addr}']\n")
        check = subprocess.run(["promtool", "check", "config", config], capture_output=True, text=True)
        if check.returncode != 0:
            fail(f"promtool check config:\n{check.stdout}{check.stderr}")
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={work}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        query = urllib.parse.quote('sum(taskman_http_requests_total)')
        deadline = time.time() + 90
        value = None
        while time.time() < deadline:
            try:
                traffic(addr)
                _, body = request(f"http://127.0.0.1:{port}/api/v1/query?query={query}")
                result = json.loads(body)["data"]["result"]
                if result:
                    value = float(result[0]["value"][1])
                    if value > 0:
                        break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(1)
        if not value:
            fail("Prometheus never returned taskman_http_requests_total > 0")
        print(f"Prometheus query sum(taskman_http_requests_total) = {value:g}")
        _, body = request(f"http://127.0.0.1:{port}/api/v1/targets")
        health = [t["health"] for t in json.loads(body)["data"]["activeTargets"]]
        print(f"Prometheus target health: {health}")
        if health != ["up"]:
            fail(f"target not up: {health}")
        check_operator_kit(sys.argv[1], text)
    finally:
        if prometheus:
            prometheus.terminate()
            prometheus.wait(20)
        taskman.send_signal(signal.SIGTERM)
        rc = taskman.wait(20)
    if rc != 0:
        fail(f"taskman exited {rc}")
    print("prometheus smoke test passed")


if __name__ == "__main__":
    main()
