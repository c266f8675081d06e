"""The export checks' paragraphs of the deploy page, generated from figures/export/*.json (no model run).

    python analyses/export/export_tables.py     # writes the two blocks in docs/guide/deploy.md

``bake.json`` is written by ``bake_check.py`` (baked weights against the hooks on the organism) and
``control_vector.json`` by ``control_vector_check.py`` (llama.cpp's control vector against interp's
hooks on the SmolLM2 GGUF). The tests check that the page holds what this script writes now.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "analyses"))  # the shared docblock helper
from docblock import block, fill  # noqa: E402

PAGE = ROOT / "docs" / "guide" / "deploy.md"
FIGURES = ROOT / "figures" / "export"
KL_FILTER = 0.1  # Arditi et al.'s filter on a direction's harmless KL


def bake_block() -> str:
    d = json.loads((FIGURES / "bake.json").read_text())
    v = d["variants"]
    diff = max(x["max_abs_logit_diff_hooks_vs_baked"] for x in v)
    reload = max(x["max_abs_logit_diff_after_reload"] for x in v)
    scales = [x["logit_scale"] for x in v]
    same = min(x["answers_identical_hooks_vs_baked"] for x in v)
    base = v[0]["harmful_refusal"]["base"]
    effects = " and ".join(
        f"the layer-{x['direction_layer']} direction to {x['harmful_refusal']['baked']:.3f}" for x in v
    )
    rules = "; ".join(f"layer {x['direction_layer']}: the {x['direction_rule']}" for x in v)
    kls = " and ".join(f"{x['kl_harmless_ablated_vs_base']:.1f}" for x in v)
    clean = all(x["kl_harmless_ablated_vs_base"] < KL_FILTER for x in v)
    return block(
        "analyses/export/export_tables.py bake",
        [
            f"`analyses/export/bake_check.py` → `figures/export/bake.json` ({d['model']}, {d['n_harmful']} held-out "
            f"harmful prompts): baked and hook-steered logits differ by at most {diff:.2g} (logits up to "
            f"{min(scales):.0f}–{max(scales):.0f}), {reload:.2g} after a save/reload, and "
            f"{same:.0%} of the greedy answers are identical. As abliteration, ablating "
            f"takes the organism's refusal from {base:.2f}: {effects} (directions chosen as: {rules}); "
            + (
                "both keep harmless next-token distributions close."
                if clean
                else f"but it shifts harmless next-token distributions far (KL {kls}), where Arditi et al.'s filter "
                f"asks for < {KL_FILTER}: it removes refusal, not cleanly, which matches the locate report (no "
                "layer passes Arditi's filters)."
            ),
        ],
    )


def control_vector_block() -> str:
    d = json.loads((FIGURES / "control_vector.json").read_text())
    layers = d["layers"]
    changed = min(d["changed_by_hooks"], d["changed_by_control_vector"])
    return block(
        "analyses/export/export_tables.py control-vector",
        [
            "`analyses/export/control_vector_check.py` → `figures/export/control_vector.json`: on the SmolLM2 "
            f"GGUF, {d['n_prompts']} held-out harmless prompts, {d['n_tokens']} greedy tokens, the "
            f"harmful-minus-harmless direction at layers {layers[0]}–{layers[-1]} (alpha {d['alpha']:g}) changes "
            f"{changed:.0%} of the answers in both engines (llama.cpp: {d['llama_cpp']}), and llama.cpp's steered text agrees "
            f"with interp's hook-steered text {d['agree_steered']:.2f} (mean shared-prefix fraction), where the "
            f"two engines agree {d['agree_plain']:.2f} without steering (llama.cpp runs Q4_1 arithmetic, interp the "
            f"dequantized fp32 weights). Controls: the same file with its layers shifted by one agrees "
            f"{d['agree_shifted_layers']:.2f}, at strength −1 {d['agree_negated']:.2f}.",
        ],
    )


def main() -> None:
    fill(PAGE, bake_block())
    fill(PAGE, control_vector_block())
    print(f"wrote the two blocks in {PAGE}")


if __name__ == "__main__":
    main()
