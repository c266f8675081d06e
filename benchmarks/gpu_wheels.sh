#!/usr/bin/env bash
# Wheels for the GPU machine of the `device` tool: its image holds torch, transformers, safetensors,
# einops, jaxtyping, numpy, scikit-learn, tqdm, pillow, pyyaml and requests (KINDS.md), not gguf,
# plotly or nnsight (the steering benchmark times nnsight beside interp; TransformerLens, with its long
# list of dependencies, is left out there and the benchmark records it as skipped). Downloads them, at
# the versions installed here, into .whl/ (gitignored), for Python 3.12 there. Then, in one device
# call with carry [".whl"]:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site:$PWD || exit; python3 benchmarks/steering.py --model llama3-8b-shape --device cuda \
#     --batch 16 --new-tokens 32 && python3 benchmarks/serve_uniform.py --model llama3-8b-shape --device cuda \
#     --batch 16 && cp benchmarks/results/steering_gpu_*.json benchmarks/results/serve_uniform_gpu_*.json $OUT/
# (serve_uniform.py times the server's engine, which needs no FastAPI.)
set -euo pipefail
cd "$(dirname "$0")/.."
pins=$(python3 -c '
import importlib.metadata as m
names = ["gguf", "plotly", "narwhals", "nnsight", "cloudpickle", "greenlet", "httpx", "httpcore", "anyio",
         "sniffio", "h11", "pydantic", "pydantic-core", "annotated-types", "typing-inspection",
         "typing-extensions", "websocket-client", "zstandard"]
print(" ".join(f"{n}=={m.version(n)}" for n in names))')
# shellcheck disable=SC2086
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl $pins
ls -la .whl
