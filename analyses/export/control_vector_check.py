"""Does llama.cpp, given interp's exported control vector, steer SmolLM2 as interp's hooks do?

$ bash .ci/build_llama_cpp.sh        # once: builds llama-completion from the PyPI sdist (~3.5 min)
$ python analyses/export/control_vector_check.py      # -> figures/export/control_vector.json

The steering: the harmful-minus-harmless difference in means at layer 12 (32 + 32 HarmBench / harmless
prompts, last token) added at layers 12-14 with alpha 8, on the plain SmolLM2 GGUF that both engines run.
Plain SmolLM2 does not refuse (NOTES.md), and this addition does not make it refuse either; what the
check measures is whether the two engines produce the same steered text.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import interp
from interp.export.llama_cpp import VERSION, compare_with_hooks, find_llama_cpp
from interp.locate.directions import refusal_directions
from interp.models.load import default_gguf_path
from interp.steer import AddDirection

LAYER, ALPHA = 12, 8.0


def steering(model, n: int = 32) -> AddDirection:
    harm, harmless = interp.data.load("harmbench", n=n), interp.data.load("harmless", n=n)
    acts = interp.capture(
        model,
        harm.prompts + harmless.prompts,
        labels=harm.labels + harmless.labels,
        positions="last",
        layers=[LAYER],
    )
    return AddDirection(refusal_directions(acts)[LAYER], layers=[LAYER, LAYER + 1, LAYER + 2], alpha=ALPHA)


def held_out_prompts(n: int) -> list[str]:
    return interp.data.load("harmless", n=32 + n).prompts[32:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--out", default="figures/export/control_vector.json")
    args = ap.parse_args()
    binary = find_llama_cpp()
    if binary is None:
        print("no llama.cpp binary: run .ci/build_llama_cpp.sh (or set INTERP_LLAMA_CPP)", file=sys.stderr)
        return 1
    model = interp.load_model("default")
    with tempfile.TemporaryDirectory() as tmp:
        check = compare_with_hooks(
            model, binary, default_gguf_path(), held_out_prompts(args.n), steering(model), tmp
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "layers": [LAYER, LAYER + 1, LAYER + 2],
        "alpha": ALPHA,
        "llama_cpp": f"llama-completion from llama-cpp-python {VERSION} (sdist)",
        **check.to_dict(),
    }
    out.write_text(json.dumps(record, indent=1))
    print(json.dumps({k: v for k, v in record.items() if k != "examples"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
