"""Run llama.cpp's ``llama-completion`` on interp's prompts, with or without a control vector, to check
that an exported control vector steers llama.cpp as interp's hooks steer the same model.

    >>> texts = llama_cpp_generate(binary, gguf_path, model.encode(prompts).texts, n_tokens=24,
    ...                            control_vector="refusal.gguf")

``.ci/build_llama_cpp.sh`` builds the binary from the llama-cpp-python sdist on PyPI; set
``INTERP_LLAMA_CPP`` to its path (``find_llama_cpp`` also looks in the build's cache).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from interp.errors import InputError

VERSION = "0.3.36"


def find_llama_cpp() -> Path | None:
    """``$INTERP_LLAMA_CPP``, else the binary ``.ci/build_llama_cpp.sh`` caches, else None."""
    env = os.environ.get("INTERP_LLAMA_CPP")
    if env:
        return Path(env) if Path(env).is_file() else None
    cache = Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache/interp"))
    path = cache / f"llama.cpp-{VERSION}/src/vendor/llama.cpp/build/bin/llama-completion"
    return path if path.is_file() else None


def llama_cpp_generate(
    binary: str | Path,
    gguf: str | Path,
    prompts: list[str],
    n_tokens: int = 24,
    control_vector: str | Path | None = None,
    scale: float = 1.0,
    threads: int = 2,
) -> list[str]:
    """Greedy continuations of already formatted prompt strings (chat template applied), one process
    per prompt (llama-completion's ``-no-cnv`` mode), with the control vector at ``scale``."""
    if not Path(binary).is_file():
        raise InputError(f"no llama.cpp binary at {binary}. Fix: run .ci/build_llama_cpp.sh.")
    out = []
    for text in prompts:
        cmd = [
            str(binary),
            "-m",
            str(gguf),
            "-no-cnv",
            "--temp",
            "0",
            "-n",
            str(n_tokens),
            "--no-display-prompt",
            "--no-warmup",
            "--simple-io",
            "-t",
            str(threads),
            "-c",
            "1024",
            "-s",
            "0",
            "-p",
            text,
        ]
        if control_vector is not None:
            cmd += ["--control-vector-scaled", f"{control_vector}:{scale}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"llama.cpp failed ({proc.returncode}): {proc.stderr[-800:]}")
        if control_vector is not None and "control vector" in proc.stderr and "skipping" in proc.stderr:
            raise RuntimeError(f"llama.cpp rejected the control vector: {proc.stderr[-800:]}")
        out.append(proc.stdout.rstrip("\n"))  # llama.cpp ends its output with a blank line
    return out


def prefix_agreement(a: str, b: str) -> float:
    """Share of the shorter text that both texts have in common from the start (1 = one extends the other)."""
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k / n if n else 1.0


@dataclass
class ControlVectorCheck:
    """How llama.cpp with the exported control vector agrees with interp's hook steering (greedy text,
    mean prefix agreement over prompts). ``agree_plain`` is the floor set by arithmetic alone (llama.cpp
    runs the quantized GGUF, interp its dequantized fp32 weights); the controls (the same file with its
    layers shifted by one, and at strength -1) show what a wrong file would score."""

    n_prompts: int
    n_tokens: int
    agree_plain: float
    agree_steered: float
    agree_shifted_layers: float
    agree_negated: float
    changed_by_hooks: float  # share of prompts whose answer the steering changes, interp
    changed_by_control_vector: float  # the same, llama.cpp
    seconds_llama_cpp: float
    examples: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def compare_with_hooks(model, binary, gguf, prompts: list[str], add, workdir, n_tokens: int = 24):
    """Greedy answers with ``add`` (one :class:`~interp.steer.AddDirection`) as interp hooks and as a
    llama.cpp control vector, plus the controls; ``model`` must be the GGUF's weights."""
    import time

    from interp.export.control_vector import save_control_vector
    from interp.steer import AddDirection
    from interp.steer.apply import generate

    workdir = Path(workdir)
    cv = save_control_vector(model, [add], workdir / "steer.gguf")
    shifted = AddDirection(add.direction, [i + 1 for i in add.layers], add.alpha)
    cv_shifted = save_control_vector(model, [shifted], workdir / "shifted.gguf")
    texts = model.encode(prompts).texts
    plain_i = generate(model, prompts, max_new_tokens=n_tokens, batch_size=1)
    steer_i = generate(model, prompts, interventions=[add], max_new_tokens=n_tokens, batch_size=1)
    t0 = time.time()
    plain_c = llama_cpp_generate(binary, gguf, texts, n_tokens)
    steer_c = llama_cpp_generate(binary, gguf, texts, n_tokens, cv)
    shift_c = llama_cpp_generate(binary, gguf, texts, n_tokens, cv_shifted)
    neg_c = llama_cpp_generate(binary, gguf, texts, n_tokens, cv, scale=-1.0)
    seconds = time.time() - t0

    def mean(xs):
        xs = list(xs)
        return sum(xs) / len(xs)

    return ControlVectorCheck(
        n_prompts=len(prompts),
        n_tokens=n_tokens,
        agree_plain=mean(map(prefix_agreement, plain_i, plain_c)),
        agree_steered=mean(map(prefix_agreement, steer_i, steer_c)),
        agree_shifted_layers=mean(map(prefix_agreement, steer_i, shift_c)),
        agree_negated=mean(map(prefix_agreement, steer_i, neg_c)),
        changed_by_hooks=mean(a != b for a, b in zip(plain_i, steer_i, strict=True)),
        changed_by_control_vector=mean(a != b for a, b in zip(plain_c, steer_c, strict=True)),
        seconds_llama_cpp=seconds,
        examples=[
            {"prompt": p, "interp_hooks": a, "llama_cpp_control_vector": b}
            for p, a, b in list(zip(prompts, steer_i, steer_c, strict=True))[:4]
        ],
    )
