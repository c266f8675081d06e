"""The jaxtyping shapes on interp's tensor functions are checked, not documentation: the whole package
is imported under jaxtyping's import hook with beartype (in a subprocess, so the hook sees every
module first), the main tensor paths run on a tiny model, and a wrong shape raises."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    from jaxtyping import install_import_hook
    with install_import_hook("interp", "beartype.beartype"):
        import interp
        from interp.locate.attribution import attribution_patch
        from interp.locate.directions import refusal_directions, select_direction
        from interp.locate.patching import patch_components
        from interp.testing import tiny_model
        from interp.steer import AblateDirection, AddDirection
    import torch

    m = tiny_model("llama")
    harmful, harmless = ["hello there", "a b c"], ["how are you", "d e"]
    acts = interp.capture(m, harmful + harmless, labels=["harmful"] * 2 + ["harmless"] * 2,
                          positions=["last", "mean", "all"])
    dirs = refusal_directions(acts)
    select_direction(m, dirs, harmful, harmless)
    patch_components(m, harmful, harmless, positions=[-2, -1])
    attribution_patch(m, harmful, harmless)
    items = [AddDirection(torch.ones(m.d_model), [0], 1.0), AblateDirection(torch.ones(m.d_model))]
    interp.steer.generate(m, harmful, interventions=items, max_new_tokens=2)
    interp.steer.last_logits(m, harmful, interventions=items)
    interp.evaluate.kl_per_prompt(m, harmless, items)
    m.unembed(torch.randn(2, m.d_model))
    try:
        interp.refusal.refusal_logodds(torch.randn(3), [1])   # [B, V] expected
    except Exception as e:
        print("caught", type(e).__name__)
    """
)


def test_shapes_are_checked_at_run_time():
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "caught TypeCheckError" in run.stdout, run.stdout
