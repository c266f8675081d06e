"""Capture cost against a plain forward of the same model and batch, in one process.

    python benchmarks/capture.py                                   # CPU, SmolLM2 (default model)
    python benchmarks/capture.py --model llama3-8b-shape --device cuda --batch 32 --seq-len 128

Writes benchmarks/results/capture_<device>_<model>.json. Timings are medians over interleaved
repeats; each ratio is the median of the per-repeat ratios (``paired_ratios`` adds its 95% bootstrap
interval and the number of repeats). ``ratio_capture_vs_forward``: interp.capture_batch (all layers, last token, states copied to
the CPU) over ``model(**inputs)``. Capture stops the forward after the last captured layer, so it also
skips the final norm and LM head; ``ratio_capture_vs_backbone_forward`` compares against the decoder
stack alone, which isolates the cost of the hooks themselves. The streaming part captures
``--stream-prompts`` prompts to disk in shards and records peak resident memory.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import PeakRSS, device_name, load, model_args, paired_ratio, rss_bytes, time_samples, write  # noqa: E402

import interp  # noqa: E402
from interp.capture import capture_batch  # noqa: E402
from interp.inputs import Batch  # noqa: E402


def random_batch(model, batch: int, seq_len: int, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, model.text_config.vocab_size - 10, (batch, seq_len), generator=g)
    mask = torch.ones_like(ids)
    return Batch({"input_ids": ids, "attention_mask": mask}, [""] * batch).to(model.device)


def main() -> None:
    p = argparse.ArgumentParser()
    model_args(p, repeats=30)
    p.add_argument("--backends", default="nnsight,transformer_lens")
    p.add_argument("--stream-prompts", type=int, default=10000)
    p.add_argument("--stream-batch", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=1000)
    args = p.parse_args()
    torch.manual_seed(0)

    t0 = time.time()
    model = load(args.model, args.device, args.dtype)
    load_s = time.time() - t0
    batch = random_batch(model, args.batch, args.seq_len)
    inner = model.model.get_decoder() if hasattr(model.model, "get_decoder") else None

    def forward():
        with torch.inference_mode():
            model.model(**batch.inputs)

    def backbone():
        with torch.inference_mode():
            inner(**batch.inputs)

    def hidden_states_last():
        with torch.inference_mode():
            hs = model.model(**batch.inputs, output_hidden_states=True).hidden_states
            torch.stack([h[:, -1] for h in hs[1:]], 1).to("cpu", torch.float32)

    def capture():
        capture_batch(model, batch, layers="all", positions="last")

    fns = {
        "forward": forward,
        "capture": capture,
        "backbone_forward": backbone,
        "output_hidden_states": hidden_states_last,
    }
    skipped = {}
    for backend in [b for b in args.backends.split(",") if b]:
        try:
            capture_batch(model, batch, layers=[0], positions="last", backend=backend)
            fns[backend] = lambda b=backend: capture_batch(
                model, batch, layers="all", positions="last", backend=b
            )
        except Exception as e:  # an optional extra missing on this machine
            skipped[backend] = f"{type(e).__name__}: {e}"[:300]
    samples = time_samples(fns, args.repeats, args.device)
    ms = {k: statistics.median(v) for k, v in samples.items()}
    paired = {
        f"{k}_vs_{base}": paired_ratio(samples, k, base)
        for k, base in [
            ("capture", "backbone_forward"),
            ("capture", "forward"),
            ("output_hidden_states", "forward"),
        ]
        + [(b, "forward") for b in ("nnsight", "transformer_lens") if b in fns]
    }

    ref = capture_batch(model, batch, layers="all", positions="last")["last"]
    agree = {}
    for backend in [b for b in ("nnsight", "transformer_lens") if b in fns]:
        other = capture_batch(model, batch, layers="all", positions="last", backend=backend)["last"]
        agree[backend] = float((other - ref).abs().max() / ref.abs().max())

    result = {
        "device": device_name(args.device),
        "model": model.name,
        "dtype": str(model.dtype),
        "batch": args.batch,
        "seq_len": args.seq_len,
        "n_layers": model.n_layers,
        "d_model": model.d_model,
        "repeats": args.repeats,
        "load_s": round(load_s, 1),
        "forward_ms": ms["forward"],
        "capture_ms": ms["capture"],
        "ratio_capture_vs_forward": paired["capture_vs_forward"]["median"],
        "backbone_forward_ms": ms["backbone_forward"],
        "ratio_capture_vs_backbone_forward": paired["capture_vs_backbone_forward"]["median"],
        "output_hidden_states_ms": ms["output_hidden_states"],
        "ratio_output_hidden_states_vs_forward": paired["output_hidden_states_vs_forward"]["median"],
        "paired_ratios": paired,
        "backends_max_rel_diff_vs_native": agree,
        "backends_skipped": skipped,
    }
    for backend in ("nnsight", "transformer_lens"):
        if backend in ms:
            result[f"{backend}_ms"] = ms[backend]
            result[f"ratio_{backend}_vs_forward"] = paired[f"{backend}_vs_forward"]["median"]
    if args.stream_prompts:
        small = stream(model, args, max(args.stream_prompts // 10, args.shard_size))
        large = stream(model, args, args.stream_prompts)
        result["streaming"] = large
        result["streaming_small"] = small
        result["peak_mem_bytes"] = large["peak_rss_bytes"]
        # bounded: 10x the prompts may not grow peak memory by more than one shard's result size
        shard_bytes = args.shard_size * model.n_layers * model.d_model * 4
        result["streaming_memory_bounded"] = (
            large["peak_rss_growth_bytes"] <= small["peak_rss_growth_bytes"] + shard_bytes
        )
    tag = "cpu" if args.device == "cpu" else "gpu"
    write(f"capture_{tag}_{args.model.replace('/', '_')}", result)


def stream(model, args, n: int) -> dict:
    base = interp.data.load("harmbench") + interp.data.load("harmless") + interp.data.load("benign_sensitive")
    prompts = [base.prompts[i % len(base)] for i in range(n)]
    ids = [f"{base.ids[i % len(base)]}#{i}" for i in range(n)]
    out = Path(tempfile.mkdtemp(prefix="tmp_stream_", dir=Path(__file__).parent / "results"))
    if torch.device(args.device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = rss_bytes()
    t = time.time()
    try:
        with PeakRSS() as mem:
            shards = interp.capture(
                model,
                prompts,
                prompt_ids=ids,
                layers="all",
                positions="last",
                batch_size=args.stream_batch,
                out_dir=out,
                shard_size=args.shard_size,
            )
        wall = time.time() - t
        disk = sum(p.stat().st_size for p in shards.shard_paths)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    full = n * model.n_layers * model.d_model * 4
    res = {
        "n_prompts": n,
        "batch_size": args.stream_batch,
        "shard_size": args.shard_size,
        "layers": model.n_layers,
        "wall_s": round(wall, 1),
        "prompts_per_s": round(n / wall, 1),
        "rss_before_bytes": before,
        "peak_rss_bytes": mem.peak,
        "peak_rss_growth_bytes": mem.peak - before,
        "result_bytes_on_disk": disk,
        "result_bytes_if_held_in_memory": full,
    }
    if torch.device(args.device).type == "cuda":
        res["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated()
    return res


if __name__ == "__main__":
    main()
