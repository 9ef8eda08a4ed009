#!/usr/bin/env python3
"""Instructions per request of taskman, every layer off and every layer on, under callgrind.

The load benchmark (`cargo bench --bench load`) measures throughput, which on a small shared
machine varies by ±10 % from one round to the next. This counts the user-space instructions
taskman executes per `tools/call` instead: the same on every run to a fraction of a percent,
so a change of a few thousand instructions per request shows. It misses what instructions do
not show (cache misses, the kernel, threads waiting on each other), so quote it next to the
load benchmark, never instead of it.

    cargo build --release --example taskman
    python3 benches/instructions.py target/release/examples/taskman [list_tasks|create_task]

Needs valgrind (Debian: `apt-get install valgrind`). Runs taskman under callgrind with the
same settings as the load benchmark (stateless, in-memory store, JSON logs at info; "on":
metrics, tracing at sample rate 1 exported to a loopback OTLP sink, breakers, cache, retries),
creates 100 tasks, warms up with 200 calls, then counts `REQUESTS` (default 400) calls from 4
keep-alive connections. Extra variants: `VARIANTS="notrace=TRACING_ENABLED=false;s0=OTEL_SAMPLE_RATE=0"`
(each one the "on" stack with those settings). Takes about a minute per variant.
"""

import glob
import http.client
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ON = {
    "METRICS_ENABLED": "true",
    "TRACING_ENABLED": "true",
    "OTEL_SAMPLE_RATE": "1",
    "CIRCUIT_BREAKER_ENABLED": "true",
    "FALLBACK_CACHE_ENABLED": "true",
    "RETRY_ENABLED": "true",
}
OFF = {
    "METRICS_ENABLED": "false",
    "TRACING_ENABLED": "false",
    "CIRCUIT_BREAKER_ENABLED": "false",
    "FALLBACK_CACHE_ENABLED": "false",
    "RETRY_ENABLED": "false",
}


class Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that accepts every export."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def calls(host, port, tool, count, first):
    connection = http.client.HTTPConnection(host, port, timeout=120)
    for n in range(first, first + count):
        arguments = {"title": f"load {n}"} if tool == "create_task" else {"limit": 20}
        body = json.dumps(
            {
                "jsonrpc": "2.0",
                "id": n,
                "method": "tools/call",
                "params": {"name": tool, "arguments": arguments},
            }
        )
        connection.request(
            "POST",
            "/mcp",
            body,
            {
                "content-type": "application/json",
                "accept": "application/json, text/event-stream",
                "mcp-protocol-version": "2025-11-25",
            },
        )
        response = connection.getresponse()
        data = response.read()
        if response.status != 200 or b'"isError":true' in data:
            raise SystemExit(f"{tool} failed: {response.status} {data[:300]!r}")


def drive(host, port, tool, total, connections=4):
    threads = [
        threading.Thread(target=calls, args=(host, port, tool, total // connections, k * 100_000))
        for k in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def count(binary, tool, settings, requests, sink_port, workdir):
    env = {
        "PATH": os.environ["PATH"],
        "TASKMAN_HTTP_PORT": "0",
        "TASKMAN_DB_PATH": ":memory:",
        "TASKMAN_MCP_STATELESS": "true",
        "TASKMAN_MAX_CONCURRENT_REQUESTS": "10000",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        "RUST_LOG": "warn,taskman=info",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
        **settings,
    }
    out = os.path.join(workdir, "callgrind.out")
    for stale in glob.glob(out + "*"):
        os.remove(stale)
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--log-file=/dev/null", binary],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        addr = None
        deadline = time.monotonic() + 120
        for line in process.stderr:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("message") == "listening":
                addr = record["addr"]
                break
            if time.monotonic() > deadline:
                break
        if addr is None:
            raise SystemExit("taskman did not start under valgrind")
        # Keep draining the log so that taskman never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in process.stderr], daemon=True).start()
        host, port = addr.rsplit(":", 1)
        port = int(port)
        drive(host, port, "create_task", 100)
        drive(host, port, tool, 200)
        time.sleep(0.5)
        subprocess.run(["callgrind_control", "-z", str(process.pid)], capture_output=True, check=True)
        drive(host, port, tool, requests)
        subprocess.run(["callgrind_control", "-d", str(process.pid)], capture_output=True, check=True)
    finally:
        process.kill()
        process.wait()
    dumps = sorted(glob.glob(out + ".*"), key=os.path.getmtime)
    with open(dumps[-1]) as dump:
        for line in dump:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1]) / requests
    raise SystemExit("no totals in the callgrind dump")


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    binary = sys.argv[1]
    tools = sys.argv[2:] or ["list_tasks", "create_task"]
    requests = int(os.environ.get("REQUESTS", "400"))
    variants = [("all off", OFF), ("all on", ON)]
    for spec in filter(None, os.environ.get("VARIANTS", "").split(";")):
        name, _, pairs = spec.partition("=")
        extra = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
        variants.append((name, {**ON, **extra}))
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as workdir:
        print(f"taskman instructions per request (callgrind, {requests} requests after warm-up)")
        print()
        print("| tool | layers | instructions per request | ÷ all off |")
        print("|---|---|---|---|")
        for tool in tools:
            baseline = None
            for name, settings in variants:
                per_request = count(binary, tool, settings, requests, sink.server_port, workdir)
                baseline = baseline or per_request
                print(f"| {tool} | {name} | {per_request:,.0f} | {per_request / baseline:.3f} |", flush=True)


if __name__ == "__main__":
    main()
