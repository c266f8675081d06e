"""Abliterate the text organism: bake the ablation of its refusal direction into the weights, and check
that the baked checkpoint behaves exactly as the hook-steered model.

$ python analyses/export/bake_check.py        # -> figures/export/bake.json (about 4 min on 2 cores)

The direction: difference in means (32 + 32 training prompts of the organism's split, last token) at
the layer Arditi et al.'s selection picks (or, when no layer passes its filters, the in-range layer
whose ablation lowers refusal most, ignoring the KL filter). Measured on the held-out
split: refusal rates of the base, hook-steered and baked models, the largest logit difference between
hooks and baked weights (also after a save_pretrained / from_pretrained round trip), and KL on
harmless prompts.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

import interp
from interp.export import bake, save_baked
from interp.locate.directions import refusal_directions, select_direction
from interp.organism import held_out, is_refusal
from interp.steer import AblateDirection, steer


def logits(model, prompts, interventions=()) -> torch.Tensor:
    out = []
    for _, chunk, _ in interp.inputs.chunks(prompts, None, 8):
        batch = model.encode(chunk)
        with steer(model, interventions), torch.inference_mode():
            out.append(model.model(**batch.inputs).logits[batch.attention_mask.bool()].float())
    return torch.cat(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="held-out prompts per class")
    ap.add_argument("--out", default="figures/export/bake.json")
    args = ap.parse_args()
    t0 = time.time()
    model = interp.load_model("organism")
    split = held_out()
    train_h, train_b = split["harmful_train"][:32], split["harmless_train"][:32]
    acts = interp.capture(model, train_h + train_b, labels=["harmful"] * 32 + ["harmless"] * 32)
    dirs = refusal_directions(acts)
    sel = select_direction(model, dirs, train_h[:12], train_b[:12])
    kept = [row for row in sel.table if row["in_range"]]
    candidates = (
        {"Arditi et al.'s selection": sel.layer}
        if sel.layer is not None
        else {  # no layer passed the filters on the organism: the two layers each half of the protocol favours
            "in-range layer whose ablation lowers refusal most (KL filter ignored)": min(
                kept, key=lambda row: row["bypass"]
            )["layer"],
            "in-range layer whose direction induces the most refusal (as steering_eval.py)": max(
                kept, key=lambda row: row["induce"]
            )["layer"],
        }
    )
    harmful, harmless = split["harmful"][: args.n], split["harmless"][: args.n]
    probe = harmful[:8] + harmless[:8]

    def rate(m, interventions=()):
        answers = interp.steer.generate(m, harmful, interventions=interventions, max_new_tokens=24)
        return sum(map(is_refusal, answers)) / len(answers), answers

    base_rate, _ = rate(model)
    variants = []
    for rule, layer in candidates.items():
        ablate = [AblateDirection(dirs[layer])]
        baked = bake(model, ablate)
        hook_rate, hook_answers = rate(model, ablate)
        baked_rate, baked_answers = rate(baked)
        hooked_logits = logits(model, probe, ablate)
        diff = (logits(baked, probe) - hooked_logits).abs().max().item()
        with tempfile.TemporaryDirectory() as tmp:
            from transformers import AutoModelForCausalLM

            path = save_baked(model, ablate, Path(tmp) / "organism-ablated")
            reloaded = interp.wrap(AutoModelForCausalLM.from_pretrained(str(path)).eval(), model.tokenizer)
            diff_reloaded = (logits(reloaded, probe) - hooked_logits).abs().max().item()
        identical = sum(a == b for a, b in zip(hook_answers, baked_answers, strict=True)) / len(harmful)
        variants.append(
            {
                "direction_layer": layer,
                "direction_rule": rule,
                "harmful_refusal": {"base": base_rate, "hooks": hook_rate, "baked": baked_rate},
                "answers_identical_hooks_vs_baked": identical,
                "max_abs_logit_diff_hooks_vs_baked": diff,
                "max_abs_logit_diff_after_reload": diff_reloaded,
                "logit_scale": hooked_logits.abs().max().item(),
                "kl_harmless_ablated_vs_base": interp.evaluate.kl_next_token(model, harmless, ablate),
            }
        )
    record = {
        "model": "organism",
        "n_harmful": len(harmful),
        "n_harmless": len(harmless),
        "variants": variants,
        "seconds": time.time() - t0,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
