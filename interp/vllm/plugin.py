"""The vLLM plugin: with interp installed, every vLLM process loads it (entry point
``vllm.general_plugins``), and when ``INTERP_VLLM_ARTIFACTS`` names an artifact directory each model
runner installs interp's per-request steering right after it loads its model.

    $ INTERP_VLLM_ARTIFACTS=runs/artifacts vllm serve runs/model --enforce-eager
    >>> os.environ["INTERP_VLLM_ARTIFACTS"] = "runs/artifacts"; llm = vllm.LLM(model_dir, enforce_eager=True)

Without the variable the plugin does nothing. The artifacts are checked against the served checkpoint
when the engine starts (:func:`interp.vllm.fingerprint.checkpoint_fingerprint`): one made for another
model stops the engine with the reason. Steering needs eager mode (``enforce_eager=True``): a compiled
or graph-captured forward does not run Python hooks, so the engine refuses to start otherwise.
"""

from __future__ import annotations

import logging
import os

from interp.vllm.names import ENV

log = logging.getLogger("interp.vllm")


def register() -> None:
    """The plugin's entry point: patch the model runners' ``load_model`` (once per process)."""
    if not os.environ.get(ENV):
        return
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    classes = [GPUModelRunner]
    try:
        from vllm.v1.worker.cpu_model_runner import CPUModelRunner

        classes.append(CPUModelRunner)
    except ImportError:  # a GPU build without the CPU runner
        pass
    for cls in classes:
        if "load_model" in vars(cls) and not getattr(cls.load_model, "_interp", False):
            cls.load_model = _after_load(cls.load_model)


def _after_load(load_model):
    def patched(self, *args, **kwargs):
        out = load_model(self, *args, **kwargs)
        if os.environ.get(ENV) and getattr(self, "_interp_steerer", None) is None:
            self._interp_steerer = install(self, os.environ[ENV])
        return out

    patched._interp = True
    return patched


def install(runner, directory):
    """interp's steering on ``runner``'s model, with the artifacts of ``directory``."""
    from interp.errors import InputError
    from interp.vllm.fingerprint import checkpoint_fingerprint
    from interp.vllm.worker import Artifacts, Steerer

    config = runner.vllm_config
    if not config.model_config.enforce_eager:
        raise InputError(
            "interp steering inside vLLM needs eager mode: a compiled or graph-captured forward skips its "
            "hooks. Fix: pass enforce_eager=True (vllm serve --enforce-eager)."
        )
    try:
        fingerprint = checkpoint_fingerprint(config.model_config.model)
    except InputError as e:
        raise InputError(
            f"cannot check the steering artifacts against {config.model_config.model}: {e}"
        ) from None
    artifacts = Artifacts.from_dir(directory, fingerprint.n_layers, fingerprint.d_model, fingerprint)
    steerer = Steerer.install(runner, artifacts)
    log.info(
        "interp steering installed: %d artifact(s) (%s), %d not servable",
        len(artifacts.edits),
        ", ".join(sorted(artifacts.edits)),
        len(artifacts.unservable),
    )
    return steerer
