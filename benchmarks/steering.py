"""Greedy generation with each intervention against unsteered generate, in one process.

    python benchmarks/steering.py                                   # CPU, the organism
    python benchmarks/steering.py --model llama3-8b-shape --device cuda --batch 16 --new-tokens 64
    python benchmarks/steering.py --model launch-bound --threads 1 --batch 1 --repeats 21   # CPU stand-in

Writes benchmarks/results/steering_<device>_<model>.json with ``ratio_steered_vs_plain.<intervention>``:
median time of ``generate`` under the intervention over plain ``generate`` (same prompts, same number
of new tokens: ``min_new_tokens`` = ``max_new_tokens``), timed interleaved; also the same ratio of the
fastest runs (``ratio_of_fastest_runs``, the estimate least touched by interference on a shared host)
and each function's 10th-90th percentile spread. The retrieval-guided
correction needs a VLM; its cost (a caption generation plus one extra prefill) is stated, not timed here.
``ablate_all_layers_folded`` is the same ablation folded into the weights for the block
(``steer(..., fold=True)``), its weight copy included in the time; ``add_*_folded`` the additions
folded into MLP biases the same way (no copy: a bias per layer). ``launch-bound`` is a 32-layer,
64-wide random Llama on one thread: its kernels are so small that the fixed cost of each kernel launch
and hook call dominates, which is what the hook overhead is on a GPU (on the 135M organism the CPU's
matrix work hides it).

The same additions written in nnsight (``generate`` tracing, an edit at every step) and in
TransformerLens 4.3 (``TransformerBridge.generate`` under ``hooks``) are timed in the same rotation
(``--libraries``; ``benchmarks/steering_baselines.py``): ``other_libraries.ratio_vs_plain`` holds
their ratios to the same plain ``generate``, ``<library>_plain`` the library's cost with no edit, and
``rows_identical_to_interp`` the fraction of rows whose tokens equal those of interp's
intervention.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import device_name, load, ratio_report, time_samples, write  # noqa: E402
from steering_baselines import baselines, counterpart  # noqa: E402

from interp.edits import unit_vector  # noqa: E402
from interp.steer import AblateDirection, AddDirection, Conditional, LinearTransport, SetProjection, steer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="organism")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--tag", default="", help="suffix of the result file's name (keeps an earlier run)")
    p.add_argument(
        "--libraries", default="nnsight,transformer_lens", help="other libraries to time ('' for none)"
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load(args.model, args.device, args.dtype)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(
        100, min(model.text_config.vocab_size, 20000), (args.batch, args.prompt_len), generator=g
    )
    inputs = {"input_ids": ids.to(model.device), "attention_mask": torch.ones_like(ids).to(model.device)}
    d = torch.randn(model.d_model, generator=g)
    mid = model.n_layers // 2
    interventions = {
        "add_one_layer": [AddDirection(d, [mid], 4.0)],
        "add_one_layer_folded": [AddDirection(d, [mid], 4.0)],
        "add_all_layers": [AddDirection(d, "all", 1.0)],
        "add_all_layers_folded": [AddDirection(d, "all", 1.0)],
        "ablate_all_layers": [AblateDirection(d, "all")],
        "ablate_all_layers_folded": [AblateDirection(d, "all")],
        "set_projection": [SetProjection(d, 2.0, [mid])],
        "conditional_add": [Conditional(d, mid - 1, 0.0, [AddDirection(d, [mid], 4.0)])],
        # learned transport: per-neuron maps on six layers at the last prompt token (the steering
        # evaluation's setting), and on every layer at every position (the most it can cost)
        "transport_six_layers_last": [_transport(model, range(mid - 3, mid + 3), "last", g)],
        "transport_all_layers_all": [_transport(model, range(model.n_layers), "all", g)],
    }
    gen = dict(
        max_new_tokens=args.new_tokens,
        min_new_tokens=args.new_tokens,
        do_sample=False,
        pad_token_id=model.tokenizer.pad_token_id,
    )

    def plain():
        with torch.inference_mode():
            return model.model.generate(**inputs, **gen)

    def steered(items, fold=False):
        def fn():
            with steer(model, items, fold=fold), torch.inference_mode():
                return model.model.generate(**inputs, **gen)

        return fn

    # the additions above, as vectors for the other libraries: AddDirection adds alpha * unit(d)
    unit = unit_vector(d)
    additions = {"add_one_layer": (4.0 * unit, [mid]), "add_all_layers": (unit, range(model.n_layers))}
    libraries = [x for x in args.libraries.split(",") if x]
    others, skipped = baselines(model, inputs, args.new_tokens, additions, libraries)

    # "plain_again" is the same unsteered generate timed as a second function: its ratio to "plain" is
    # the noise floor of this machine's timings
    fns = {
        "plain": plain,
        "plain_again": plain,
        **{k: steered(v, k.endswith("_folded")) for k, v in interventions.items()},
        **others,
    }
    samples = time_samples(fns, repeats=args.repeats, device=args.device, warmup=1)
    report = ratio_report(samples, [*interventions, *others])
    reference = {k: fns[k]() for k in {counterpart(k) for k in others}}  # interp's tokens, once each
    theirs = {
        "ratio_vs_plain": {k: report["ratio_steered_vs_plain"].pop(k) for k in others},
        "ratio_of_fastest_runs": {k: report["ratio_of_fastest_runs"].pop(k) for k in others},
        "rows_identical_to_interp": {
            k: _same_rows(fn(), reference[counterpart(k)]) for k, fn in others.items()
        },
        "skipped": skipped,
        "notes": {name: fn.note for name, fn in others.items() if getattr(fn, "note", None)},
    }
    ms, low = report["ms"], {k: min(v) for k, v in samples.items()}
    result = {
        "benchmark": "steering",
        "model": model.name,
        "device": device_name(args.device),
        "dtype": str(model.dtype),
        "batch": args.batch,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        **report,
        "noise_floor_ratio_plain_again_vs_plain": round(ms["plain_again"] / ms["plain"], 3),
        "noise_floor_of_fastest_runs": round(low["plain_again"] / low["plain"], 3),
        "repeats": args.repeats,
        "retrieval_guided_cost": "one caption generation + one extra prefill per batch (not timed here)",
        "target": "<= 1.02 for constant interventions",
        "other_libraries": theirs,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    dev = "gpu" if torch.device(args.device).type == "cuda" else "cpu"
    write(f"steering_{dev}_{args.model}" + (f"_{args.tag}" if args.tag else ""), result)


def _transport(model, layers, positions, g) -> LinearTransport:
    """Random per-neuron maps near the identity (scale 1 +- 0.05, small biases): the cost does not
    depend on the values."""
    d = model.d_model
    return LinearTransport(
        {i: 1 + 0.05 * torch.randn(d, generator=g) for i in layers},
        {i: 0.05 * torch.randn(d, generator=g) for i in layers},
        positions=positions,
    )


def _same_rows(a: torch.Tensor, b: torch.Tensor) -> float:
    """The fraction of rows whose token ids are all equal (greedy decoding flips at a near-tie when
    two libraries round differently, and the row goes its own way from there)."""
    return float((a.cpu() == b.cpu()).all(1).float().mean())


if __name__ == "__main__":
    main()
