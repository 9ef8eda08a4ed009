#!/usr/bin/env python3
"""Smoke test of the taskman example with the official MCP Inspector CLI.

Starts the built example on an OS-chosen loopback port with an in-memory store, then uses
`mcp-inspector --cli` (which must be on PATH) to list the tools, create a task and read it
back, in both protocol eras. Prints the transcript; exits non-zero on any mismatch.

Usage: inspector_smoke.py PATH/TO/taskman
"""
import json
import os
import signal
import subprocess
import sys
import tempfile

from taskman_process import fail, start_taskman

EXPECTED_TOOLS = {
    "list_tasks", "get_task", "create_task", "update_task",
    "complete_task", "delete_task", "list_projects", "create_project",
}




def inspector(url, home, *args, expect_rc=0):
    command = ["mcp-inspector", "--cli", url, "--transport", "http", *args]
    shown = " ".join(a if " " not in a else repr(a) for a in command)
    print(f"$ {shown}")
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HOME": home})
    output = result.stdout.strip()
    print(output if len(output) < 1500 else output[:1500] + f" … ({len(output)} characters)")
    if result.returncode != expect_rc:
        fail(f"exit code {result.returncode}, expected {expect_rc}; stderr:\n{result.stderr}")
    if result.returncode != 0:
        return output
    body = json.loads(output)
    # `--format json` wraps the JSON-RPC result as {"result": ...}.
    return body.get("result", body) if isinstance(body, dict) else body


def structured(body):
    if body.get("isError"):
        fail(f"tool error: {body}")
    content = body.get("structuredContent")
    if content is None:
        fail(f"no structuredContent in {body}")
    return content


def main():
    if len(sys.argv) != 2:
        fail(__doc__)
    proc, addr = start_taskman(sys.argv[1])
    url = f"http://{addr}/mcp"
    home = tempfile.mkdtemp(prefix="inspector-home-")
    try:
        listing = inspector(url, home, "--method", "tools/list", "--format", "json")
        names = {tool["name"] for tool in listing["tools"]}
        if names != EXPECTED_TOOLS:
            fail(f"tools/list gave {sorted(names)}, expected {sorted(EXPECTED_TOOLS)}")

        created = structured(inspector(
            url, home, "--method", "tools/call", "--tool-name", "create_task",
            "--tool-args-json", json.dumps({"title": "buy milk", "priority": "high", "tags": ["shop"]}),
            "--format", "json"))
        if created.get("title") != "buy milk" or created.get("priority") != "high":
            fail(f"create_task returned {created}")

        fetched = structured(inspector(
            url, home, "--method", "tools/call", "--tool-name", "get_task",
            "--tool-args-json", json.dumps({"id": created["id"]}), "--format", "json"))
        if fetched != created:
            fail(f"get_task returned {fetched}, expected {created}")

        # The same endpoint serves the stateless 2026-07-28 era.
        listed = structured(inspector(
            url, home, "--protocol-era", "modern", "--method", "tools/call",
            "--tool-name", "list_tasks", "--format", "json"))
        if [task["id"] for task in listed["tasks"]] != [created["id"]]:
            fail(f"list_tasks (modern era) returned {listed}")

        # A backend 404 is a tool error: the Inspector exits 5.
        inspector(url, home, "--method", "tools/call", "--tool-name", "get_task",
                  "--tool-args-json", json.dumps({"id": "no-such-task"}), "--format", "json",
                  expect_rc=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            fail("taskman did not stop within 20 s of SIGTERM")
    if rc != 0:
        fail(f"taskman exited {rc} after SIGTERM:\n" + "\n".join(proc.log))
    print("inspector smoke test passed: tools/list, create_task, get_task, list_tasks (modern), isError path")


if __name__ == "__main__":
    main()
