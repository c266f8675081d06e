"""Score every candidate localization rule on the organism suite, choose one by leave-one-organism-out,
check the located windows causally, and diff each organism against its base model (issue 27).

    python analyses/organism/locate_suite.py curves     # per organism: the locate curves (~3 min each)
    python analyses/organism/locate_suite.py select     # rules x organisms, LOO choice (seconds)
    python analyses/organism/locate_suite.py checks     # sufficiency / necessity of the located windows
    python analyses/organism/locate_suite.py diff       # model diffing against the base (~6 min each at --max-width 8)

Organisms: the shipped one (interp/organism, layers 10-16) and every directory under
analyses/organism/suite/ whose behaviour passed the bar (harmful refusal >= 0.80, harmless <= 0.15 on
the validation splits); the others are listed as failed and left out. Each stage writes
figures/locate/suite/<organism>.json (curves, with per-pair numbers so intervals need no forward),
figures/locate/suite.json and suite.md (the table), and interp/locate/chosen_rule.json (what
``interp locate`` reports). The curves use the organism's held-out prompts 0-31 (patching: pairs 0-15);
the causal checks use the next 16 pairs (16-31), which no rule was chosen on.

Leave-one-organism-out: for each organism, the rule with the best mean IoU on the *other* organisms is
chosen and scored on the one left out; ``loo_mean_iou`` is the mean of those held-out scores. The rule
the report uses (``chosen_rule``) is the best on all organisms; its own all-organism mean is optimistic
and is not the number to quote. Intervals: per organism, 95% percentile bootstrap over the 16 prompt
pairs (map-based rules); over organisms, a bootstrap of the held-out IoUs (few organisms: rough).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import interp
from interp.locate.patching import PatchingMap
from interp.locate.report import LocateData, run
from interp.locate.rules import RULES, Curves, score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # analyses/: the shared docblock helper
from docblock import fill  # noqa: E402
from suite_tables import README, markdown, readme_block  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "analyses" / "organism" / "suite"
OUT = ROOT / "figures" / "locate" / "suite"
SUMMARY = ROOT / "figures" / "locate" / "suite.json"
CHOSEN = ROOT / "interp" / "locate" / "chosen_rule.json"
RELIABLE_IOU = 0.6  # the bar issue 27 sets, fixed before any rule was scored
# leave-one-out over fewer organisms says nothing; when fewer pass the behaviour bar, the rule is
# chosen over every trained organism (their windows are as known; they over-refuse harmless prompts),
# and the summary says so (decided after the behaviour results, before any rule was scored on them)
MIN_SUITE = 3
RESAMPLES = 200


def organisms() -> tuple[dict[str, dict], dict[str, dict]]:
    """name -> {"adapter": dir or None, "window": [...], behaviour}; accepted and failed."""
    ok, failed = {}, {}
    shipped = json.loads((ROOT / "figures" / "organism" / "behaviour.json").read_text())
    record = json.loads((ROOT / "interp" / "organism" / "adapter.json").read_text())
    w = record["layers"]
    ok[f"layers-{w[0]}-{w[-1]}"] = {
        "adapter": None,
        "window": w,
        "harmful_refusal": shipped["text"]["harmful_refusal"],
        "harmless_refusal": shipped["text"]["harmless_refusal"],
        "shipped": True,
    }
    for d in sorted(SUITE.iterdir()) if SUITE.exists() else []:
        beh = d / "behaviour.json"
        if not beh.exists():
            continue
        b = json.loads(beh.read_text())
        entry = {
            "adapter": str(d.relative_to(ROOT)),
            "window": b["window"],
            "harmful_refusal": b["text"]["harmful_refusal"],
            "harmless_refusal": b["text"]["harmless_refusal"],
            "shipped": False,
        }
        (ok if b["accepted"] else failed)[d.name] = entry
    return dict(sorted(ok.items(), key=lambda kv: kv[1]["window"][0])), failed


def load(entry: dict):
    return interp.load_model(
        "organism", adapter=None if entry["adapter"] is None else ROOT / entry["adapter"]
    )


def _map_dict(m: PatchingMap) -> dict:
    return {
        "method": m.method,
        "layers": m.layers,
        "positions": m.positions,
        "clean_metric": m.clean_metric,
        "corrupt_metric": m.corrupt_metric,
        "pairs": m.pairs.tolist(),
        "clean_pairs": m.clean_pairs.tolist(),
        "corrupt_pairs": m.corrupt_pairs.tolist(),
    }


def _map_from(d: dict) -> PatchingMap:
    pairs = torch.tensor(d["pairs"])
    raw = pairs.mean(-1)
    clean, corrupt = torch.tensor(d["clean_pairs"]), torch.tensor(d["corrupt_pairs"])
    m_clean, m_corrupt = float(clean.mean()), float(corrupt.mean())
    denom = m_clean - m_corrupt
    effect = (raw - m_corrupt) / denom if abs(denom) > 1e-6 else torch.zeros_like(raw)
    return PatchingMap(
        d["method"],
        d["layers"],
        d["positions"],
        effect,
        raw,
        m_clean,
        m_corrupt,
        pairs=pairs,
        clean_pairs=clean,
        corrupt_pairs=corrupt,
    )


def stage_curves(only: list[str] | None) -> None:
    ok, failed = organisms()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, entry in {**ok, **failed}.items():  # failed ones too: the secondary analysis reads them
        path = OUT / f"{name}.json"
        if (only and name not in only) or (not only and path.exists()):
            continue
        t0 = time.time()
        model = load(entry)
        report = run(
            model,
            LocateData.organism(n=32, images=False),
            progress=False,
            causal=False,
            rule="components_top_0.5",
        )
        d = report.to_dict()
        path.write_text(
            json.dumps(
                {
                    "organism": name,
                    "window": entry["window"],
                    "report": {
                        k: d[k]
                        for k in (
                            "model",
                            "n_layers",
                            "methods",
                            "findings",
                            "localized",
                            "patching_maps",
                            "data",
                        )
                    },
                    "maps": {k: _map_dict(m) for k, m in report.maps.items()},
                    "seconds": round(time.time() - t0, 1),
                }
            )
        )
        print(f"{name}: curves in {time.time() - t0:.0f}s -> {path}", flush=True)


def _curves(saved: dict, idx=None) -> Curves:
    base = Curves.from_report(saved["report"])
    if idx is None:
        return base
    return base.with_maps({k: _map_from(v).resampled(idx) for k, v in saved["maps"].items()})


def _interval(values: list[float]) -> list[float]:
    t = torch.tensor(values)
    return [round(x, 3) for x in torch.quantile(t, torch.tensor([0.025, 0.975])).tolist()]


def stage_select() -> dict:
    ok, failed = organisms()
    everyone = {**ok, **failed}
    saved = {
        name: json.loads((OUT / f"{name}.json").read_text())
        for name in everyone
        if (OUT / f"{name}.json").exists()
    }
    missing = [n for n in ok if n not in saved]
    if missing:
        raise SystemExit(f"no curves for {missing}: run the 'curves' stage first")
    passing = [n for n in ok]  # the suite proper: organisms that passed the bar
    trained = passing + [n for n in failed if n in saved]  # + the ones that over-refused
    names = passing if len(passing) >= MIN_SUITE else trained  # the basis of the choice
    # every rule on every organism, with a bootstrap over prompt pairs for the map-based rules
    table: dict[str, dict] = {}
    gen = torch.Generator().manual_seed(0)
    draws = {}
    for name in trained:
        n_pairs = len(saved[name]["maps"]["resid"]["clean_pairs"])
        idxs = [torch.randint(n_pairs, (n_pairs,), generator=gen) for _ in range(RESAMPLES)]
        draws[name] = [_curves(saved[name], idx) for idx in idxs]
    for rname, rule in RULES.items():
        per = {}
        for name in trained:
            planted = saved[name]["window"]
            found = rule.select(_curves(saved[name]))
            s = score(found, planted)
            entry = {"layers": found, **{k: round(v, 3) for k, v in s.items()}}
            if rule.uses_maps:
                ious = [score(rule.select(c), planted)["iou"] for c in draws[name]]
                entry["iou_interval"] = _interval(ious)
            per[name] = entry
        table[rname] = {
            "description": rule.description,
            "per_organism": per,
            **{
                f"mean_{k}": round(sum(per[n][k] for n in names) / len(names), 3)  # the suite proper
                for k in ("precision", "recall", "iou")
            },
        }
    order = list(RULES)

    def best(on: list[str]) -> str:  # ties: the earlier rule in RULES
        return max(
            order,
            key=lambda r: (sum(table[r]["per_organism"][n]["iou"] for n in on) / len(on), -order.index(r)),
        )

    def leave_one_out(group: list[str]) -> tuple[dict, float, list[float]]:
        loo = {}
        for held in group:
            chosen = best([n for n in group if n != held])
            loo[held] = {
                "chosen_on_others": chosen,
                **{
                    k: table[chosen]["per_organism"][held][k]
                    for k in ("layers", "precision", "recall", "iou")
                },
            }
        ious = [loo[n]["iou"] for n in group]
        gen = torch.Generator().manual_seed(1)
        boot = [
            float(torch.tensor(ious)[torch.randint(len(group), (len(group),), generator=gen)].mean())
            for _ in range(2000)
        ]
        return loo, round(sum(ious) / len(ious), 3), _interval(boot)

    loo, loo_mean, loo_interval = leave_one_out(names)
    chosen = best(names)
    secondary = None
    if names is passing and len(trained) > len(names):
        loo_all, mean_all, interval_all = leave_one_out(trained)
        secondary = {
            "note": "every trained organism, the ones that failed the over-refusal bar included (they refuse "
            "harmful prompts and their window is known, but they over-refuse harmless ones): not the suite "
            "the issue defines, a second look with more windows",
            "organisms": {n: everyone[n]["window"] for n in trained},
            "leave_one_out": loo_all,
            "loo_mean_iou": mean_all,
            "loo_mean_iou_interval": interval_all,
            "best_rule_on_all": best(trained),
            "mean_iou_per_rule": {
                r: round(sum(table[r]["per_organism"][n]["iou"] for n in trained) / len(trained), 3)
                for r in order
            },
        }
    summary = {
        "organisms": {
            n: {
                **{
                    k: everyone[n][k]
                    for k in ("window", "harmful_refusal", "harmless_refusal", "adapter", "shipped")
                },
                "accepted": n in ok,
            }
            for n in trained
        },
        "failed_organisms": failed,
        "basis": "passing" if names is passing else "all_trained",
        "basis_note": (
            f"the rule is chosen on the {len(passing)} organisms that passed the behaviour bar"
            if names is passing
            else f"only {len(passing)} organism(s) passed the behaviour bar (harmful refusal >= 0.80, harmless "
            f"<= 0.15), too few for leave-one-out (>= {MIN_SUITE}); the rule is chosen, and scored, over all "
            f"{len(trained)} trained organisms, whose windows are as known but {len(trained) - len(passing)} of "
            "which over-refuse harmless prompts"
        ),
        "n_passing": len(passing),
        "rules": table,
        "leave_one_out": loo,
        "loo_mean_iou": loo_mean,
        "loo_mean_iou_interval": loo_interval,
        "loo_mean_precision": round(sum(loo[n]["precision"] for n in names) / len(names), 3),
        "loo_mean_recall": round(sum(loo[n]["recall"] for n in names) / len(names), 3),
        "chosen_rule": chosen,
        "chosen_rule_description": RULES[chosen].description,
        "chosen_rule_all_organisms_mean_iou": table[chosen]["mean_iou"],
        "reliable_bar": RELIABLE_IOU,
        "reliable": loo_mean >= RELIABLE_IOU,
        "n_organisms": len(names),
        "n_rules": len(RULES),
        "n_pairs": len(saved[names[0]]["maps"]["resid"]["clean_pairs"]),
        "resamples": RESAMPLES,
        "prompts": "organism held-out split (validation data): harmful/harmless 0-31 for probes and "
        "directions, pairs 0-15 for patching and the lens",
        "method": "leave-one-organism-out: for each organism the rule with the best mean IoU on the others "
        "is scored on it; loo_mean_iou is the mean of those held-out IoUs. chosen_rule is the best rule on "
        "all organisms (what `interp locate` reports); its all-organism mean is optimistic.",
        "all_trained": secondary,
    }
    old = json.loads(SUMMARY.read_text()) if SUMMARY.exists() else {}
    for key in ("causal_checks", "diffing"):  # stages written later are kept
        if key in old:
            summary[key] = old[key]
    SUMMARY.write_text(json.dumps(summary, indent=1) + "\n")
    CHOSEN.write_text(
        json.dumps(
            {
                "rule": chosen,
                "description": RULES[chosen].description,
                "loo_mean_iou": loo_mean,
                "loo_mean_iou_interval": summary["loo_mean_iou_interval"],
                "loo_mean_precision": summary["loo_mean_precision"],
                "loo_mean_recall": summary["loo_mean_recall"],
                "reliable": summary["reliable"],
                "reliable_bar": RELIABLE_IOU,
                "n_organisms": len(names),
                "windows": {n: everyone[n]["window"] for n in names},
                "basis": summary["basis"],
                "basis_note": summary["basis_note"],
                "source": "figures/locate/suite.json (analyses/organism/locate_suite.py)",
            },
            indent=1,
        )
        + "\n"
    )
    (SUMMARY.parent / "suite.md").write_text(markdown(summary))
    print(markdown(summary))
    return summary


def stage_checks() -> None:
    from interp.locate.causal import window_checks
    from interp.organism import held_out

    summary = json.loads(SUMMARY.read_text())
    ok, failed = organisms()
    ok = {**ok, **failed}  # every organism the choice was made on
    split = held_out()
    harmful, harmless = split["harmful"][16:32], split["harmless"][16:32]
    rule = RULES[summary["chosen_rule"]]
    out = {}
    for name in summary["organisms"]:
        saved = json.loads((OUT / f"{name}.json").read_text())
        window = rule.select(_curves(saved))
        if not window:
            out[name] = {"window": [], "note": "the rule found no layers"}
            continue
        t0 = time.time()
        checks = window_checks(load(ok[name]), harmful, harmless, window)
        out[name] = {**checks.to_dict(), "planted": ok[name]["window"], "seconds": round(time.time() - t0, 1)}
        print(f"{name}: checks of {window} in {time.time() - t0:.0f}s", flush=True)
    summary["causal_checks"] = {
        "rule": summary["chosen_rule"],
        "prompts": "organism held-out pairs 16-31 (not used to choose the rule)",
        "per_organism": out,
    }
    SUMMARY.write_text(json.dumps(summary, indent=1) + "\n")
    (SUMMARY.parent / "suite.md").write_text(markdown(summary))


def stage_diff(max_width: int, only: list[str] | None = None) -> None:
    from interp.locate.diffing import diff_windows
    from interp.locate.rules import score as score_layers
    from interp.organism import held_out

    summary = json.loads(SUMMARY.read_text())
    ok, failed = organisms()
    ok = {**ok, **failed}  # every organism the choice was made on
    split = held_out()
    harmful, harmless = split["harmful"][:16], split["harmless"][:16]
    base = interp.load_model("default")
    out = dict(summary.get("diffing", {}).get("per_organism", {})) if only else {}
    for name in summary["organisms"]:
        if only and name not in only:
            continue
        t0 = time.time()
        d = diff_windows(load(ok[name]), base, harmful, harmless, max_width=max_width)
        out[name] = {
            "window": d.window,
            "planted": ok[name]["window"],
            **{k: round(v, 3) for k, v in score_layers(d.window, ok[name]["window"]).items()},
            "necessity": d.necessity,
            "harmless_transplant": d.harmless_transplant,
            "transplant_of_planted": d.transplant.get((ok[name]["window"][0], ok[name]["window"][-1])),
            "max_width": max_width,
            "per_layer_weight_change": d.per_layer_weight_change,
            "seconds": round(time.time() - t0, 1),
        }
        print(f"{name}: diffing window {d.window} in {time.time() - t0:.0f}s", flush=True)
    summary["diffing"] = {
        "method": "interp.locate.diffing.diff_windows: shortest window of the tuned model's layers that, "
        f"swapped into the base model, restores >= 0.9 of the tuned refusal (windows up to {max_width} layers)",
        "prompts": "organism held-out pairs 0-15",
        "per_organism": out,
        "mean_iou": round(sum(v["iou"] for v in out.values()) / len(out), 3),
        "organisms_run": sorted(out),
        "organisms_not_run": sorted(set(summary["organisms"]) - set(out)),
    }
    SUMMARY.write_text(json.dumps(summary, indent=1) + "\n")
    (SUMMARY.parent / "suite.md").write_text(markdown(summary))


def stage_readme() -> None:
    s = json.loads(SUMMARY.read_text())
    fill(README, readme_block(s))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("stage", choices=["curves", "select", "checks", "diff", "readme", "all"])
    p.add_argument("--only", nargs="*", help="curves / diff: (re)compute these organisms only")
    p.add_argument("--max-width", type=int, default=16, help="diff: widest window to transplant")
    args = p.parse_args()
    if args.stage in ("curves", "all"):
        stage_curves(args.only)
    if args.stage in ("select", "all"):
        stage_select()
    if args.stage in ("checks", "all"):
        stage_checks()
    if args.stage in ("diff", "all"):
        stage_diff(args.max_width, args.only)
    if args.stage in ("readme", "all"):
        stage_readme()


if __name__ == "__main__":
    main()
