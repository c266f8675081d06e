"""Did a re-run change a committed result? Compare two result files (JSON) field by field.

    python analyses/recheck_rows.py committed.json rerun.json --out recheck.json --only methods/cmrm_shift,sweeps/cmrm_shift

Every number and every per-row decision is compared (timings, ``seconds``, excluded); the output
records how many per-row values (lists of numbers) and scalar fields were compared and which differ.
Used to check that the batching fix of issue 23 left the committed steering results as they were.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

IGNORED = {"seconds", "wall_s"}  # timings: not results
TOLERANCE = (
    1e-6  # relative: the results are float32 computations (a mean summed in another order moves ~1e-8)
)


def compare(old, new, path: str = "") -> tuple[int, int, list[dict]]:
    """``(row values compared, scalars compared, differences)`` between two JSON values."""
    rows = scalars = 0
    diffs: list[dict] = []
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if key in IGNORED:
                continue
            if key not in old or key not in new:
                diffs.append({"path": f"{path}/{key}", "old": old.get(key), "new": new.get(key)})
                continue
            r, s, d = compare(old[key], new[key], f"{path}/{key}")
            rows, scalars, diffs = rows + r, scalars + s, diffs + d
    elif isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return 0, 0, [{"path": path, "old": f"{len(old)} items", "new": f"{len(new)} items"}]
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in old + new)
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            r, s, d = compare(a, b, f"{path}[{i}]")
            rows, scalars, diffs = rows + r, scalars + s, diffs + d
        if numeric:  # a list of per-row values: count them as rows, not scalars
            rows, scalars = rows + scalars, 0
    elif isinstance(old, (int, float)) and isinstance(new, (int, float)):
        scalars = 1
        if old != new:  # recorded at any size; counted as a difference above TOLERANCE
            diffs.append(
                {"path": path, "old": old, "new": new, "relative": abs(old - new) / max(1.0, abs(old))}
            )
    else:
        scalars = 1
        if old != new:
            diffs.append({"path": path, "old": old, "new": new})
    return rows, scalars, diffs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--label", default="")
    p.add_argument("--only", default="", help="comma-separated JSON paths (a/b/c) to compare; all by default")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    old, new = json.loads(args.old.read_text()), json.loads(args.new.read_text())
    paths = [x for x in args.only.split(",") if x] or [""]
    rows = scalars = 0
    diffs: list[dict] = []
    for path in paths:
        a, b = old, new
        for key in filter(None, path.split("/")):
            a, b = a[key], b[key]
        r, s, d = compare(a, b, path)
        rows, scalars, diffs = rows + r, scalars + s, diffs + d
    import transformers

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    result = {
        "label": args.label,
        "committed": str(args.old),
        "rerun": str(args.new),
        "compared": paths,
        "rerun_at_commit": commit,
        "transformers": transformers.__version__,
        "row_values_compared": rows,
        "scalars_compared": scalars,
        "tolerance_relative": TOLERANCE,
        "differences": sum(1 for d in diffs if d.get("relative", 1.0) > TOLERANCE),
        "max_relative_difference": max((d["relative"] for d in diffs if "relative" in d), default=0.0),
        "values_not_bit_identical": len(diffs),
        "difference_examples": diffs[:20],
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"{rows} row values, {scalars} scalars: {result['differences']} differ -> {args.out}", file=sys.stderr
    )


if __name__ == "__main__":
    main()
