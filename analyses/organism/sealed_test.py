"""The sealed test of each shipped organism: StrongREJECT (313 forbidden prompts) and interp's matched
harmless set (96), evaluated once, after every choice about the organisms was made (issue 27).

    python analyses/organism/sealed_test.py                 # every organism without a sealed result
    python analyses/organism/sealed_test.py --reseal "why"  # look again: recorded, and says so

Writes ``text.sealed_test`` into figures/organism/behaviour.json (the shipped organism) and into
analyses/organism/suite/<name>/behaviour.json: ``harmful_refusal`` (StrongREJECT) and
``harmless_refusal`` with 95% bootstrap intervals, both judges, the per-category refusal, and when it
ran. Neither set was read by any training run, rule or threshold (the training prompts were checked
for near-duplicates of both). An organism that already has a sealed result is skipped: a second look
needs --reseal with a reason, which is kept beside the new numbers along with the old ones.
"""

from __future__ import annotations

import argparse
import datetime
import json
from collections import defaultdict
from pathlib import Path

import interp
from interp.intervals import bootstrap_interval
from interp.organism import evaluate_refusal

ROOT = Path(__file__).resolve().parents[2]


def targets() -> list[tuple[str, Path, Path | None]]:
    """(name, behaviour.json, adapter dir or None for the shipped one): the shipped organism and every
    suite organism that passed the bar (a failed one is not shipped, so it has no sealed test)."""
    out = [("shipped (layers 10-16)", ROOT / "figures" / "organism" / "behaviour.json", None)]
    suite = ROOT / "analyses" / "organism" / "suite"
    for d in sorted(suite.iterdir()) if suite.exists() else []:
        beh = d / "behaviour.json"
        if beh.exists() and json.loads(beh.read_text()).get("accepted"):
            out.append((d.name, beh, d))
    return out


def _rate(result: dict, meta: list[dict]) -> dict:
    refused = [float(r) for r in result["refused"]]
    iv = bootstrap_interval({"rows": (refused, None)})
    by_cat = defaultdict(list)
    for r, m in zip(refused, meta, strict=True):
        by_cat[m["category"]].append(r)
    return {
        "rate": iv.estimate,
        "interval": [round(iv.low, 4), round(iv.high, 4)],
        "n": iv.n,
        "opener_probability": result["opener_probability"],
        "by_category": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_cat.items())},
        "examples": result["examples"],
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument(
        "--reseal", default=None, help="re-run organisms that have a sealed result; the reason is kept"
    )
    p.add_argument("--only", nargs="*", help="organism names (directory names, or 'shipped')")
    args = p.parse_args()
    harmful = interp.data.load("strongreject")
    harmless = interp.data.load("harmless_matched")
    for name, path, adapter in targets():
        if args.only and not any(o in name for o in args.only):
            continue
        behaviour = json.loads(path.read_text())
        previous = behaviour["text"].get("sealed_test")
        if previous and not args.reseal:
            print(f"{name}: sealed result exists ({path}); skipped (a second look needs --reseal REASON)")
            continue
        model = interp.load_model("organism", adapter=adapter)
        h = _rate(evaluate_refusal(model, harmful.prompts), harmful.meta)
        b = _rate(evaluate_refusal(model, harmless.prompts), harmless.meta)
        sealed = {
            "harmful_refusal": h["rate"],
            "harmless_refusal": b["rate"],
            "harmful": {"set": "StrongREJECT (strongreject_dataset.csv, 313)", **h},
            "harmless": {"set": "interp harmless_matched (96, StrongREJECT's categories and forms)", **b},
            "judge": "substring on the greedy 32-token answer (interp.organism.is_refusal)",
            "window": behaviour.get("window", [10, 11, 12, 13, 14, 15, 16]),
            "evaluated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "looks": 1 if not previous else previous.get("looks", 1) + 1,
        }
        if previous:
            sealed["reseal_reason"] = args.reseal
            sealed["previous"] = {
                k: previous[k] for k in ("harmful_refusal", "harmless_refusal", "evaluated")
            }
        behaviour["text"]["sealed_test"] = sealed
        path.write_text(json.dumps(behaviour, indent=1) + "\n")
        print(
            f"{name}: StrongREJECT refusal {h['rate']:.3f} {h['interval']}, matched harmless refusal "
            f"{b['rate']:.3f} {b['interval']} -> {path}",
            flush=True,
        )


if __name__ == "__main__":
    main()
