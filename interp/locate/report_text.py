"""The report's Markdown: the located layers, how each method agrees, the cross-modal picture.

    >>> print(report.markdown())

Every sentence is computed from the report's numbers; nothing here is a fixed claim.
"""

from __future__ import annotations

from statistics import mean


def _span(layers: list[int]) -> str:
    if not layers:
        return "none"
    runs, start, prev = [], layers[0], layers[0]
    for layer in layers[1:] + [None]:
        if layer is not None and layer == prev + 1:
            prev = layer
            continue
        runs.append(f"{start}" if start == prev else f"{start}-{prev}")
        if layer is not None:
            start = prev = layer
    return ", ".join(runs)


def _mean_at(profile, layers) -> float | None:
    vals = [s for layer, s in zip(profile.layers, profile.scores, strict=True) if layer in layers]
    return mean(vals) if vals else None


def _fmt(x, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown(report) -> str:
    r, f = report, report.findings
    lines = [
        f"# Where safety activates in {r.model}",
        "",
        f"Data: {r.data}. Layers: {r.n_layers} (0-based decoder-layer outputs).",
        "",
        f"**Located safety layers: {_span(r.safety_layers)}** ({r.rule}).",
    ]
    if not r.safety_layers and r.candidate_layers:
        lines.append(f"Candidate layers (the best rule's answer, not reliable): {_span(r.candidate_layers)}.")
    lines += _suite(r.suite)
    if r.planted:
        ov = r.localized["chosen_rule"].get("planted_overlap", {})
        lines.append(
            f"Planted window (where the safety LoRA was trained): {_span(r.planted)}; the rule's layers "
            f"have precision {_fmt(ov.get('precision'))} and recall {_fmt(ov.get('recall'))} against it."
        )
    lines += _causal(r.causal)
    lines += [
        "",
        "## Methods",
        "",
        "| method | located layers | rule | agreement with the "
        + ("safety" if r.safety_layers else "candidate")
        + " layers (precision / recall)"
        + (" | inside the planted window (precision / recall)" if r.planted else "")
        + " |",
        "|---|---|---|---|" + ("---|" if r.planted else ""),
    ]
    agree = f.get("agreement_with_safety_layers", {})
    for name, entry in r.localized.items():
        a = agree.get(name)
        a_txt = "(defines them)" if a is None else f"{_fmt(a['precision'])} / {_fmt(a['recall'])}"
        row = f"| {name} | {_span(entry['layers'])} | {entry['rule']} | {a_txt}"
        if r.planted:
            ov = entry.get("planted_overlap", {})
            row += f" | {_fmt(ov.get('precision'))} / {_fmt(ov.get('recall'))}"
        lines.append(row + " |")
    stable = [(name, e["stability"]) for name, e in r.localized.items() if "stability" in e]
    if stable:
        lines += [
            "",
            "How stable the patching selections are (the prompt pairs resampled, the rule re-applied):",
            "",
        ]
        for name, s in stable:
            shown = ", ".join(
                f"{layer} {fr:.2f}"
                for layer, fr in zip(s["layers"], s["frequency"], strict=True)
                if fr >= 0.05
            )
            lines.append(
                f"- {name}: share of {s['resamples']} resamples of the {s['n_pairs']} pairs that select each "
                f"layer: {shown or 'none above 0.05'}; exactly the same layers: {s['same_selection']:.2f}."
            )
    lines += [
        "",
        f"- Refusal log-odds, harmful minus harmless prompts (the patching metric's range): "
        f"{_fmt(f.get('clean_minus_corrupt_metric'))}.",
        f"- Attribution patching vs exact residual patching over layers x positions: correlation "
        f"{_fmt(f.get('attribution_vs_exact_correlation'))}, in {f.get('attribution_forwards')} forward-equivalents "
        f"(exact: {f.get('exact_resid_forwards')} forwards).",
        f"- Arditi et al.'s direction selection chose layer {f.get('selected_direction_layer')}.",
    ]
    probe = r.profiles.get("probe")
    if probe is not None:
        lines.append(
            f"- Probes separate harmful from harmless text from layer {_span(r.localized['probe']['layers'])} "
            f"on (max accuracy {max(probe.scores):.2f}, shuffled baseline <= {max(probe.baseline or [0]):.2f}). "
            "Probes read that a request is harmful, which a model can know without refusing: an early onset "
            "does not place the refusal there."
        )
    if "cross_modal_cosine" in r.profiles:
        lines += _cross_modal(r)
    lines += [
        "",
        "## Files",
        "",
        "`overview.html` (every method on one scaled axis), one HTML figure per method, `map_*.html` "
        "(patching heatmaps, layer x position), `report.json` (all scores).",
        f"PNG copies: {r.png}.",
        "",
        "Timings (s): " + ", ".join(f"{k}: {v}" for k, v in r.seconds.items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def _suite(card: dict) -> list[str]:
    if not card:
        return []
    lo, hi = card["loo_mean_iou_interval"]
    return [
        "",
        f"How well this rule localizes, measured on {card['n_organisms']} model organisms whose safety window is "
        f"known (each left out in turn, the rule chosen on the others): mean IoU {card['loo_mean_iou']:.2f} "
        f"({lo:.2f}-{hi:.2f}), precision {card['loo_mean_precision']:.2f}, recall {card['loo_mean_recall']:.2f} "
        f"({card['source']}). On a real model nothing is known: read the causal checks below.",
    ] + ([f"Basis: {card['basis_note']}."] if card.get("basis_note") else [])


def _causal(c: dict | None) -> list[str]:
    if not c:
        return []

    def e(x):
        return f"{x['estimate']:.2f} ({x['low']:.2f}-{x['high']:.2f})"

    ctrl = c.get("control") or {}

    def vs(key):
        return f"; same-width windows elsewhere: {ctrl[key]:.2f}" if key in ctrl else ""

    return [
        "",
        f"## Causal checks of layers {_span(c['window'])} ({c['n_pairs']} pairs: {c['pairs']}; 1 = full effect, "
        "95% bootstrap intervals)",
        "",
        f"- Sufficiency, the window's attention + MLP outputs from harmful runs written into harmless runs: "
        f"{e(c['sufficiency']['components'])}{vs('components')}.",
        f"- Sufficiency, the residual stream at the window's layers: {e(c['sufficiency']['resid'])}{vs('resid')}.",
        f"- Necessity, the window's outputs reset to the harmless runs': refusal removed "
        f"{e(c['necessity']['reset'])}{vs('reset')}.",
        f"- Necessity, the refusal direction ablated inside the window only: {e(c['necessity']['ablate'])}"
        f"{vs('ablate')}.",
    ]


def _cross_modal(r) -> list[str]:
    f, p = r.findings, r.profiles
    # the named safety layers, else the best rule's candidate layers (each line says which)
    window = r.safety_layers or r.candidate_layers
    where = "the safety layers" if r.safety_layers else "the candidate layers"
    cos = p["cross_modal_cosine"]
    transfer = p["probe_transfer"]
    proj = p["refusal_projection"]
    gap = proj.metadata.get("image_minus_text")
    lens_i, lens_t = p["logit_lens_refusal_image"], p["logit_lens_refusal_text_forms"]
    out = [
        "",
        "## Text vs image (the same requests; TGA's cross-modal test)",
        "",
        f"- Cosine between the text form's and the image form's last-token state: {_fmt(_mean_at(cos, window))} "
        f"on average in {where} (min {min(cos.scores):.2f} at layer {cos.layers[cos.scores.index(min(cos.scores))]}).",
        f"- A probe trained on text and tested on image inputs: accuracy {_fmt(_mean_at(transfer, window))} in "
        f"{where} (best {max(transfer.scores):.2f} at layer {transfer.best_layer}).",
    ]
    if gap is not None:
        g = [v for layer, v in zip(proj.layers, gap, strict=True) if layer in window]
        out.append(
            f"- Refusal-direction projection, image minus text form of harmful requests: "
            f"{_fmt(mean(g) if g else None)} on average in {where} (negative: the image form "
            "looks less like a refusal case)."
        )
    over = p.get("refusal_projection_oversensitive")
    if over is not None:
        out.append(
            f"- Benign requests about risky-looking images ({over.metadata['n']}, the over-sensitivity split): on "
            f"the refusal direction they sit {_fmt(_mean_at(over, window))} of the way from harmless to harmful "
            f"image requests on average in {where} (0: where harmless ones sit; 1: where harmful ones do)."
        )
    out.append(
        f"- Logit lens, P(refusal tokens) at the last layer: text forms {lens_t.scores[-1]:.3f}, image forms "
        f"{lens_i.scores[-1]:.3f}."
    )
    out.append(
        f"- Text -> image residual patching (do the text states restore refusal?): metric gap text minus image "
        f"{_fmt(f.get('text_minus_image_metric'))}; effect rises over layers "
        f"{_span(r.localized['patch_text_to_image']['layers'])}."
    )
    return out
