"""The real loading path (hub names resolve to local directories the same way), on tiny saved models."""

import pytest
import torch

import interp
from interp.testing import tiny_model


def test_load_local_text_model_directory(tmp_path, prompts):
    tiny = tiny_model("llama")
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    model = interp.load_model(str(tmp_path), dtype="float32")
    assert model.adapter.family == "llama" and model.tokenizer.padding_side == "left"
    torch.testing.assert_close(interp.capture(model, prompts)["last"], interp.capture(tiny, prompts)["last"])
    assert model.fingerprint.weights_digest == tiny.fingerprint.weights_digest
    bf16 = interp.load_model(str(tmp_path), dtype="bfloat16", chat_template=False)
    assert bf16.dtype == torch.bfloat16 and bf16.encode(["hi"]).texts == ["hi"]


def test_load_local_vision_language_directory(tmp_path, image):
    tiny = tiny_model("llava")
    tiny.model.save_pretrained(tmp_path)
    tiny.processor.save_pretrained(tmp_path)
    model = interp.load_model(str(tmp_path))
    assert model.adapter.kind == "image" and model.processor is not None
    a = interp.capture(model, ["what is this?"], images=[image], positions="image_mean")
    b = interp.capture(tiny, ["what is this?"], images=[image], positions="image_mean")
    torch.testing.assert_close(a["image_mean"], b["image_mean"])


def test_unknown_family_fails_before_loading_weights(tmp_path):
    from transformers import BertConfig

    BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    ).save_pretrained(tmp_path)
    with pytest.raises(interp.UnknownModelFamilyError, match="model_type='bert'.*Known families"):
        interp.load_model(str(tmp_path))


def test_bad_names():
    with pytest.raises(interp.InputError, match="does not exist"):
        interp.load_model("/nowhere/model.gguf")
    with pytest.raises(interp.InputError, match="could not load a config"):
        interp.load_model("/nowhere/at/all")
    with pytest.raises(interp.InputError, match="unknown dtype"):
        interp.load_model("default", dtype="float7")


@pytest.mark.parametrize("value", ["off", "on", "false", 0, None])
def test_chat_template_takes_only_the_documented_values(tmp_path, value):
    # issue 23: any string other than "auto" was taken as True, so "off" wrapped templated prompts in a
    # second template; the value is checked before any weights are read
    with pytest.raises(interp.InputError, match=r"chat_template=.*'auto', True, False"):
        interp.load_model("/nowhere/at/all", chat_template=value)
    tiny = tiny_model("llama")
    with pytest.raises(interp.InputError, match=r"chat_template="):
        interp.wrap(tiny.model, tiny.tokenizer, chat_template=value)
    with pytest.raises(interp.InputError, match=r"chat_template="):
        tiny.encode(["hi"], chat_template=value if value is not None else "None")
    assert tiny.encode(["hi"], chat_template=False).texts == ["hi"]


def test_named_models_resolve_through_the_registry(monkeypatch):
    from interp.models import registry

    monkeypatch.setitem(registry.NAMED_MODELS, "fake-organism", "types:SimpleNamespace")
    got = interp.load_model("fake-organism", adapter="runs/x")  # keywords reach the loader
    assert (got.adapter, got.chat_template, got.device) == ("runs/x", "auto", "cpu")
    with pytest.raises(interp.InputError, match="module:function"):
        interp.register_model("bad", "no_colon_here")
    monkeypatch.setitem(registry.NAMED_MODELS, "missing", "no_such_package_xyz:load")
    with pytest.raises(interp.InputError, match="cannot be imported"):
        interp.load_model("missing")
    assert registry.NAMED_MODELS["organism"] == "interp.organism:load_organism"


@pytest.mark.slow
def test_loading_prints_nothing():
    # no GGUF de-quantization bar, no "Loading weights" bar: one quiet line in a notebook
    import subprocess
    import sys

    code = "import interp; m = interp.load_model('default'); print('loaded', m.n_layers)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "loaded 30"
    assert "Converting" not in run.stderr and "Loading weights" not in run.stderr, run.stderr[-500:]
    from transformers.utils import logging as hf_logging

    interp.load_model("default")
    assert hf_logging.is_progress_bar_enabled()  # the setting is back after loading
