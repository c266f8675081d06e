"""Where attribution patching's time goes: the clean pass, the corrupt prefix (no autograd), the suffix
forward, its backward, and the estimate's bookkeeping, each timed alone (medians).

    python benchmarks/attribution_breakdown.py --model llama3-8b-shape --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import device_name, load, sync, write  # noqa: E402
from patching import prompts  # noqa: E402

from interp.locate.attribution import attribution_patch  # noqa: E402
from interp.locate.patching import clean_pass, patch_positions  # noqa: E402
from interp.refusal import refusal_logodds, refusal_token_ids  # noqa: E402


def timed(fn, device, repeats):
    out = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="organism")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    model = load(args.model, args.device, args.dtype)
    clean, corrupt = prompts(model, args.pairs, args.model == "llama3-8b-shape")
    specs = patch_positions("last")
    layers = list(range(model.n_layers))
    tok = refusal_token_ids(model.tokenizer)
    batch = model.encode(corrupt)
    ids, mask = batch.input_ids, batch.attention_mask
    start = ids.shape[1] - 1
    state = {}

    def forward():
        with torch.inference_mode():
            model.next_token_logits(batch.inputs)

    def clean_states():
        clean_pass(model, clean, None, specs, layers, "resid", args.pairs, tok)

    def prefix():
        with torch.no_grad():
            state["past"] = model.model(
                input_ids=ids[:, :start], attention_mask=mask[:, :start], use_cache=True, logits_to_keep=1
            ).past_key_values

    def suffix_forward():
        prefix()
        run_ctx = model.hooks(keep_layers=layers)
        run = run_ctx.__enter__()
        with torch.enable_grad():
            logits = model.model(
                input_ids=ids[:, start:],
                attention_mask=mask,
                past_key_values=state["past"],
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
            state["m"] = refusal_logodds(logits, tok)
        run_ctx.__exit__(None, None, None)
        state["kept"] = [run.kept[k] for k in layers]

    def backward():
        with torch.enable_grad():
            torch.autograd.grad(state["m"].sum(), state["kept"])

    ms = {"forward": timed(forward, args.device, args.repeats)}
    ms["clean_pass"] = timed(clean_states, args.device, args.repeats)
    ms["prefix_no_grad"] = timed(prefix, args.device, args.repeats)
    ms["prefix_plus_suffix_forward"] = timed(suffix_forward, args.device, args.repeats)
    bw = []
    for _ in range(args.repeats):
        suffix_forward()
        bw.append(timed(backward, args.device, 1))
    ms["suffix_backward"] = statistics.median(bw)
    ms["attribution_patch"] = timed(
        lambda: attribution_patch(model, clean, corrupt, batch_size=args.pairs), args.device, args.repeats
    )
    result = {
        "benchmark": "attribution_breakdown",
        "model": model.name,
        "device": device_name(args.device),
        "prompt_tokens": int(mask.sum(1).float().mean()),
        "ms": {k: round(v, 1) for k, v in ms.items()},
        "forward_equivalents": {k: round(v / ms["forward"], 2) for k, v in ms.items()},
    }
    dev = "gpu" if torch.device(args.device).type == "cuda" else "cpu"
    write(f"attribution_breakdown_{dev}_{args.model}", result)


if __name__ == "__main__":
    main()
