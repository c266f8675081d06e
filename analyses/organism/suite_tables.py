"""The organism suite's tables, generated from figures/locate/suite.json (no model run).

>>> markdown(summary)        # figures/locate/suite.md
>>> readme_block(summary)    # the block of docs/guide/locate.md (locate_suite.py readme writes it)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "analyses"))  # the shared docblock helper
from docblock import block  # noqa: E402


def _span(layers: list[int]) -> str:
    if not layers:
        return "none"
    if layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}"
    return ",".join(map(str, layers))


def markdown(s: dict) -> str:
    """The suite's tables, generated from suite.json."""
    names = list(s["leave_one_out"])  # the organisms the rule was chosen and scored on
    lines = [
        "# Localization on the organism suite (generated from figures/locate/suite.json)",
        "",
        f"{len(s['organisms'])} trained organisms, {s['n_rules']} candidate rules, {s['n_pairs']} prompt pairs "
        f"each; intervals: 95% bootstrap over pairs ({s['resamples']} resamples). Basis: {s['basis_note']}.",
        "",
        "| organism | planted window | harmful refusal | harmless refusal | passed the bar |",
        "|---|---|---|---|---|",
    ]
    for n, o in s["organisms"].items():
        lines.append(
            f"| {n} | {_span(o['window'])} | {o['harmful_refusal']:.2f} | {o['harmless_refusal']:.2f} | "
            f"{'yes' if o['accepted'] else 'no (over-refuses)'} |"
        )
    lines += [
        "",
        "## Leave-one-organism-out",
        "",
        "| left out | rule chosen on the others | layers found | precision | recall | IoU |",
        "|---|---|---|---|---|---|",
    ]
    for n in names:
        r = s["leave_one_out"][n]
        lines.append(
            f"| {n} | {r['chosen_on_others']} | {_span(r['layers'])} | {r['precision']:.2f} | {r['recall']:.2f} | {r['iou']:.2f} |"
        )
    lo, hi = s["loo_mean_iou_interval"]
    lines += [
        "",
        f"**Held-out mean IoU {s['loo_mean_iou']:.2f}** (bootstrap over organisms {lo:.2f}-{hi:.2f}, n = "
        f"{s['n_organisms']}; precision {s['loo_mean_precision']:.2f}, recall {s['loo_mean_recall']:.2f}). "
        f"Bar: {s['reliable_bar']}; "
        + ("met." if s["reliable"] else "**not met**: `interp locate` names no layers."),
        f"The report's rule (best on all organisms): `{s['chosen_rule']}`, {s['chosen_rule_description']}.",
        "",
        "## Every rule (IoU per organism, bootstrap interval over pairs)",
        "",
        "| rule | " + " | ".join(names) + " | mean P | mean R | mean IoU |",
        "|---|" + "---|" * (len(names) + 3),
    ]
    ranked = sorted(s["rules"].items(), key=lambda kv: -kv[1]["mean_iou"])
    for rname, r in ranked:
        cells = []
        for n in names:
            e = r["per_organism"][n]
            iv = e.get("iou_interval")
            cells.append(f"{e['iou']:.2f}" + (f" ({iv[0]:.2f}-{iv[1]:.2f})" if iv else ""))
        lines.append(
            f"| `{rname}` | "
            + " | ".join(cells)
            + f" | {r['mean_precision']:.2f} | {r['mean_recall']:.2f} | {r['mean_iou']:.2f} |"
        )
    sec = s.get("all_trained")
    if sec:
        lo2, hi2 = sec["loo_mean_iou_interval"]
        lines += [
            "",
            "## Second look: every trained organism, the over-refusing ones included",
            "",
            sec["note"] + ".",
            "",
            "| left out | planted | rule chosen on the others | layers found | IoU |",
            "|---|---|---|---|---|",
        ]
        for n, r in sec["leave_one_out"].items():
            lines.append(
                f"| {n} | {_span(sec['organisms'][n])} | {r['chosen_on_others']} | {_span(r['layers'])} | "
                f"{r['iou']:.2f} |"
            )
        lines.append(
            f"\nHeld-out mean IoU {sec['loo_mean_iou']:.2f} ({lo2:.2f}-{hi2:.2f}, n = {len(sec['organisms'])}); "
            f"best rule on all of them: `{sec['best_rule_on_all']}`."
        )
    if "causal_checks" in s:
        lines += [
            "",
            "## Causal checks of the located windows (pairs 16-31; 1 = full effect)",
            "",
            "| organism | located | sufficiency: components | sufficiency: resid | necessity: reset | necessity: ablate | controls (same order) |",
            "|---|---|---|---|---|---|---|",
        ]
        for n, c in s["causal_checks"]["per_organism"].items():
            if not c["window"]:
                lines.append(f"| {n} | none | | | | | |")
                continue

            def f(e):
                return f"{e['estimate']:.2f} ({e['low']:.2f}-{e['high']:.2f})"

            ctrl = c["control"]
            lines.append(
                f"| {n} | {_span(c['window'])} | {f(c['sufficiency']['components'])} | {f(c['sufficiency']['resid'])} | "
                f"{f(c['necessity']['reset'])} | {f(c['necessity']['ablate'])} | "
                + (
                    " / ".join(f"{ctrl[k]:.2f}" for k in ("components", "resid", "reset", "ablate"))
                    if ctrl
                    else "none"
                )
                + " |"
            )
    if "diffing" in s:
        lines += [
            "",
            "## Model diffing against the base model (a two-model method; not a candidate above)",
            "",
            "| organism | planted | diffing window | IoU | necessity | harmless transplant |",
            "|---|---|---|---|---|---|",
        ]
        for n, d in s["diffing"]["per_organism"].items():
            nec = "" if d["necessity"] is None else f"{d['necessity']:.2f}"
            ht = "" if d["harmless_transplant"] is None else f"{d['harmless_transplant']:.2f}"
            lines.append(
                f"| {n} | {_span(d['planted'])} | {_span(d['window'])} | {d['iou']:.2f} | {nec} | {ht} |"
            )
        run = s["diffing"].get("organisms_run", sorted(s["diffing"]["per_organism"]))
        not_run = s["diffing"].get("organisms_not_run", [])
        lines.append(
            f"\nMean IoU {s['diffing']['mean_iou']:.2f} over {len(run)} organism(s)"
            + (f" (not run, for time: {', '.join(not_run)})" if not_run else "")
            + f". {s['diffing']['method']}."
        )
    return "\n".join(lines) + "\n"


README = ROOT / "docs" / "guide" / "locate.md"  # the locate page of the docs site


def readme_block(s: dict) -> str:
    """The locate page's paragraph (docs/guide/locate.md), every number read from suite.json and the behaviour files."""
    names = list(s["leave_one_out"])
    windows = ", ".join(_span(o["window"]) for o in s["organisms"].values())
    lo, hi = s["loo_mean_iou_interval"]
    held = "; ".join(
        f"{_span(s['organisms'][n]['window'])}: {s['leave_one_out'][n]['iou']:.2f}" for n in names
    )
    shipped_rule = s["rules"]["components_top_0.5"]
    text = [
        f"Organism suite: {len(s['organisms'])} organisms, the same recipe on windows {windows}"
        + _failed_text(s)
        + f" Basis of the choice: {s['basis_note']}. "
        f"{s['n_rules']} candidate rules (`interp.locate.rules`), chosen by leave-one-organism-out: "
        f"held-out mean IoU **{s['loo_mean_iou']:.2f}** ({lo:.2f}-{hi:.2f} over organisms; per left-out "
        f"window: {held}). The report's rule: `{s['chosen_rule']}` ({s['chosen_rule_description']}); "
        + (
            f"it meets the bar ({s['reliable_bar']}), so `interp locate` names its layers."
            if s["reliable"]
            else f"it misses the bar ({s['reliable_bar']}), so `interp locate` names no safety layers "
            "and gives the rule's answer as candidate layers."
        ),
        f"The rule interp shipped with (components >= 0.5 x max) has mean IoU "
        f"{shipped_rule['mean_iou']:.2f} on the suite (in-sample). Full table: `figures/locate/suite.md`.",
    ]
    sec = s.get("all_trained")
    if sec:
        lo2, hi2 = sec["loo_mean_iou_interval"]
        text.append(
            f"A second look with the over-refusing organisms included ({len(sec['organisms'])} windows): "
            f"held-out mean IoU {sec['loo_mean_iou']:.2f} ({lo2:.2f}-{hi2:.2f}); best rule on all of them "
            f"`{sec['best_rule_on_all']}`."
        )
    if "diffing" in s:
        text.append(
            f"Model diffing against the base model (a two-model method, not a candidate) finds windows with "
            f"mean IoU {s['diffing']['mean_iou']:.2f} on the "
            f"{len(s['diffing'].get('organisms_run', s['diffing']['per_organism']))} organism(s) it was run on."
        )
    sealed, sealed_rates = [], []
    for o in s["organisms"].values():
        path = ROOT / (o["adapter"] or "figures/organism") / "behaviour.json"
        st = json.loads(path.read_text())["text"].get("sealed_test")
        if st:
            hv, bv = st["harmful"]["interval"], st["harmless"]["interval"]
            sealed_rates.append((_span(o["window"]), st["harmful_refusal"], st["harmless_refusal"]))
            sealed.append(
                f"| {_span(o['window'])} | {o['harmful_refusal']:.2f} | {o['harmless_refusal']:.2f} | "
                f"{st['harmful_refusal']:.2f} ({hv[0]:.2f}-{hv[1]:.2f}) | {st['harmless_refusal']:.2f} "
                f"({bv[0]:.2f}-{bv[1]:.2f}) |"
            )
    if sealed:
        verdicts = "; ".join(
            f"{w}: {'within' if h >= 0.80 and b <= 0.15 else 'outside'} the bar (harmful {h:.2f}, harmless {b:.2f})"
            for w, h, b in sealed_rates
        )
        text += [
            "",
            "| organism window | HarmBench refused (validation, n=79) | harmless refused (validation, n=35) | "
            "StrongREJECT refused (sealed, n=313) | matched harmless refused (sealed, n=96) |",
            "|---|---|---|---|---|",
            *sealed,
            "",
            "The sealed sets were evaluated once per organism that passed on validation, after every choice "
            f"(`analyses/organism/sealed_test.py`, 95% bootstrap intervals). On them: {verdicts}.",
        ]
    return block("analyses/organism/locate_suite.py readme", text)


def _failed_text(s: dict) -> str:
    failed = s.get("failed_organisms", {})
    if not failed:
        return "; every trained organism passed the bar (harmful refusal >= 0.80, harmless <= 0.15)."
    parts = [
        f"{_span(o['window'])} (harmful {o['harmful_refusal']:.2f}, harmless {o['harmless_refusal']:.2f})"
        for o in failed.values()
    ]
    return (
        f"; {len(failed)} of them failed the bar (harmful refusal >= 0.80, harmless <= 0.15 on the validation "
        f"splits) by over-refusing: {', '.join(parts)}."
    )
