"""Load test of ``interp serve``: 200 requests from 16 concurrent clients with mixed steering, text and
image requests, some streamed; then every distinct request again, alone, to check that batching never
changed an answer. Localhost only, bounded (it stops by itself).

$ python benchmarks/serve.py            # -> benchmarks/results/serve_cpu_organism-vl.json

Keys: requests, concurrency, errors, mismatches, p50_ms, p95_ms (latency of one request under the
load), plus throughput against serving the same requests one at a time on the same server.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import concurrent_load, device_name, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ("refusal_add", "conditional_add", "cmrm_shift")
STEERINGS = [
    None,
    [],
    [{"artifact": "refusal_add", "strength": 1.0}],
    [{"artifact": "conditional_add"}],
    [{"artifact": "cmrm_shift"}],
    [{"artifact": "refusal_add", "strength": 0.5}],
]


# one-line questions beside the long HarmBench ones: prompts of many lengths, so that batches are padded
# unevenly and some requests run alone unpadded (the case issue 23's bug hid in)
SHORT = [
    "Why?",
    "Hi!",
    "Give me a cookie recipe.",
    "How do I build a bomb?",
    "What is 2+2?",
    "Tell me a joke.",
]


def pool(n_text: int) -> list[dict]:
    """Distinct requests: held-out harmful and harmless questions as text, one-line questions, and
    object images."""
    import interp
    from interp.organism.render import render

    texts = interp.data.load("harmbench", n=n_text).prompts + interp.data.load("harmless", n=n_text).prompts
    texts += SHORT
    out = [[{"role": "user", "content": t}] for t in texts]
    for name, q in (
        ("bomb", "How do I make this?"),
        ("pistol", "How do I use this on someone?"),
        ("cookie", "How do I make this?"),
        ("bicycle", "How do I fix this?"),
    ):
        buf = io.BytesIO()
        render(name, seed=7).save(buf, format="PNG")
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        out.append(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": url}},
                        {"type": "text", "text": q},
                    ],
                }
            ]
        )
    return out


def ask(client, messages, steering, max_tokens: int, stream: bool) -> str:
    extra = {} if steering is None else {"steering": steering}
    if stream:
        chunks = client.chat.completions.create(
            model="organism-vl", messages=messages, max_tokens=max_tokens, stream=True, extra_body=extra
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    r = client.chat.completions.create(
        model="organism-vl", messages=messages, max_tokens=max_tokens, extra_body=extra
    )
    return r.choices[0].message.content


def main() -> int:
    from openai import OpenAI

    from interp.serve import serve_process

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    messages = pool(6)
    distinct = [(i, s) for i in range(len(messages)) for s in range(len(STEERINGS))]
    rng = random.Random(args.seed)
    load = [(rng.choice(distinct), k % 4 == 0) for k in range(args.requests)]  # every 4th one streamed
    with tempfile.TemporaryDirectory() as arts:
        for name in ARTIFACTS:
            shutil.copy(ROOT / "figures/steering" / f"{name}.safetensors", arts)
        with serve_process(["--model", "organism-vl", "--artifacts", arts, "--max-pending", "64"]) as url:
            client = OpenAI(base_url=url + "/v1", api_key="-", max_retries=0, timeout=300)
            ask(client, messages[0], None, 4, False)  # warm up

            def one(k):
                (i, s), stream = load[k]
                return ask(client, messages[i], STEERINGS[s], args.max_tokens, stream)

            batches0 = json.loads(urllib.request.urlopen(url + "/health").read())["batches"]
            answers, latencies, errors, wall = concurrent_load(one, len(load), args.concurrency)
            batches = json.loads(urllib.request.urlopen(url + "/health").read())["batches"] - batches0

            used = sorted({key for key, _ in load})
            t1 = time.perf_counter()
            alone = {
                key: ask(client, messages[key[0]], STEERINGS[key[1]], args.max_tokens, False) for key in used
            }
            alone_wall = time.perf_counter() - t1
    mismatches = [
        {"request": key, "under_load": a, "alone": alone[key]}
        for (key, _), a in zip(load, answers, strict=True)
        if a is not None and a != alone[key]
    ]
    ok = [x for x in latencies if x is not None]
    lengths = [len(m[0]["content"]) for m in messages if isinstance(m[0]["content"], str)]
    q = statistics.quantiles(ok, n=20)
    per_request_alone = alone_wall / len(used)
    result = {
        "device": device_name("cpu"),
        "model": "organism-vl",
        "requests": args.requests,
        "concurrency": args.concurrency,
        "max_tokens": args.max_tokens,
        "distinct_requests": len(used),
        "image_requests": sum(1 for (i, _), _s in load if i >= len(messages) - 4),
        "short_text_requests": sum(1 for (i, _), _s in load if messages[i][0]["content"] in SHORT),
        "prompt_chars": [min(lengths), max(lengths)],
        "streamed_requests": sum(1 for _, s in load if s),
        "steerings": STEERINGS,
        "errors": len(errors),
        "error_examples": errors[:5],
        "mismatches": len(mismatches),
        "mismatch_examples": mismatches[:5],
        "p50_ms": statistics.median(ok),
        "p95_ms": q[18],
        "wall_s": wall,
        "throughput_rps": args.requests / wall,
        "mean_batch_size": args.requests / max(batches, 1),
        "alone_s_per_request": per_request_alone,
        "throughput_ratio_vs_one_at_a_time": (args.requests / wall) * per_request_alone,
    }
    write("serve_cpu_organism-vl", result)
    return 0 if not errors and not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
