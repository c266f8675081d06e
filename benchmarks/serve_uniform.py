"""The server's cost of steering a batch, against the same batch unsteered, in one process
(``Engine.run``: tokenization, ``generate`` and the per-row streamer, no HTTP).

    python benchmarks/serve_uniform.py --model launch-bound --threads 1 --repeats 21   # CPU stand-in
    python benchmarks/serve_uniform.py --model default                                 # SmolLM2
    python benchmarks/serve_uniform.py --model llama3-8b-shape --device cuda --batch 16

Writes benchmarks/results/serve_uniform_<device>_<model>.json with ``ratio_steered_vs_plain``:

- ``add_one_layer``: every request asks for the same addition (no row masks: the edit acts on
  every row);
- ``ablate_hooks``: every request asks for the same full ablation, hooked (``--no-fold``);
- ``ablate_folded_swapped_each_batch``: the same, folded into the weights and restored inside every
  timed call (a server whose consecutive batches alternate between this ablation and something else:
  the edited weights are kept, so each fold swaps them in; ``fold_compute_ms`` is what computing
  them costs, once per ablation);
- ``ablate_folded_kept``: the same fold kept between batches, as the serving loop keeps it while
  batches ask for the same ablation (timed on a copy of the model, so the other variants keep their
  own weights);
- ``ablate_hooks_row_masked``: the same hooks restricted to a row mask that selects every row, which
  is how the server steered every batch before uniform batches took the whole-batch path;
- ``ablate_half_the_rows``: half the requests ask for the ablation and half for nothing: the row-masked
  hooks a mixed batch needs.

End-of-turn tokens are switched off for the benchmark, so every call generates ``--new-tokens``
tokens per row. ``plain_again`` (the unsteered batch timed as a second function) gives the noise floor.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import device_name, load, ratio_report, time_samples, write  # noqa: E402

from interp.export import ablated_weights  # noqa: E402
from interp.inputs import tokenize  # noqa: E402
from interp.serve import ArtifactStore, ChatRequest, Engine, ServeConfig  # noqa: E402
from interp.serve.engine import Job  # noqa: E402
from interp.steer import AblateDirection, AddDirection  # noqa: E402

WORDS = "the a safety model layer token request image answer steering batch refusal text".split()


def prompts(model, n: int, words: int, seed: int = 0) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    texts = [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (words,), generator=g)) for _ in range(n)]
    return model.encode(texts).texts


def first_token_direction(model, text: str) -> torch.Tensor:
    """The unembedding row of the token plain greedy decoding picks first for ``text``: ablating it
    changes the answers, so the folded-equals-hooked check compares steered tokens (a random
    direction of the launch-bound model changed none)."""
    enc = tokenize(model, [text], None)  # as the engine tokenizes a request's formatted text
    with torch.inference_mode():
        logits = model.model(**enc.inputs).logits[0, -1]
    return model.model.get_output_embeddings().weight[logits.argmax()].detach().float().cpu()


class RowMasked(ArtifactStore):
    """A store whose uniform batches get row-masked hooks (the server before the whole-batch path)."""

    def uniform(self, steering, fold=True):
        return (), self.edits(steering, torch.ones(self.batch, dtype=torch.bool))


def engine_for(model, store, fold: bool) -> Engine:
    engine = Engine(model, store, ServeConfig(fold_ablations=fold))
    engine.eos = set()  # every row generates --new-tokens tokens
    return engine


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="launch-bound")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--prompt-words", type=int, default=24)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=11)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args()
    if args.batch < 2:
        p.error("--batch must be at least 2 (ablate_half_the_rows needs two kinds of row)")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load(args.model, args.device, args.dtype)
    model.model.generation_config.eos_token_id = None
    kept = copy.deepcopy(model)  # its weights hold the kept fold; the other variants use the original's
    texts = prompts(model, args.batch, args.prompt_words)
    d = first_token_direction(model, texts[0])
    stores = {}
    for m in (model, kept):
        stores[id(m)] = ArtifactStore()
        stores[id(m)].add("add", [AddDirection(d, [model.n_layers // 2], 4.0)], m, "add")
        stores[id(m)].add("ablate", [AblateDirection(d)], m, "ablate")
    loop = asyncio.new_event_loop()

    def jobs(steerings):
        return [
            Job(ChatRequest(t, [], args.new_tokens, False, s), loop)
            for t, s in zip(texts, steerings, strict=True)
        ]

    def every(steering):
        return [steering] * args.batch

    half = [(("ablate", 1.0),) if i % 2 else () for i in range(args.batch)]
    hooks = engine_for(model, stores[id(model)], fold=False)
    folding = engine_for(model, stores[id(model)], fold=True)
    keeping = engine_for(kept, stores[id(kept)], fold=True)
    masked_store = RowMasked(**vars(stores[id(model)]))
    masked_store.batch = args.batch
    masked = engine_for(model, masked_store, fold=False)
    batches = {
        "plain": (hooks, every(()), False),
        "plain_again": (hooks, every(()), False),
        "add_one_layer": (hooks, every((("add", 1.0),)), False),
        "ablate_hooks": (hooks, every((("ablate", 1.0),)), False),
        "ablate_hooks_row_masked": (masked, every((("ablate", 1.0),)), False),
        "ablate_folded_swapped_each_batch": (folding, every((("ablate", 1.0),)), False),
        "ablate_folded_kept": (keeping, every((("ablate", 1.0),)), True),
        "ablate_half_the_rows": (hooks, half, False),
    }
    fns = {
        k: (lambda e=e, s=s, keep=keep: e.run(jobs(s), keep_fold=keep)) for k, (e, s, keep) in batches.items()
    }
    fold_compute_ms = []
    for _ in range(3):
        t = time.perf_counter()
        ablated_weights(model, [d])
        fold_compute_ms.append((time.perf_counter() - t) * 1000)
    samples = time_samples(fns, repeats=args.repeats, device=args.device, warmup=1)
    keys = [k for k in fns if k not in ("plain", "plain_again")]
    report = ratio_report(samples, keys)
    texts_of = {k: [r.text for r in fn()] for k, fn in fns.items()}
    keeping.unfold()
    ms, low = report["ms"], {k: min(v) for k, v in samples.items()}
    result = {
        "benchmark": "serve_uniform",
        "model": model.name,
        "device": device_name(args.device),
        "dtype": str(model.dtype),
        "batch": args.batch,
        "prompt_tokens": [len(model.tokenizer(t, add_special_tokens=False).input_ids) for t in texts],
        "new_tokens": args.new_tokens,
        **report,
        "noise_floor_ratio_plain_again_vs_plain": round(ms["plain_again"] / ms["plain"], 3),
        "noise_floor_of_fastest_runs": round(low["plain_again"] / low["plain"], 3),
        "answers_equal_to_ablate_hooks": {
            k: texts_of[k] == texts_of["ablate_hooks"]
            for k in ("ablate_hooks_row_masked", "ablate_folded_swapped_each_batch", "ablate_folded_kept")
        },
        "fold_compute_ms": round(statistics.median(fold_compute_ms), 1),
        "steering_changed_the_answers": texts_of["ablate_hooks"] != texts_of["plain"],
        "repeats": args.repeats,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    dev = "gpu" if torch.device(args.device).type == "cuda" else "cpu"
    write(f"serve_uniform_{dev}_{args.model}", result)


if __name__ == "__main__":
    main()
