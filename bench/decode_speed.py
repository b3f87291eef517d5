#!/usr/bin/env python3
"""Single-stream and concurrent decode speed of a running OpenAI-compatible server.

Usage: bench/decode_speed.py [--base-url http://127.0.0.1:8080/v1] [--model ID]
                             [--tokens 256] [--runs 3] [--concurrency 1,4]

Streams greedy chat completions with a prompt that makes the model talk for long and measures,
per run, time to first token and decode tokens/s (tokens after the first, over the time after the
first). Uses only the Python standard library so it runs anywhere. This measures one system; a
comparison with a peer must run both in the same invocation of a script (see docs/benchmarks.md).
"""

import argparse
import json
import threading
import time
import urllib.request

PROMPT = "Write a very long, detailed story about a lighthouse keeper who finds a map. Use many chapters."


def stream_once(base_url, model, tokens):
    body = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }).encode()
    request = urllib.request.Request(
        base_url + "/chat/completions", data=body, headers={"content-type": "application/json"}
    )
    start = time.perf_counter()
    first = None
    usage = None
    with urllib.request.urlopen(request, timeout=600) as response:
        for raw in response:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices", []):
                if choice["delta"].get("content") and first is None:
                    first = time.perf_counter()
    end = time.perf_counter()
    generated = usage["completion_tokens"] if usage else 0
    return {
        "ttft": (first or end) - start,
        "decode_tps": (generated - 1) / (end - first) if first and generated > 1 else 0.0,
        "generated": generated,
        "elapsed": end - start,
    }


def concurrent(base_url, model, tokens, streams):
    results = [None] * streams

    def worker(i):
        results[i] = stream_once(base_url, model, tokens)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return sum(r["generated"] for r in results) / wall


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", default="1,4")
    args = parser.parse_args()

    stream_once(args.base_url, args.model, 8)  # warm up
    runs = [stream_once(args.base_url, args.model, args.tokens) for _ in range(args.runs)]
    best = max(runs, key=lambda r: r["decode_tps"])
    print(f"single stream: decode {best['decode_tps']:.1f} tok/s (best of {args.runs}), "
          f"ttft {min(r['ttft'] for r in runs) * 1000:.0f} ms, {best['generated']} tokens")
    for streams in [int(c) for c in args.concurrency.split(",") if c]:
        print(f"{streams:>2} concurrent streams: {concurrent(args.base_url, args.model, args.tokens, streams):.1f} generated tok/s aggregate")


if __name__ == "__main__":
    main()
