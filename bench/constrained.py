#!/usr/bin/env python3
"""What constrained decoding costs: decode tokens/s with and without a JSON-schema constraint,
side by side in one run against one running Switchboard server.

Usage: bench/constrained.py [--base-url http://127.0.0.1:8080/v1] [--model ID]
                            [--tokens 256] [--runs 5]

Each run streams two greedy requests of exactly `--tokens` tokens, alternating which goes first:
free text (end-of-turn suppressed with logit_bias so it runs to the limit) and a json_schema
request whose schema needs more than `--tokens` tokens to satisfy (an array of at least 40
records), so both stop at the limit. Decode tokens/s counts the tokens after the first over the
time after the first, so prompt processing and grammar compilation are left out; the grammar's
per-token mask is what is measured. Reports the best and median of each and their ratio.
Standard library only.
"""

import argparse
import json
import statistics
import time
import urllib.request

PROMPT = "List many people with their name, age and city."
SCHEMA = {
    "type": "object",
    "properties": {
        "people": {
            "type": "array",
            "minItems": 40,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 24},
                    "age": {"type": "integer"},
                    "city": {"type": "string", "maxLength": 24},
                },
                "required": ["name", "age", "city"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["people"],
    "additionalProperties": False,
}


def stream_once(base_url, model, tokens, constrained):
    body = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": PROMPT},
        ],
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if constrained:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "people", "schema": SCHEMA, "strict": True},
        }
    else:
        # <|im_end|> and <|endoftext|> of SmolLM2: free text runs to the limit too.
        body["logit_bias"] = {"2": -100, "0": -100}
    request = urllib.request.Request(
        base_url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
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
    return (generated - 1) / (end - first) if first and generated > 1 else 0.0, generated


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    stream_once(args.base_url, args.model, 16, False)  # warm-up
    free, constrained = [], []
    for run in range(args.runs):
        order = [False, True] if run % 2 == 0 else [True, False]
        for is_constrained in order:
            tps, generated = stream_once(args.base_url, args.model, args.tokens, is_constrained)
            if generated != args.tokens:
                print(f"warning: {'constrained' if is_constrained else 'free'} run made {generated} tokens")
            (constrained if is_constrained else free).append(tps)
    print(f"{'':<22}{'best tok/s':>12}{'median tok/s':>14}")
    print(f"{'free text':<22}{max(free):>12.1f}{statistics.median(free):>14.1f}")
    print(f"{'json_schema':<22}{max(constrained):>12.1f}{statistics.median(constrained):>14.1f}")
    print(
        f"constrained / free: best {max(constrained) / max(free):.3f}, "
        f"median {statistics.median(constrained) / statistics.median(free):.3f}"
    )


if __name__ == "__main__":
    main()
