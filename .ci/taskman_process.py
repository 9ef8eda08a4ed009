"""Runs the built taskman example for the CI smoke tests and waits for it to listen."""
import json
import subprocess
import sys
import threading


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def start_taskman(binary, extra_env=None):
    """Starts `binary` on an OS-chosen loopback port with an in-memory store and JSON logs.

    Returns the process and its `host:port`; its log lines are collected in `process.log`.
    """
    env = {"TASKMAN_HTTP_PORT": "0", "TASKMAN_DB_PATH": ":memory:", "LOG_FORMAT": "json",
           "LOG_LEVEL": "info", **(extra_env or {})}
    process = subprocess.Popen([binary], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    process.log = []
    found = threading.Event()
    state = {"addr": None}

    def drain():
        for line in process.stderr:
            process.log.append(line.rstrip("\n"))
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("message") == "listening" and not found.is_set():
                state["addr"] = record["addr"]
                found.set()
        found.set()

    threading.Thread(target=drain, daemon=True).start()
    if not found.wait(60) or state["addr"] is None:
        process.kill()
        fail("taskman did not start:\n" + "\n".join(process.log))
    return process, state["addr"]
