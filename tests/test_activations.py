import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import interp
from interp.testing import tiny_model


@pytest.fixture
def acts(llama, prompts):
    return interp.capture(llama, prompts, positions=["last", "all"], labels=["a", "b", "a"])


def test_roundtrip(tmp_path, llama, acts):
    path = acts.save(tmp_path / "acts.safetensors")
    back = interp.Activations.load(path, model=llama)
    assert back.layers == acts.layers and back.labels == acts.labels and back.prompt_ids == ["0", "1", "2"]
    torch.testing.assert_close(back["last"], acts["last"])
    torch.testing.assert_close(back.masks["all"], acts.masks["all"])
    assert back.layer(2).shape == (3, 64)
    assert back.label_array().tolist() == [0, 1, 0]
    with pytest.raises(interp.LayerIndexError):
        back.layer(7)
    with pytest.raises(KeyError, match="was not captured"):
        back["image"]


def test_refuses_another_model(tmp_path, acts):
    path = acts.save(tmp_path / "acts.safetensors")
    other = tiny_model("llama", seed=1)
    with pytest.raises(interp.FingerprintMismatchError, match="weights_digest"):
        interp.Activations.load(path, model=other)


def test_corrupt_and_inconsistent_files(tmp_path, acts):
    path = acts.save(tmp_path / "acts.safetensors")
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(interp.CorruptFileError, match="not a readable"):
        interp.Activations.load(truncated)
    with pytest.raises(interp.CorruptFileError, match="no activations file"):
        interp.Activations.load(tmp_path / "missing.safetensors")

    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["interp"])
    tensors = load_file(str(path))
    tensors["act/last"] = tensors["act/last"][:, :2].contiguous()
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={"interp": json.dumps(meta)})
    with pytest.raises(interp.CorruptFileError, match="do not match"):
        interp.Activations.load(tmp_path / "bad.safetensors")

    meta["version"] = 99
    save_file(load_file(str(path)), str(tmp_path / "new.safetensors"), metadata={"interp": json.dumps(meta)})
    with pytest.raises(interp.CorruptFileError, match="newer than this interp"):
        interp.Activations.load(tmp_path / "new.safetensors")


def test_concat_pads_spans(llama):
    a = interp.capture(llama, ["hi"], positions=["all"])
    b = interp.capture(llama, ["a much longer prompt"], positions=["all"])
    both = interp.Activations.concat([a, b])
    assert both["all"].shape[2] == b["all"].shape[2]
    assert both.masks["all"].sum(1).tolist() == [a.masks["all"].sum().item(), b.masks["all"].sum().item()]
