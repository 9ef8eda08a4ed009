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
import signal
import socket
import subprocess
import sys
import tempfile

from taskman_process import fail, start_taskman
import time
import urllib.parse
import urllib.request




def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as response:
        return response.status, response.read().decode()


def traffic(addr):
    request(f"http://{addr}/health/ready")
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
