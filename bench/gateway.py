#!/usr/bin/env python3
"""Gateway overhead: Switchboard (no local model) and the LiteLLM proxy in front of the same
fast mock upstream, side by side in one run on one machine.

    python3 -m venv bench/.litellm && bench/.litellm/bin/pip install "litellm[proxy]==1.77.7"
    cargo build --release -p switchboard -p switchboard-server --example mock_upstream
    python3 bench/gateway.py [--seconds 10] [--litellm bench/.litellm/bin/litellm]

The mock (crates/server/examples/mock_upstream.rs) answers at once: one JSON body, or 20 SSE
content chunks plus finish, usage and [DONE]. wrk (Debian package `wrk`) drives each target
with the same request: the mock directly (the baseline), Switchboard, and LiteLLM. Measures:

1. added latency, p50 and p99, at concurrency 1: non-streaming, and streaming (20 chunks);
   "added" is the target's percentile minus the mock's own at the same percentile;
2. throughput (requests/s) and p99 at concurrency 64, non-streaming;
3. peak RSS (VmHWM) of each gateway, all its processes together.

Switchboard fully parses each upstream chunk and re-encodes it for the client; so does LiteLLM.
Prints a markdown table.
"""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RELEASE = os.path.join(ROOT, "target", "release")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def rss_kb(pid):
    """Peak RSS of a process and all its descendants, in kB."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            children = open(f"/proc/{current}/task/{current}/children").read().split()
            pids.extend(int(child) for child in children)
        except OSError:
            pass
    return total


def wrk(url, body, connections, seconds):
    """Runs wrk with a POST body; returns (p50 ms, p99 ms, requests/s)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\n')
        script.write('wrk.headers["Content-Type"] = "application/json"\n')
        script.write('wrk.headers["Authorization"] = "Bearer sk-bench"\n')
        script.write(f"wrk.body = [[{body}]]\n")
        path = script.name
    threads = min(connections, 2)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", path, url],
        capture_output=True, text=True, check=True,
    ).stdout
    os.unlink(path)
    if "Non-2xx" in out:
        raise RuntimeError(f"{url} answered errors:\n{out}")

    def millis(label):
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return millis("50"), millis("99"), rate


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--litellm", default=os.path.join(HERE, ".litellm", "bin", "litellm"))
    args = parser.parse_args()

    processes = []

    def start(command, env=None, **kwargs):
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True, **kwargs)
        processes.append(process)
        return process

    try:
        mock_port, sb_port, ll_port = free_port(), free_port(), free_port()
        start([os.path.join(RELEASE, "examples", "mock_upstream"), f"127.0.0.1:{mock_port}"])
        mock = f"http://127.0.0.1:{mock_port}"
        time.sleep(0.5)

        workdir = tempfile.mkdtemp(prefix="sb-gateway-bench-")
        config = os.path.join(workdir, "switchboard.toml")
        with open(config, "w") as handle:
            handle.write(f"""
[engine]
enabled = false

[[providers]]
name = "mock"
kind = "openai"
base_url = "{mock}/v1"

[[models]]
id = "bench"
capabilities = ["tools", "json_object", "json_schema"]
routes = [{{ provider = "mock", model = "bench" }}]
""")
        env = dict(os.environ, RUST_LOG="warn")
        switchboard = start([os.path.join(RELEASE, "switchboard"), "serve", "--config", config,
                             "--listen", f"127.0.0.1:{sb_port}", "--api-key", "sk-bench",
                             "--store", os.path.join(workdir, "store.db")], env=env)
        litellm_config = os.path.join(workdir, "litellm.yaml")
        with open(litellm_config, "w") as handle:
            handle.write(f"""model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: {mock}/v1
      api_key: sk-mock
general_settings:
  master_key: sk-bench
litellm_settings:
  drop_params: true
""")
        litellm = start([args.litellm, "--config", litellm_config, "--port", str(ll_port),
                         "--host", "127.0.0.1"], env=dict(os.environ, LITELLM_LOG="ERROR"))
        wait_ready(f"http://127.0.0.1:{sb_port}/health")
        wait_ready(f"http://127.0.0.1:{ll_port}/health/liveliness")

        targets = {
            "mock": f"{mock}/v1/chat/completions",
            "Switchboard": f"http://127.0.0.1:{sb_port}/v1/chat/completions",
            "LiteLLM": f"http://127.0.0.1:{ll_port}/v1/chat/completions",
        }
        plain = '{"model":"bench","messages":[{"role":"user","content":"Say hi."}]}'
        streamed = ('{"model":"bench","stream":true,'
                    '"messages":[{"role":"user","content":"Say hi."}]}')
        results = {}
        for name, url in targets.items():
            wrk(url, plain, 1, 2)  # warm-up: connections, pools, JIT-free paths
            results[name] = {
                "plain": wrk(url, plain, 1, args.seconds),
                "stream": wrk(url, streamed, 1, args.seconds),
                "load": wrk(url, plain, 64, args.seconds),
            }
        sb_rss = rss_kb(switchboard.pid) / 1024
        ll_rss = rss_kb(litellm.pid) / 1024
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except OSError:
                pass
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    base = results["mock"]
    sb, ll = results["Switchboard"], results["LiteLLM"]

    def added(target, kind, index):
        return target[kind][index] - base[kind][index]

    rows = [
        ("added latency, non-streaming, p50 (ms)", added(sb, "plain", 0), added(ll, "plain", 0), "lower"),
        ("added latency, non-streaming, p99 (ms)", added(sb, "plain", 1), added(ll, "plain", 1), "lower"),
        ("added latency, streaming 20 chunks, p50 (ms)", added(sb, "stream", 0), added(ll, "stream", 0), "lower"),
        ("added latency, streaming 20 chunks, p99 (ms)", added(sb, "stream", 1), added(ll, "stream", 1), "lower"),
        ("throughput at 64 connections (req/s)", sb["load"][2], ll["load"][2], "higher"),
        ("p99 at 64 connections (ms)", sb["load"][1], ll["load"][1], "lower"),
        ("peak RSS (MiB)", sb_rss, ll_rss, "lower"),
    ]
    print(f"mock alone: p50 {base['plain'][0]:.3f} ms non-streaming, "
          f"{base['stream'][0]:.3f} ms streaming; {base['load'][2]:.0f} req/s at 64 connections")
    print("| measure | Switchboard | LiteLLM | ratio (S/L) | better |")
    print("|---|---|---|---|---|")
    for label, s_value, l_value, better in rows:
        ratio = s_value / l_value if l_value else float("nan")
        print(f"| {label} | {s_value:.3f} | {l_value:.3f} | {ratio:.3f} | {better} |")


if __name__ == "__main__":
    sys.exit(main())
