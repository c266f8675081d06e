import pytest
import torch
from safetensors.torch import save_file

import interp
from interp.models.lora import merge_lora
from interp.testing import tiny_model


def test_merge_adds_scaled_low_rank_update(tmp_path):
    model = tiny_model("llama")
    name = "model.layers.1.mlp.down_proj"
    a, b = torch.randn(2, 128), torch.randn(64, 2)
    save_file(
        {f"base_model.model.{name}.lora_A.weight": a, f"base_model.model.{name}.lora_B.weight": b},
        str(tmp_path / "a.safetensors"),
    )
    before = model.layers[1].mlp.down_proj.weight.clone()
    digest = model.fingerprint.weights_digest
    assert merge_lora(model.model, tmp_path / "a.safetensors", scale=0.5) == 1
    torch.testing.assert_close(model.layers[1].mlp.down_proj.weight, before + 0.5 * b @ a)
    model.__dict__.pop("fingerprint")
    assert model.fingerprint.weights_digest != digest  # a one-layer fine-tune changes the fingerprint


def test_merge_refuses_a_foreign_adapter(tmp_path):
    model = tiny_model("llama")
    save_file(
        {"x.lora_A.weight": torch.zeros(2, 4), "x.lora_B.weight": torch.zeros(4, 2)},
        str(tmp_path / "x.safetensors"),
    )
    with pytest.raises(interp.CorruptFileError, match="not a linear layer"):
        merge_lora(model.model, tmp_path / "x.safetensors", scale=1.0)
    name = "model.layers.0.self_attn.q_proj"
    save_file(
        {f"{name}.lora_A.weight": torch.zeros(2, 5), f"{name}.lora_B.weight": torch.zeros(64, 2)},
        str(tmp_path / "y.safetensors"),
    )
    with pytest.raises(interp.CorruptFileError, match="adapter gives"):
        merge_lora(model.model, tmp_path / "y.safetensors", scale=1.0)
