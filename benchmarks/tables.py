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


def capture_rows() -> list[str]:
    rows = [
        "| result file | device, model, dtype, batch | **capture / decoder stack** (like for like) | capture / full forward (early stop) | nnsight / forward | TransformerLens / forward | `output_hidden_states` / forward | streaming 10,000 prompts: results on disk, RSS growth (1,000 prompts) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, d in _load("capture_[cg]*.json"):
        s, small = d["streaming"], d["streaming_small"]
        rows.append(
            f"| `{name}` | {d['device']}, {d['model']}, {d['dtype'].replace('torch.', '')}, "
            f"{d['batch']}×{d['seq_len']} tokens | **{_x(d['ratio_capture_vs_backbone_forward'])}** | "
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


def page() -> str:
    return "\n".join(
        [
            "# Benchmark tables (generated from benchmarks/results/*.json by benchmarks/tables.py)",
            "",
            "Ratios are against a baseline timed in the same process; how each is measured, and what "
            "the numbers mean, is on the [benchmarks page](../benchmarks.md).",
            "",
            "## Capture",
            "",
            *capture_rows(),
            "",
            "## Patching",
            "",
            *patching_rows(),
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
        ]
    )


def main() -> None:
    PAGE.write_text(page())
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
