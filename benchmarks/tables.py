"""The benchmark tables of the docs, generated from benchmarks/results/*.json (no run, seconds).

    python benchmarks/tables.py       # writes docs/results/benchmarks.md

Every number on that page is read from a committed result file, named beside its row; the capture
table leads with the like-for-like ratio (capture against the decoder stack it runs, since capture
stops after the last captured layer and skips the final norm and LM head), and shows the early stop
against a full forward as its own column. A test checks that the page is what this script writes.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "results" / "benchmarks.md"
GB = 1e9


def _load(pattern: str) -> list[tuple[str, dict]]:
    return [(p.name, json.loads(p.read_text())) for p in sorted(RESULTS.glob(pattern))]


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}×"


def _ci(d: dict, key: str) -> str:
    """`` [lo, hi], n repeats`` from a result's paired ratios (older files have none: empty)."""
    r = d.get("paired_ratios", {}).get(key)
    return f" [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}], n={r['n']}" if r else ""


def capture_rows() -> list[str]:
    rows = [
        "| result file | device, model, dtype, batch | **capture / decoder stack** (like for like) | capture / full forward (early stop) | nnsight / forward | TransformerLens / forward | `output_hidden_states` / forward | streaming 10,000 prompts: results on disk, RSS growth (1,000 prompts) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, d in _load("capture_[cg]*.json"):
        s, small = d["streaming"], d["streaming_small"]
        rows.append(
            f"| `{name}` | {d['device']}, {d['model']}, {d['dtype'].replace('torch.', '')}, "
            f"{d['batch']}×{d['seq_len']} tokens | **{_x(d['ratio_capture_vs_backbone_forward'])}**{_ci(d, 'capture_vs_backbone_forward')} | "
            f"{_x(d['ratio_capture_vs_forward'])} | {_x(d.get('ratio_nnsight_vs_forward'))} | "
            f"{_x(d.get('ratio_transformer_lens_vs_forward'))} | {_x(d['ratio_output_hidden_states_vs_forward'])} | "
            f"{s['result_bytes_on_disk'] / GB:.2f} GB, {s['peak_rss_growth_bytes'] / GB:.2f} GB "
            f"({small['peak_rss_growth_bytes'] / GB:.2f} GB) |"
        )
    return rows


def patching_rows() -> list[str]:
    rows = [
        "| result file | device, model | pairs | exact sweep / one-forward-per-layer loop (target ≤ 0.5) | replay fallback / loop | attribution, forward-equivalents (target ≤ 3) | max difference sweep vs loop |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, d in _load("patching_*.json"):
        rows.append(
            f"| `{name}` | {d['device']}, {d['model'].split(' (')[0]} | {d['pairs']} | "
            f"**{d['ratio_batched_vs_loop']:.3f}×** ({d['batched_strategy']}) | {d['ratio_replay_vs_loop']:.3f}× | "
            f"**{d['attribution_forward_equivalents']:.2f}** | {d['max_abs_diff_batched_vs_loop']:.3g} |"
        )
    return rows


def steering_rows() -> list[str]:
    rows = [
        "| result file | device, model | noise floor (plain again / plain) | steered / plain, per intervention (target ≤ 1.02 for constant ones) |",
        "|---|---|---|---|",
    ]
    for name, d in _load("steering_*.json"):
        if "ratio_steered_vs_plain" not in d:
            continue
        ratios = ", ".join(f"{k} {v:.3f}×" for k, v in d["ratio_steered_vs_plain"].items())
        floor = d.get("noise_floor_ratio_plain_again_vs_plain")
        rows.append(f"| `{name}` | {d['device']}, {d['model'].split(' (')[0]} | {_x(floor)} | {ratios} |")
    return rows


def library_rows() -> list[str]:
    rows = [
        "| result file | library, run | time / interp's plain `generate` | rows identical to interp's |",
        "|---|---|---|---|",
    ]
    for name, d in _load("steering_*.json"):
        other = d.get("other_libraries")
        if not other:
            continue
        for k, v in other["ratio_vs_plain"].items():
            same = other["rows_identical_to_interp"].get(k)
            rows.append(f"| `{name}` | {k} | {v:.3f}× | {'-' if same is None else f'{same:.2f}'} |")
    return rows


def serve_rows() -> list[str]:
    rows = [
        "| result file | model | requests × concurrency | errors | mismatches vs served alone | throughput vs one at a time | p50 / p95 latency |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, d in _load("serve_*.json"):
        if "requests" not in d or "concurrency" not in d:
            continue
        ratio = d.get("throughput_ratio_vs_one_at_a_time")
        rows.append(
            f"| `{name}` | {d['model']} | {d['requests']} × {d['concurrency']} | {d['errors']} | "
            f"{d.get('mismatches', '-')} | {_x(ratio)} | {d['p50_ms'] / 1000:.1f} s / {d['p95_ms'] / 1000:.1f} s |"
        )
    return rows


def breakdown_rows() -> list[str]:
    rows = [
        "| result file | device, model, batch | no-op hooks | slicing hooks | hooks, no early stop | hooks + early stop | capture | (each / full forward) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, d in _load("capture_breakdown_*.json"):
        r = d["ratio_vs_forward"]
        cells = " | ".join(
            _x(r.get(k)) for k in ("noop_hooks", "slice_hooks", "hooks_no_stop", "hooks_stop", "capture")
        )
        rows.append(f"| `{name}` | {d['device']}, {d['model']}, {d['batch']}×{d['seq_len']} | {cells} | |")
    return rows


def attribution_rows() -> list[str]:
    rows = ["| result file | device, model, prompt tokens | parts, in forward-equivalents |", "|---|---|---|"]
    for name, d in _load("attribution_breakdown_*.json"):
        parts = ", ".join(f"{k} {v:.2f}" for k, v in d["forward_equivalents"].items())
        rows.append(f"| `{name}` | {d['device']}, {d['model']}, {d['prompt_tokens']} | {parts} |")
    return rows


def uniform_rows() -> list[str]:
    rows = [
        "| result file | model, batch | noise floor | steered / plain (fastest runs) | answers equal to the hooked ablation | computing the folded weights |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in _load("serve_uniform_*.json"):
        fast = d.get("ratio_of_fastest_runs", {})
        ratios = ", ".join(
            f"{k} {v:.3f}×" + (f" ({fast[k]:.3f}×)" if k in fast else "")
            for k, v in d["ratio_steered_vs_plain"].items()
        )
        equal = all(d.get("answers_equal_to_ablate_hooks", {}).values())
        rows.append(
            f"| `{name}` | {d['model'].split(' (')[0]}, {d['batch']} requests × {d['new_tokens']} tokens, "
            f"{d['repeats']} repeats | {_x(d['noise_floor_ratio_plain_again_vs_plain'])} | {ratios} | "
            f"{'yes' if equal else 'no'} | {d['fold_compute_ms']} ms |"
        )
    return rows


def scale_rows() -> list[str]:
    rows = [
        "| result file | device, model, prompts | prompts/s: in-process, 1 Ray worker, 2 | **in-process / 1 worker** (goal ≤ 1.10) | 2 workers / 1 | start-up s: in-process (model load), 1 worker, 2 | max difference vs in-process |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, d in _load("scale_*.json"):
        r, runs = d["prompts_per_s"], d["runs"]
        diff = max(v.get("max_abs_diff_vs_inprocess", 0.0) for v in runs.values())
        rows.append(
            f"| `{name}` | {d['device']}, {d['model']}, {d['prompts']} | "
            + ", ".join(f"{r[k]:.1f}" for k in ("inprocess", "ray1", "ray2") if k in r)
            + f" | **{_x(d['ratio_ray1_vs_inprocess'])}** | {_x(d['scaling_2_vs_1'])} | "
            + ", ".join(f"{runs[k]['startup_s']:.1f}" for k in ("inprocess", "ray1", "ray2") if k in runs)
            + f" | {diff:.3g} |"
        )
        g = d.get("generation")
        if g:  # steered generation on a pool, its start-up outside the timing
            gr = g["prompts_per_s"]
            rows.append(
                f"| `{name}`, steered generation | {d['device']}, {d['model']}, {g['prompts']} | "
                + ", ".join(f"{gr[k]:.1f}" for k in ("inprocess", "ray1", "ray2") if k in gr)
                + f" | **{_x(g['ratio_ray1_vs_inprocess'])}** | {_x(g['scaling_2_vs_1'])} | "
                + ", ".join(f"{g['runs'][k]['startup_s']:.1f}" for k in ("ray1", "ray2") if k in g["runs"])
                + f" (pool) | answers equal: {'yes' if g['same_answers'] else 'no'} |"
            )
    return rows


def vllm_rows() -> list[str]:
    rows = [
        "| result file | device, model, vLLM | kind | greedy answers identical to interp's HF hooks | first-token logprob max difference | **steered / plain in vLLM** (goal ≤ 1.05) |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in _load("vllm_*.json"):
        for kind, a in d["agreement_with_hf"].items():
            r = d["ratio_steered_vs_plain"][kind]
            rows.append(
                f"| `{name}` | {d['device']}, {d['model']}, {d['vllm']} | {kind} | {a['identical']:.3f} of {a['n']} | "
                f"{a['first_token_logprob_max_abs_diff']:.1e} | **{_x(r)}**{_ci(d, kind)} |"
            )
    return rows


def _verdict(paired: dict, goal: float) -> str:
    """A paired ratio against an upper goal: met / missed when its 95% interval decides it."""
    lo, hi = paired["ci95"]
    if hi <= goal:
        return "met"
    if lo > goal:
        return "missed"
    side = "meets" if paired["median"] <= goal else "misses"
    return f"the median {side} it; its 95% interval [{lo:.3f}, {hi:.3f}], n={paired['n']}, does not decide"


def _worst(d: dict, keys) -> tuple[str, float]:
    r = {k: v for k, v in d["ratio_steered_vs_plain"].items() if k in keys}
    k = max(r, key=r.get)
    return k, r[k]


def reading() -> list[str]:
    """What the tables say against each target, in sentences built from the same files."""
    out = []
    for name, d in _load("capture_[cg]*.json"):
        r = d["ratio_capture_vs_backbone_forward"]
        paired = d.get("paired_ratios", {}).get("capture_vs_backbone_forward")
        interval = ""
        if paired:
            lo, hi = paired["ci95"]
            interval = (
                f" (median of {paired['n']} paired repeats, 95% interval [{lo:.3f}, {hi:.3f}]"
                + ("" if hi <= 1.02 else ": the interval does not exclude more than 1.02")
                + ")"
            )
        out.append(
            f"- Capture, like for like (`{name}`): {r:.3f}× the decoder stack{interval}, goal ≤ 1.02: "
            f"{'met' if r <= 1.02 else 'missed'}; streaming memory bounded by one shard: "
            f"{'yes' if d['streaming_memory_bounded'] else 'no'}."
        )
    for name, d in _load("capture_breakdown_*.json"):
        r = d["ratio_vs_forward"]
        out.append(
            f"- Where capture's time goes (`{name}`, each against a full forward): no-op hooks "
            f"{r['noop_hooks']:.3f}×, hooks keeping a view of each layer's last token {r['slice_hooks']:.3f}×, "
            f"interp's capture hooks without the early stop {r['hooks_no_stop']:.3f}×, with it "
            f"{r['hooks_stop']:.3f}×."
        )
    for name, d in _load("patching_*.json"):
        out.append(
            f"- Patching (`{name}`, {d['pairs']} pairs): exact sweep {d['ratio_batched_vs_loop']:.3f}× the loop "
            f"(goal ≤ 0.5: {'met' if d['ratio_batched_vs_loop'] <= 0.5 else 'missed'}), attribution "
            f"{d['attribution_forward_equivalents']:.2f} forward-equivalents (goal ≤ 3: "
            f"{'met' if d['attribution_forward_equivalents'] <= 3 else 'missed'})"
            + (
                f", attribution vs exact correlation {d['attribution_vs_exact_correlation']:.2f}"
                if "random" not in d["model"] and d.get("attribution_vs_exact_correlation") is not None
                else " (random weights: the attribution-vs-exact correlation means nothing)"
            )
            + "."
        )
    constant = ("add_one_layer", "add_all_layers", "ablate_all_layers", "set_projection", "conditional_add")
    for name, d in _load("steering_*.json"):
        if "ratio_steered_vs_plain" not in d or "noise_floor_ratio_plain_again_vs_plain" not in d:
            continue
        k, v = _worst(d, constant)
        floor = d["noise_floor_ratio_plain_again_vs_plain"]
        spread = d.get("spread_ms_p10_p90", {}).get("plain")
        noisy = abs(floor - 1) > 0.02 or (spread and spread[1] / spread[0] > 1.2)
        verdict = "met" if v <= 1.02 else "missed"
        if noisy and abs(v - floor) < 0.05:
            verdict = "not resolved on this host"
        line = f"- Steering (`{name}`): the costliest hook intervention is {k}, {v:.3f}× plain (goal ≤ 1.02: {verdict})"
        folded = {kk: vv for kk, vv in d["ratio_steered_vs_plain"].items() if kk.endswith("_folded")}
        if folded:
            line += "; folded into the weights: " + ", ".join(f"{kk} {vv:.3f}×" for kk, vv in folded.items())
        if noisy:
            line += (
                f"; a noisy host (noise floor {floor:.3f}"
                + (
                    f", plain {spread[0]:.0f} to {spread[1]:.0f} ms between the 10th and 90th percentile"
                    if spread
                    else ""
                )
                + "), so differences of a few percent are not resolved"
            )
        out.append(line + ".")
    for name, d in _load("scale_*.json"):
        r = d["ratio_ray1_vs_inprocess"]
        diff = max(v.get("max_abs_diff_vs_inprocess", 0.0) for v in d["runs"].values())
        out.append(
            f"- Capture on Ray (`{name}`): in-process over one worker's prompts/s {r:.3f} (goal ≤ 1.10: "
            f"{'met' if r <= 1.10 else 'missed'}; start-up excluded, {d['runs']['ray1']['startup_s']:.1f} s for "
            f"one worker); two workers {d['scaling_2_vs_1']:.2f}× one on {d['cpus']} CPU cores; shards equal to "
            f"in-process capture (max difference {diff:.3g})."
        )
        g = d.get("generation")
        if g:
            out.append(
                f"- Steered generation on a Ray pool (`{name}`, {g['prompts']} prompts, {g['max_new_tokens']} new "
                f"tokens): in-process over one worker's prompts/s {g['ratio_ray1_vs_inprocess']:.3f}, two workers "
                f"{g['scaling_2_vs_1']:.2f}× one; every answer equal to in-process: "
                f"{'yes' if g['same_answers'] else 'no'}."
            )
    for name, d in _load("vllm_*.json"):
        worst = max(d["ratio_steered_vs_plain"], key=d["ratio_steered_vs_plain"].get)
        agree = min(a["identical"] for a in d["agreement_with_hf"].values())
        tp = d["throughput_ratio_vllm_vs_hf_generate"]
        line = (
            f"- Steering inside vLLM (`{name}`, {d['prompts']} held-out prompts, {d['new_tokens']} tokens): the "
            f"costliest kind is {worst}, {d['ratio_steered_vs_plain'][worst]:.3f}× unsteered vLLM (goal ≤ 1.05: "
            f"{_verdict(d['paired_ratios'][worst], 1.05)}); greedy answers identical to "
            f"interp's HF hooks: at least {agree:.3f} per kind (goal ≥ 0.95: {'met' if agree >= 0.95 else 'missed'}); "
            f"vLLM {tp['median']:.2f}× the speed of interp's batched HF generate on the same prompts; offline "
            f"load of {d['load']['requests']}: {d['load']['errors']} errors, {d['load']['mismatches']} mismatches"
        )
        h = d.get("http")
        if h:
            line += (
                f"; HTTP, {h['vllm_greedy']['requests']} requests: vLLM server {h['vllm_greedy']['errors']} errors, "
                f"{h['vllm_greedy']['mismatches']} mismatches, {h['throughput_ratio_vllm_vs_hf']:.2f}× the speed of "
                f"`interp serve`; with seeded sampling mixed in {h['vllm_mixed_seeds']['errors']} errors, "
                f"{h['vllm_mixed_seeds']['mismatches']} mismatches"
            )
        out.append(line + ".")
    for name, d in _load("serve_cpu_*.json"):
        out.append(
            f"- Serving under load (`{name}`): {d['requests']} requests from {d['concurrency']} clients, "
            f"{d['errors']} errors, {d['mismatches']} answers differing from the same request served alone, "
            f"{d['throughput_ratio_vs_one_at_a_time']:.2f}× the throughput of one at a time (mean batch "
            f"{d['mean_batch_size']:.1f})."
        )
    return out


def page() -> str:
    return "\n".join(
        [
            "# Benchmark tables (generated from benchmarks/results/*.json by benchmarks/tables.py)",
            "",
            "Ratios are against a baseline timed in the same process; how each is measured, and what "
            "the numbers mean, is on the [benchmarks page](../benchmarks.md).",
            "",
            "## Against the goals",
            "",
            *reading(),
            "",
            "## Capture",
            "",
            *capture_rows(),
            "",
            "Where capture's time goes (`benchmarks/capture_breakdown.py`):",
            "",
            *breakdown_rows(),
            "",
            "## Patching",
            "",
            *patching_rows(),
            "",
            "Attribution patching's parts (`benchmarks/attribution_breakdown.py`):",
            "",
            *attribution_rows(),
            "",
            "## Steering overhead",
            "",
            *steering_rows(),
            "",
            "## Other libraries, same steering (CPU)",
            "",
            *library_rows(),
            "",
            "## Serving",
            "",
            *serve_rows(),
            "",
            "A batch whose requests all ask for the same steering (`benchmarks/serve_uniform.py`, `Engine.run`):",
            "",
            *uniform_rows(),
            "",
            "## Capture and steered generation across Ray workers",
            "",
            *scale_rows(),
            "",
            "## Steering inside vLLM (`benchmarks/vllm_steering.py`)",
            "",
            *vllm_rows(),
            "",
        ]
    )


def main() -> None:
    PAGE.write_text(page())
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
