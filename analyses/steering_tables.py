"""The steering evaluation's tables, generated from figures/steering/summary.json (no model run).

    python analyses/steering_tables.py      # writes figures/steering/summary.md and the block in docs/guide/steer.md

Every number is read from summary.json: the sealed test on unseen objects (each method at the alpha
chosen on the validation split), the validation split's chosen settings, and what the organism can see.
"""

from __future__ import annotations

import json
from pathlib import Path

from docblock import block, fill

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "figures" / "steering"
README = ROOT / "docs" / "guide" / "steer.md"  # the steering page of the docs site
GOALS = (
    ("refusal_gap", "refusal_gap_at_most_0.10"),
    ("over_refusal_rise", "over_refusal_rise_at_most_0.05"),
    ("kl_harmless", "kl_harmless_at_most_0.1"),
)


def _iv(r: dict, key: str, digits: int = 2) -> str:
    v = r["intervals"][key]
    return f"{v['estimate']:.{digits}f} [{v['low']:.{digits}f}, {v['high']:.{digits}f}]"


def _goal(r: dict, key: str, goal: str) -> str:
    return f"{_iv(r, key)} {r['goals'][goal]['interval']}"


def _rows(block: dict) -> list[str]:
    """One table row per setting: the unsteered model, then each method at its chosen alpha."""
    out = []
    settings = [("none", block["baseline"])] + [
        (f"{name} ({r['alpha']})", r) for name, r in block["methods"].items()
    ]
    for label, r in settings:
        goals = (
            " | ".join(_goal(r, k, g) for k, g in GOALS)
            if label != "none"
            else f"{_iv(r, 'refusal_gap')} | - | -"
        )
        out.append(
            f"| {label} | {_iv(r, 'image_harmful_refusal')} | {r['text_harmful_refusal']:.2f} | "
            f"{r['image_harmless_refusal']:.2f} / {r['text_harmless_refusal']:.2f} | {goals} |"
        )
    return out


HEADER = [
    "| setting (alpha) | harmful image refused | harmful text refused | harmless refused (image / text) | "
    "gap to text (<= 0.10) | over-refusal rise (<= 0.05) | KL harmless (<= 0.1) |",
    "|---|---|---|---|---|---|---|",
]


def _n(n: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in n.items())


def _perception(s: dict) -> str:
    p = s["test"]["perception"]
    parts = [
        f"{k} objects {v['caption_accuracy']:.2f} (harmful ones {v['harmful_caption_accuracy']:.2f}; n={v['n']})"
        for k, v in p.items()
    ]
    return "Caption accuracy on held-out renderings (the caption names the object): " + "; ".join(parts) + "."


def _reading(s: dict) -> str:
    """What the test can and cannot say, from the perception numbers and the unsteered rows."""
    t = s["test"]
    unseen = t["perception"].get("unseen")
    if unseen is None or unseen["caption_accuracy"] >= 0.5:
        return ""
    b = t["baseline"]
    return (
        f"The organism names {unseen['caption_accuracy']:.0%} of the unseen objects, so on the test it "
        "does not know what the image shows: every method acts on the requests' wording and, for retrieval, "
        "on captions that name other objects. Unsteered, it refuses "
        f"{b['image_harmful_refusal']:.2f} of the harmful and {b['image_harmless_refusal']:.2f} of the harmless "
        f"image requests there (their text forms: {b['text_harmful_refusal']:.2f} and "
        f"{b['text_harmless_refusal']:.2f}): the wording of the harmful requests carries most of the harm, "
        "and an image it cannot read makes harmless requests look suspect. A method's refusal on the test "
        "is therefore no evidence that it transfers text safety to what an image shows."
    )


def markdown(s: dict) -> str:
    """figures/steering/summary.md."""
    t = s["test"]
    fit = s["steering_layers_fit"]
    lines = [
        "# Steering the organism VLM (generated from figures/steering/summary.json)",
        "",
        *(f"- **{k}**: {v}" for k, v in s["splits"].items()),
        f"- Steering layers {s['steering_layers']}: {s['steering_layers_source']} ({fit['data']}; the "
        f"rule {'meets' if fit['named_as_safety_layers'] else 'misses'} interp's reliability bar). Refusal "
        f"direction: layer {s['refusal_direction_layer']} ({s['refusal_direction_layer_rule']}). Condition "
        f"(CAST) layer {s['condition_layer']}; retrieval gate layer {s['retrieval_gate']['layer']}.",
        f"- Selection rule (validation): {s['selection_rule']}.",
        f"- Intervals: {s['interval_rule']}.",
        f"- {_perception(s)}",
        *([f"- {_reading(s)}"] if _reading(s) else []),
        "",
        f"## {'Sealed test: unseen objects' if t.get('objects_are', 'unseen') == 'unseen' else t['objects_are']} "
        f"(evaluated {t['evaluated']}; rows: {_n(t['n'])}; "
        f"{t['renderings']} rendering(s) per image request)",
        "",
        *HEADER,
        *_rows(t),
        "",
        f"## Validation: the seen objects' second requests (rows: {_n(s['n'])}; {s['renderings']} renderings "
        "per image request; the alphas were chosen here, so these rows flatter every method)",
        "",
        *HEADER,
        *_rows(s),
    ]
    if t.get("stale"):
        lines += ["", f"Stale (re-run on validation only; not on the test): {', '.join(t['stale'])}."]
    pending = _not_on_test(s)
    if pending:
        lines += [
            "",
            f"Not yet on the sealed test (validation only, added by a partial run): {', '.join(pending)}.",
        ]
    lines += _partial(t) + _transport_fits(s) + _oversensitive(t)
    return "\n".join(lines) + "\n"


def _not_on_test(s: dict) -> list[str]:
    t = s["test"]
    return [m for m in s["methods"] if m not in t["methods"] and m not in t.get("stale", [])]


def _transport_fits(s: dict) -> list[str]:
    fits = s.get("transport_fits") or {}
    if not fits:
        return []
    rows = [
        f"| {name} | {f['mode']} | {f['source_requests']} | {_support(f)} | {f['active_neurons']} | "
        f"{'image' if f.get('image_rows_only') else 'all'} | "
        + (f"{f['loss_first']:.2f} -> {f['loss_last']:.2f}" if "loss_first" in f else "-")
        + f" | {f['fit_seconds']:.0f} |"
        for name, f in fits.items()
    ]
    return [
        "",
        "## Learned transport fits (calibration pairs; image-form -> text-form last-token states)",
        "",
        "| method | mode | pairs | sparsity | neurons moved | requests steered | loss (first -> last step) | fit seconds (2-core CPU) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _support(fit: dict) -> str:
    """How a fit was made sparse: a set share of neurons (keep), a group penalty, or neither."""
    if fit.get("keep") is not None:
        return f"keep {fit['keep']:g}"
    return f"penalty {fit['sparsity']:g}" if fit.get("sparsity") else "-"


def _partial(t: dict) -> list[str]:
    """What partial runs added to the stored test, each thing evaluated once."""
    out = []
    for p in t.get("partial_evaluations", []):
        parts = []
        if p["methods"]:
            parts.append(f"first evaluated on the test: {', '.join(p['methods'])}")
        if p["oversensitive"]:
            parts.append(f"over-sensitivity split: {', '.join(p['oversensitive'])}")
        out.append(f"- {p['evaluated']} (a partial run): {'; '.join(parts)}.")
    if not out:
        return []
    return [
        "",
        "The test was extended by partial runs, each setting evaluated once, at its validation alpha:",
        *out,
    ]


def _oversensitive(t: dict) -> list[str]:
    over = t.get("oversensitive")
    if not over:
        return []
    settings = [("none", over["baseline"])] + [
        (f"{name} ({t['methods'][name]['alpha']})", r) for name, r in over["methods"].items()
    ]
    kinds = list(over["baseline"]["by_kind"])
    rows = [
        f"| {label} | {r['rate']:.2f} [{r['interval']['low']:.2f}, {r['interval']['high']:.2f}] | "
        + " | ".join(f"{r['by_kind'][k]:.2f}" for k in kinds)
        + " |"
        for label, r in settings
    ]
    return [
        "",
        f"## Over-sensitivity split (benign requests about risky-looking images, n={over['baseline']['n']}; "
        "evaluated with the sealed test, never used to choose)",
        "",
        "| setting (alpha) | refused | " + " | ".join(kinds) + " |",
        "|---|---|" + "---|" * len(kinds),
        *rows,
    ]


def readme_block(s: dict) -> str:
    """The steering page's paragraph (docs/guide/steer.md): the sealed test's headline rows."""
    t = s["test"]
    base = t["baseline"]
    over = t.get("oversensitive", {})

    def oversensitive(r) -> str:
        return "-" if r is None else f"{r['rate']:.2f} [{r['interval']['low']:.2f}, {r['interval']['high']:.2f}]"

    rows = [
        f"| none | {_iv(base, 'image_harmful_refusal')} | - | - | {oversensitive(over.get('baseline'))} |"
    ] + [
        f"| {name} ({r['alpha']}) | {_iv(r, 'image_harmful_refusal')} | {_goal(r, 'over_refusal_rise', GOALS[1][1])} | "
        f"{_goal(r, 'kl_harmless', GOALS[2][1])} | {oversensitive(over.get('methods', {}).get(name))} |"
        for name, r in t["methods"].items()
    ]
    text = [
        f"Sealed test on objects the organism never saw ({_n(t['n'])}): steering layers "
        f"{s['steering_layers']} chosen on calibration prompts only, each method's alpha chosen on a "
        "validation split of seen objects, the test run once after every choice. Unsteered, harmful "
        f"image requests are refused {_iv(base, 'image_harmful_refusal')} and their text forms "
        f"{base['text_harmful_refusal']:.2f}. {_perception(s)} {_reading(s)} Full tables (validation too): "
        "`figures/steering/summary.md`; the results before issue 27 (layers from the locate report, "
        "alphas chosen on the reported rows): `figures/steering/issue23/`."
        + (
            f" Not yet on the sealed test (validation only so far, in summary.md): {', '.join(_not_on_test(s))}."
            if _not_on_test(s)
            else ""
        ),
        "",
        "| method (alpha) | harmful image refused | over-refusal rise (<= 0.05) | KL harmless (<= 0.1) | "
        f"benign risky-looking images refused (n={over.get('baseline', {}).get('n', '-')}) |",
        "|---|---|---|---|---|",
        *rows,
    ]
    return block("analyses/steering_tables.py", text)


def main() -> None:
    s = json.loads((OUT / "summary.json").read_text())
    (OUT / "summary.md").write_text(markdown(s))
    fill(README, readme_block(s))
    print(f"wrote {OUT / 'summary.md'} and the block in {README}")


if __name__ == "__main__":
    main()
