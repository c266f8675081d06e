"""A full layer sweep of last-token residual patching: batched vs one forward per layer, and attribution.

    python benchmarks/patching.py                                  # CPU, the organism (SmolLM2 + LoRA)
    python benchmarks/patching.py --model llama3-8b-shape --device cuda --pairs 16 --max-rows 128

Writes benchmarks/results/patching_<device>_<model>.json. All timings in one process, interleaved,
medians over ``--repeats``:
- ``ratio_batched_vs_loop``: ``patch_residual(mode="batched")`` (suffix tokens against the corrupt
  KV cache, ``batched_strategy``) over ``mode="loop"`` (one patched forward per layer per batch, the
  usual implementation), both including their clean and corrupt runs; ``ratio_replay_vs_loop`` the
  packed-replay fallback; ``max_abs_diff_*`` check that all give the same numbers.
- ``attribution_forward_equivalents``: ``attribution_patch`` over one plain forward of the same
  corrupt prompts (the clean pass + the corrupt forward and a backward over the suffix tokens), and its
  correlation with the exact map.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import device_name, load, time_interleaved, write  # noqa: E402

from interp.locate.attribution import attribution_patch  # noqa: E402
from interp.locate.patching import patch_residual  # noqa: E402


def prompts(model, n: int, random_tokens: bool, prompt_tokens: int = 64):
    """Held-out organism prompts, or random token strings for a random-weight model."""
    if not random_tokens:
        from interp.organism import held_out

        split = held_out()
        return split["harmful"][:n], split["harmless"][:n]
    g = torch.Generator().manual_seed(0)
    vocab = min(model.text_config.vocab_size, len(model.tokenizer), 20000)  # ids the tokenizer can decode

    def text(k):
        ids = torch.randint(min(100, vocab // 2), vocab, (prompt_tokens,), generator=g).tolist()
        return model.tokenizer.decode(ids)

    return [text(i) for i in range(n)], [text(n + i) for i in range(n)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="organism", help="'organism', 'default', 'llama3-8b-shape', ...")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--max-rows", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--prompt-tokens", type=int, default=64, help="random-token prompts (random-weight models)"
    )
    args = p.parse_args()
    torch.manual_seed(0)
    t0 = time.time()
    model = load(args.model, args.device, args.dtype)
    load_s = time.time() - t0
    clean, corrupt = prompts(model, args.pairs, args.model == "llama3-8b-shape", args.prompt_tokens)
    results = {}

    def batched():
        results["batched"] = patch_residual(
            model, clean, corrupt, max_rows=args.max_rows, batch_size=args.batch_size
        )

    def replay():
        results["replay"] = patch_residual(
            model, clean, corrupt, mode="replay", max_rows=args.max_rows, batch_size=args.batch_size
        )

    def loop():
        results["loop"] = patch_residual(model, clean, corrupt, mode="loop", batch_size=args.batch_size)

    def attribution():
        results["attribution"] = attribution_patch(model, clean, corrupt, batch_size=args.batch_size)

    batches = [
        model.encode(corrupt[i : i + args.batch_size]) for i in range(0, len(corrupt), args.batch_size)
    ]

    def forward():
        with torch.inference_mode():
            for b in batches:
                model.next_token_logits(b.inputs)

    ms = time_interleaved(
        {"forward": forward, "batched": batched, "replay": replay, "loop": loop, "attribution": attribution},
        repeats=args.repeats,
        device=args.device,
        warmup=1,
    )
    exact, loop_map, attr = results["batched"], results["loop"], results["attribution"]
    corr = torch.corrcoef(torch.stack([exact.effect.flatten(), attr.effect.flatten()]))[0, 1].item()
    result = {
        "benchmark": "patching",
        "model": model.name,
        "device": device_name(args.device),
        "dtype": str(model.dtype),
        "n_layers": model.n_layers,
        "pairs": args.pairs,
        "max_rows": args.max_rows,
        "batch_size": args.batch_size,
        "prompt_tokens": int(batches[0].attention_mask.sum(1).float().mean()),
        "load_seconds": round(load_s, 1),
        "ms": {k: round(v, 1) for k, v in ms.items()},
        "ratio_batched_vs_loop": round(ms["batched"] / ms["loop"], 3),
        "batched_strategy": exact.metadata["strategy"],
        "ratio_replay_vs_loop": round(ms["replay"] / ms["loop"], 3),
        "attribution_backward": attr.metadata["backward"],
        "loop_forward_equivalents": round(ms["loop"] / ms["forward"], 2),
        "batched_forward_equivalents": round(ms["batched"] / ms["forward"], 2),
        "attribution_forward_equivalents": round(ms["attribution"] / ms["forward"], 2),
        "attribution_vs_exact_correlation": round(corr, 4),
        "max_abs_diff_batched_vs_loop": float((exact.raw - loop_map.raw).abs().max()),
        "max_abs_diff_replay_vs_loop": float((results["replay"].raw - loop_map.raw).abs().max()),
        "clean_minus_corrupt_metric": exact.clean_metric - exact.corrupt_metric,
        "targets": {"ratio_batched_vs_loop": "<= 0.5", "attribution_forward_equivalents": "<= 3"},
        "torch": torch.__version__,
    }
    dev = "gpu" if torch.device(args.device).type == "cuda" else "cpu"
    write(f"patching_{dev}_{args.model}", result)


if __name__ == "__main__":
    main()
