#!/usr/bin/env python3
"""Switchboard vs llama.cpp's server, side by side, in one run on one machine.

    bash bench/setup_peer.sh                      # once: builds the pinned peer into bench/.peer
    cargo build --release -p switchboard
    python3 bench/compare.py [--threads 2] [--runs 5] [--skip-busy]

Both servers load the same GGUF with the same thread count and context size and are driven over
HTTP by the same stdlib-only client: greedy, end-of-sequence suppressed with logit_bias so both
generate exactly the requested tokens. Each prompt starts with a unique nonce so no server can
answer from a cache of an earlier run. Measures:

1. single-stream decode tokens/s (256 generated tokens),
2. prefill tokens/s and time to first token for a ~512-token prompt,
3. aggregate generated tokens/s with 1, 4 and 16 concurrent streams,
4. peak RSS of each server process (VmHWM),
5. single-stream decode while one busy loop runs on another core,
plus the physical floor for decode: bytes of weights read per token / measured memory bandwidth.
Prints a markdown table with the ratios (Switchboard / peer; for times and memory lower is
better, so the table says which way is good).
"""

import argparse
import ctypes
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_MODEL = os.path.join(
    os.environ.get("SWITCHBOARD_HOME", os.path.expanduser("~/.cache/switchboard")),
    "models", "SmolLM2-135M-Instruct.Q4_1.gguf",
)
STORY = "Write a very long, detailed story about a lighthouse keeper who finds a map. Use many chapters."
FILLER = (
    "The harbour town woke slowly. Fishing boats rocked against the pier while gulls argued over "
    "scraps, and the baker opened his shutters to the smell of salt and bread. "
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, name, command, port, env=None):
        self.name, self.port = name, port
        self.base = f"http://127.0.0.1:{port}/v1"
        self.log = open(os.path.join("/tmp", f"bench-{name.replace('.', '')}.log"), "w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.model = None
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/models", timeout=2) as r:
                    self.model = json.load(r)["data"][0]["id"]
                    return
            except Exception:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{name} exited; see /tmp/bench-{name}.log")
                time.sleep(0.5)
        raise RuntimeError(f"{name} did not come up")

    def peak_rss_mb(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


NONCE = [0]


def nonce():
    NONCE[0] += 1
    return f"[{os.getpid()}-{NONCE[0]}-{time.time_ns()}] "


def stream(server, content, max_tokens):
    body = json.dumps({
        "model": server.model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "logit_bias": {"2": -100, "0": -100},
        "stream": True,
        "stream_options": {"include_usage": True},
    }).encode()
    request = urllib.request.Request(server.base + "/chat/completions", data=body,
                                     headers={"content-type": "application/json"})
    start = time.perf_counter()
    first, pieces, usage = None, 0, None
    with urllib.request.urlopen(request, timeout=900) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    pieces += 1
                    if first is None:
                        first = time.perf_counter()
    end = time.perf_counter()
    # A server that reports no usage in streams sends one content delta per token.
    generated = usage["completion_tokens"] if usage else pieces
    prompt_tokens = usage["prompt_tokens"] if usage else 0
    first = first or end
    return {"ttft": first - start, "generated": generated, "prompt_tokens": prompt_tokens,
            "decode_tps": (generated - 1) / (end - first) if generated > 1 and end > first else 0.0}


def single_decode(server, tokens, runs):
    return max(stream(server, nonce() + STORY, tokens)["decode_tps"] for _ in range(runs))


def prefill(server, runs, target_tokens=512):
    """(prompt tokens, best time to first token) for a ~512-token prompt."""
    prompt = (FILLER * 40)[: target_tokens * 4]  # roughly 4 characters per token
    results = [stream(server, nonce() + prompt + "\nSummarise the text above.", 1) for _ in range(runs)]
    best = min(results, key=lambda r: r["ttft"])
    return best["prompt_tokens"], best["ttft"]


def aggregate(server, streams, tokens):
    """Generated tokens per second over all streams; a stream cut short counts what it got."""
    results = [None] * streams

    def worker(i):
        results[i] = stream(server, nonce() + STORY, tokens)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(r["generated"] for r in results) / (time.perf_counter() - start)


def busy_loop(stop):
    while not stop.is_set():
        pass


def memory_bandwidth_gbs(size=256 << 20, repeats=5):
    """Copy bandwidth (bytes read + written per second) of one core, from large memmoves."""
    src = ctypes.create_string_buffer(size)
    dst = ctypes.create_string_buffer(size)
    ctypes.memmove(dst, src, size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        ctypes.memmove(dst, src, size)
        best = min(best, time.perf_counter() - start)
    return 2 * size / best / 1e9


def weight_bytes(model_path):
    sys.path.insert(0, os.path.join(HERE, ".peer", "lib"))
    try:
        import gguf  # optional: exact tensor sizes when the gguf package is importable
        reader = gguf.GGUFReader(model_path)
        return sum(int(t.n_bytes) for t in reader.tensors)
    except Exception:
        return os.path.getsize(model_path)


def measure_both(servers, args):
    """Every measurement alternates between the servers, run by run, so that drift in this
    machine's speed (noisy neighbours, frequency changes) hits both alike; best of the runs."""
    rows = {s.name: {} for s in servers}

    def best(metric, pick, runs=args.runs):
        samples = {s.name: [] for s in servers}
        for _ in range(runs):
            for s in servers:
                samples[s.name].append(metric(s))
        for s in servers:
            rows[s.name].update(pick(samples[s.name]))

    best(lambda s: stream(s, nonce() + STORY, args.tokens)["decode_tps"],
         lambda xs: {"decode": max(xs)})
    best(lambda s: prefill(s, 1), lambda xs: {"prompt_tokens": min(xs, key=lambda x: x[1])[0],
                                               "ttft": min(x[1] for x in xs)})
    for n in (1, 4, 16):
        best(lambda s, n=n: aggregate(s, n, args.tokens), lambda xs, n=n: {f"agg{n}": max(xs)},
             runs=max(1, args.runs - 1))
    if not args.skip_busy:
        stop = multiprocessing.Event()
        hog = multiprocessing.Process(target=busy_loop, args=(stop,))
        hog.start()
        try:
            best(lambda s: stream(s, nonce() + STORY, args.tokens)["decode_tps"],
                 lambda xs: {"busy": max(xs)})
        finally:
            stop.set()
            hog.join()
    for s in servers:
        rows[s.name]["rss"] = s.peak_rss_mb()
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--switchboard", default=os.path.join(ROOT, "target", "release", "switchboard"))
    parser.add_argument("--peer-python", default=os.path.join(HERE, ".peer", "bin", "python"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=4096)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-busy", action="store_true")
    args = parser.parse_args()

    sb_port, peer_port = free_port(), free_port()
    servers = []
    try:
        servers.append(Server("Switchboard", [
            args.switchboard, "serve", "--listen", f"127.0.0.1:{sb_port}", "--model", args.model,
            "--model-id", "bench", "--threads", str(args.threads),
            "--context-window", str(args.ctx)], sb_port, env={**os.environ, "RUST_LOG": "warn"}))
        # llama-cpp-python's server runs one request at a time; without this flag a new request
        # aborts the running one instead of waiting for it.
        servers.append(Server("llama.cpp", [
            args.peer_python, "-m", "llama_cpp.server", "--model", args.model,
            "--model_alias", "bench", "--n_threads", str(args.threads),
            "--n_threads_batch", str(args.threads), "--n_ctx", str(args.ctx),
            "--interrupt_requests", "False", "--host", "127.0.0.1", "--port", str(peer_port)],
            peer_port))
        rows = measure_both(servers, args)
    finally:
        for server in servers:
            server.stop()

    bandwidth = memory_bandwidth_gbs()
    weights = weight_bytes(args.model)
    floor_tps = bandwidth * 1e9 / weights
    s, p = rows["Switchboard"], rows["llama.cpp"]
    # Same GGUF, same template: a peer that reports no usage saw the same prompt length.
    p["prompt_tokens"] = p["prompt_tokens"] or s["prompt_tokens"]
    for row in (s, p):
        row["prefill"] = row["prompt_tokens"] / row["ttft"]
    with open("/tmp/bench-compare.json", "w") as f:
        json.dump(rows, f, indent=1)
    lines = [
        "| measure | Switchboard | llama.cpp | ratio (S/L) | better |",
        "|---|---|---|---|---|",
        f"| single-stream decode (tok/s) | {s['decode']:.1f} | {p['decode']:.1f} | {s['decode'] / p['decode']:.2f} | higher |",
        f"| prefill, {s['prompt_tokens']}/{p['prompt_tokens']}-token prompt (tok/s) | {s['prefill']:.1f} | {p['prefill']:.1f} | {s['prefill'] / p['prefill']:.2f} | higher |",
        f"| time to first token (ms) | {s['ttft'] * 1000:.0f} | {p['ttft'] * 1000:.0f} | {s['ttft'] / p['ttft']:.2f} | lower |",
    ]
    for n in (1, 4, 16):
        lines.append(f"| aggregate, {n} streams (tok/s) | {s[f'agg{n}']:.1f} | {p[f'agg{n}']:.1f} | {s[f'agg{n}'] / p[f'agg{n}']:.2f} | higher |")
    if "busy" in s:
        lines.append(f"| decode with a busy loop (tok/s) | {s['busy']:.1f} | {p['busy']:.1f} | {s['busy'] / p['busy']:.2f} | higher |")
    lines.append(f"| peak RSS (MB) | {s['rss']:.0f} | {p['rss']:.0f} | {s['rss'] / p['rss']:.2f} | lower |")
    lines.append(f"| decode vs physical floor ({floor_tps:.0f} tok/s) | {s['decode'] / floor_tps:.0%} | {p['decode'] / floor_tps:.0%} | | higher |")
    print("\n".join(lines))
    print(f"\nfloor: {weights / 1e6:.1f} MB of weights per token / {bandwidth:.1f} GB/s copy bandwidth "
          f"(one core, memmove) = {floor_tps:.0f} tok/s; threads={args.threads}, ctx={args.ctx}, "
          f"tokens={args.tokens}, best of {args.runs}")


if __name__ == "__main__":
    main()
