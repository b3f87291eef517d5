#!/usr/bin/env python3
"""Switchboard vs llama.cpp's own `llama-server` (continuous batching), side by side, in one run.

    bash bench/setup_peer.sh                      # once: builds the pinned llama-server into bench/.peer
    cargo build --release -p switchboard
    python3 bench/compare.py [--threads 2] [--runs 3] [--skip-busy] [--skip-long]

Both servers load the same GGUF with the same thread count and are driven over HTTP by the same
stdlib-only client: greedy, end-of-sequence suppressed with logit_bias so both generate exactly
the requested tokens. The peer runs `-np 64 --kv-unified` (64 slots sharing one KV cache, as
many concurrent streams as the largest measurement). Each prompt starts with a unique nonce so
no server can answer from a cache of an earlier run. Measures:

1. single-stream decode tokens/s (256 generated tokens),
2. prefill tokens/s for prompts of ~512, 1k, 2k, 4k and 8k tokens, and the time to first token
   of the ~512-token one,
3. aggregate generated tokens/s with 1, 4, 16, 32 and 64 concurrent streams,
4. fairness under mixed load: a short request's time to first token alone and while an
   ~8k-token prompt prefills; a running stream's decode rate alone and while it does,
5. single-stream decode while one busy loop runs on another core,
6. peak RSS of each server process (VmHWM),
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
    first, pieces, usage, times = None, 0, None, []
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
                    times.append(time.perf_counter())
                    if first is None:
                        first = time.perf_counter()
    end = time.perf_counter()
    # A server that reports no usage in streams sends one content delta per token.
    generated = usage["completion_tokens"] if usage else pieces
    prompt_tokens = usage["prompt_tokens"] if usage else 0
    first = first or end
    return {"ttft": first - start, "generated": generated, "prompt_tokens": prompt_tokens,
            "start": start, "first": first, "times": times,
            "decode_tps": (generated - 1) / (end - first) if generated > 1 and end > first else 0.0}


def single_decode(server, tokens, runs):
    return max(stream(server, nonce() + STORY, tokens)["decode_tps"] for _ in range(runs))


def long_prompt(units):
    return FILLER * units + "\nSummarise the text above."


def prefill(server, units):
    """(prompt tokens, time to first token) for a prompt of `units` filler sentences."""
    result = stream(server, nonce() + long_prompt(units), 1)
    return result["prompt_tokens"], result["ttft"]


def fairness(server, long_units, short_idle_ttft, idle_decode):
    """While a long prompt prefills: a short request's time to first token (sent 0.3 s after
    the long one) and a running stream's decode rate (tokens it received between the long
    request's start and its first token, per second)."""
    results = {}

    def run(key, content, tokens):
        results[key] = stream(server, content, tokens)

    runner = threading.Thread(target=run, args=("runner", nonce() + STORY, 3000))
    runner.start()
    time.sleep(1.0)  # the stream is decoding
    long = threading.Thread(target=run, args=("long", nonce() + long_prompt(long_units), 1))
    long.start()
    time.sleep(0.3)
    run("short", nonce() + "Say hi.", 8)
    long.join()
    runner.join()
    window = (results["long"]["start"],
              min(results["long"]["first"], results["runner"]["times"][-1]))
    times = results["runner"]["times"]
    during = [i for i, t in enumerate(times) if window[0] <= t <= window[1]]
    rate = len(during) / (window[1] - window[0])
    # The same stream alone over the same token positions: decode slows as the context grows,
    # so the short-context decode rate overstates what the runner would have done unloaded.
    first, last = (during[0], during[-1]) if len(during) > 1 else (0, 0)
    same_positions = 0.0
    if last > first:
        alone = stream(server, nonce() + STORY, last + 2)["times"]
        if len(alone) > last:
            same_positions = (last - first) / (alone[last] - alone[first])
    return {"short_ttft_loaded": results["short"]["ttft"], "short_ttft_idle": short_idle_ttft,
            "decode_loaded": rate, "decode_idle": idle_decode,
            "decode_idle_same_positions": same_positions, "runner_positions": [first, last],
            "long_prompt_tokens": results["long"]["prompt_tokens"]}


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


PREFILL_SIZES = (512, 1024, 2048, 4096, 7900)
STREAM_COUNTS = (1, 4, 16, 32, 64)


def measure_both(servers, args, units_per_token):
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
    best(lambda s: stream(s, nonce() + "Say hi.", 8)["ttft"], lambda xs: {"short_ttft": min(xs)})
    if args.only_fairness:
        units = round(PREFILL_SIZES[-1] * units_per_token)
        best(lambda s: fairness(s, units, rows[s.name]["short_ttft"], rows[s.name]["decode"]),
             lambda xs: {"fair": xs[0]}, runs=1)
        for s in servers:
            rows[s.name]["rss"] = s.peak_rss_mb()
        return rows
    sizes = PREFILL_SIZES if not args.skip_long else PREFILL_SIZES[:1]
    for size in sizes:
        units = max(1, round(size * units_per_token))
        runs = args.runs if size <= 1024 else 1
        best(lambda s, units=units: prefill(s, units),
             lambda xs, size=size: {f"prompt{size}": min(xs, key=lambda x: x[1])[0],
                                    f"ttft{size}": min(x[1] for x in xs)}, runs=runs)
    for n in STREAM_COUNTS:
        best(lambda s, n=n: aggregate(s, n, args.tokens), lambda xs, n=n: {f"agg{n}": max(xs)},
             runs=max(1, args.runs - 1) if n <= 16 else 1)
    if not args.skip_long:
        units = round(PREFILL_SIZES[-1] * units_per_token)
        best(lambda s: fairness(s, units, rows[s.name]["short_ttft"], rows[s.name]["decode"]),
             lambda xs: {"fair": xs[0]}, runs=1)
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
    parser.add_argument("--peer", default=os.path.join(HERE, ".peer", "llama-server"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=8192, help="context window per sequence")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-busy", action="store_true")
    parser.add_argument("--skip-long", action="store_true", help="only the ~512-token prefill; no fairness run")
    parser.add_argument("--only-fairness", action="store_true",
                        help="single-stream decode, short TTFT and the fairness run only")
    args = parser.parse_args()

    sb_port, peer_port = free_port(), free_port()
    servers = []
    try:
        servers.append(Server("Switchboard", [
            args.switchboard, "serve", "--listen", f"127.0.0.1:{sb_port}", "--model", args.model,
            "--model-id", "bench", "--threads", str(args.threads),
            "--context-window", str(args.ctx)], sb_port, env={**os.environ, "RUST_LOG": "warn"}))
        # 64 slots over one unified cache of 32k positions: any slot may hold a whole 8k
        # context, and 64 streams of a few hundred tokens fit together.
        servers.append(Server("llama-server", [
            args.peer, "--model", args.model, "--alias", "bench",
            "--threads", str(args.threads), "--threads-batch", str(args.threads),
            "--ctx-size", str(max(32768, args.ctx)), "--parallel", "64", "--kv-unified",
            "--host", "127.0.0.1", "--port", str(peer_port)], peer_port))
        # Filler sentences per token, from Switchboard's own count (both use the GGUF tokenizer).
        probe = stream(servers[0], nonce() + long_prompt(20), 1)["prompt_tokens"]
        probe_small = stream(servers[0], nonce() + long_prompt(10), 1)["prompt_tokens"]
        units_per_token = 10 / max(1, probe - probe_small)
        rows = measure_both(servers, args, units_per_token)
    finally:
        for server in servers:
            server.stop()

    bandwidth = memory_bandwidth_gbs()
    weights = weight_bytes(args.model)
    floor_tps = bandwidth * 1e9 / weights
    s, p = rows["Switchboard"], rows["llama-server"]
    with open("/tmp/bench-compare.json", "w") as f:
        json.dump(rows, f, indent=1)

    def line(label, a, b, better, fmt="{:.1f}"):
        return f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {a / b:.2f} | {better} |"

    lines = [
        "| measure | Switchboard | llama-server | ratio (S/L) | better |",
        "|---|---|---|---|---|",
        line("single-stream decode (tok/s)", s["decode"], p["decode"], "higher"),
    ]
    for size in PREFILL_SIZES:
        if f"ttft{size}" not in s:
            continue
        tokens = s[f"prompt{size}"]
        # Same GGUF, same template: a peer that reports no usage saw the same prompt length.
        peer_tokens = p[f"prompt{size}"] or tokens
        lines.append(line(f"prefill, {tokens}-token prompt (tok/s)", tokens / s[f"ttft{size}"],
                          peer_tokens / p[f"ttft{size}"], "higher"))
    if "ttft512" in s:
        lines.append(line(f"time to first token, {s['prompt512']}-token prompt (ms)",
                          s["ttft512"] * 1000, p["ttft512"] * 1000, "lower", "{:.0f}"))
    for n in STREAM_COUNTS:
        if f"agg{n}" not in s:
            continue
        lines.append(line(f"aggregate, {n} streams (tok/s)", s[f"agg{n}"], p[f"agg{n}"], "higher"))
    if "fair" in s:
        fs, fp = s["fair"], p["fair"]
        lines.append(line("short request TTFT, idle (ms)", fs["short_ttft_idle"] * 1000,
                          fp["short_ttft_idle"] * 1000, "lower", "{:.0f}"))
        lines.append(line(f"short request TTFT behind a {fs['long_prompt_tokens']}-token prompt (ms)",
                          fs["short_ttft_loaded"] * 1000, fp["short_ttft_loaded"] * 1000, "lower", "{:.0f}"))
        lines.append(line("running stream's decode while it prefills (tok/s)", fs["decode_loaded"],
                          fp["decode_loaded"], "higher"))
        lines.append(f"| ... as a share of its idle rate | {fs['decode_loaded'] / fs['decode_idle']:.0%} | "
                     f"{fp['decode_loaded'] / fp['decode_idle']:.0%} | | higher |")
        lines.append(f"| ... as a share of its idle rate over the same positions | "
                     f"{fs['decode_loaded'] / max(fs['decode_idle_same_positions'], 1e-9):.0%} "
                     f"(tokens {fs['runner_positions'][0]}-{fs['runner_positions'][1]}) | "
                     f"{fp['decode_loaded'] / max(fp['decode_idle_same_positions'], 1e-9):.0%} | | higher |")
    if "busy" in s:
        lines.append(line("decode with a busy loop (tok/s)", s["busy"], p["busy"], "higher"))
    lines.append(line("peak RSS (MB)", s["rss"], p["rss"], "lower", "{:.0f}"))
    lines.append(f"| decode vs physical floor ({floor_tps:.0f} tok/s) | {s['decode'] / floor_tps:.0%} | {p['decode'] / floor_tps:.0%} | | higher |")
    print("\n".join(lines))
    print(f"\nfloor: {weights / 1e6:.1f} MB of weights per token / {bandwidth:.1f} GB/s copy bandwidth "
          f"(one core, memmove) = {floor_tps:.0f} tok/s; threads={args.threads}, ctx={args.ctx}, "
          f"tokens={args.tokens}, best of {args.runs} (1 for prompts over 1k and 32/64 streams)")


if __name__ == "__main__":
    main()
