"""The steering evaluation's trade-off figure (figures/steering/tradeoff.html), from summary.json.

>>> tradeoff(summary).write_html("tradeoff.html")
"""

from __future__ import annotations


def error_bars(sweep: list[dict], key: str, color: str, floor: float | None = None) -> dict:
    """Plotly error bars from each sweep entry's interval of ``key`` (none where it has none);
    ``floor`` clips the point and its interval from below, as a log axis needs."""
    if not all("intervals" in r for r in sweep):
        return {"visible": False}
    clip = (lambda x: max(x, floor)) if floor is not None else (lambda x: x)
    iv = [r["intervals"][key] for r in sweep]
    return {
        "type": "data",
        "symmetric": False,
        "array": [clip(v["high"]) - clip(v["estimate"]) for v in iv],
        "arrayminus": [clip(v["estimate"]) - clip(v["low"]) for v in iv],
        "color": color,
        "thickness": 1,
        "width": 3,
    }


def tradeoff(summary: dict):
    """Harmful-image refusal against over-refusal (left) and against KL on harmless requests (right),
    one line per method through its alphas."""
    import plotly.express as px
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.06,
        subplot_titles=("against over-refusal", "against KL on harmless requests"),
    )
    b = summary["baseline"]
    colors = px.colors.qualitative.Plotly
    fig.add_trace(
        go.Scatter(
            x=[b["harmless_refusal"]],
            y=[b["image_harmful_refusal"]],
            mode="markers",
            marker={"color": "black", "size": 10},
            name="no steering",
        ),
        row=1,
        col=1,
    )
    for k, (name, sweep) in enumerate(summary["sweeps"].items()):
        y = [r["image_harmful_refusal"] for r in sweep]
        color = colors[k % len(colors)]
        style = {"mode": "lines+markers", "line": {"color": color}, "legendgroup": name}
        labels = [f"a={r['alpha']}" for r in sweep]
        fig.add_trace(
            go.Scatter(
                x=[r["harmless_refusal"] for r in sweep],
                y=y,
                name=name,
                text=labels,
                # the paired rise's interval: what the goal line (baseline + 5 points) is about
                error_x=error_bars(sweep, "over_refusal_rise", color),
                error_y=error_bars(sweep, "image_harmful_refusal", color),
                **style,
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=[max(r["kl_harmless"], 1e-3) for r in sweep],
                y=y,
                name=name,
                text=labels,
                showlegend=False,
                error_x=error_bars(sweep, "kl_harmless", color, floor=1e-3),
                error_y=error_bars(sweep, "image_harmful_refusal", color),
                **style,
            ),
            row=1,
            col=2,
        )
    for col in (1, 2):
        fig.add_hline(y=b["text_harmful_refusal"], line_dash="dot", row=1, col=col)
    fig.add_vline(x=b["harmless_refusal"] + 0.05, line_dash="dash", line_color="grey", row=1, col=1)
    fig.add_vline(x=0.1, line_dash="dash", line_color="grey", row=1, col=2)
    fig.update_xaxes(title_text="refusal on harmless requests (image + text)", row=1, col=1)
    fig.update_xaxes(
        title_text="KL(unsteered || steered), harmless, log (0 drawn at 0.001)", type="log", row=1, col=2
    )
    fig.update_yaxes(title_text="refusal on harmful image requests", row=1, col=1)
    fig.update_layout(
        title=(
            f"Steering {summary['model'].split(' (')[0]}: dotted = harmful text-form refusal, "
            "dashed = goal limits (over-refusal +5 points, KL 0.1)<br>bars = 95% cluster-bootstrap intervals "
            "(over-refusal: of the rise, paired with the unsteered rows)"
        ),
        template="plotly_white",
        hovermode="closest",
        margin={"t": 110},
    )
    return fig
