import pytest
import torch

import interp
from interp.capture import ActivationShards
from interp.capture_job import CaptureJob


def test_shapes_labels_and_batching(llama, prompts):
    one = interp.capture(
        llama,
        prompts,
        positions=["last", "mean", -1],
        layers=[0, -1],
        batch_size=1,
        labels=["x", "y", "x"],
        prompt_ids=["p", "q", "r"],
    )
    many = interp.capture(llama, prompts, positions=["last", "mean", -1], layers=[0, 3], batch_size=8)
    assert one["last"].shape == (3, 2, 64) and one.layers == [0, 3]
    torch.testing.assert_close(one["last"], one["tok-1"])
    torch.testing.assert_close(one["last"], many["last"], rtol=1e-4, atol=1e-5)
    assert one.prompt_ids == ["p", "q", "r"] and one.labels == ["x", "y", "x"]
    assert one.fingerprint == llama.fingerprint


def test_bad_arguments(llama, prompts):
    with pytest.raises(interp.InputError, match="empty"):
        interp.capture(llama, [])
    with pytest.raises(interp.LayerIndexError):
        interp.capture(llama, prompts, layers=[10])
    with pytest.raises(interp.InputError, match="backend"):
        interp.capture(llama, prompts, backend="jax")
    with pytest.raises(interp.InputError, match="one entry per prompt"):
        interp.capture(llama, prompts, labels=["a"])


def test_nonfinite_states_are_an_error(llama, prompts):
    edit = interp.Edit.add(torch.ones(64), layers=[0])
    edit.vector = torch.full((64,), float("inf"))
    with llama.hooks(edits=[edit]):
        with pytest.raises(interp.InputError, match="NaN/inf"):
            interp.capture(llama, prompts, layers=[1])


def test_sharded_capture_resumes_without_recomputing(tmp_path, llama, monkeypatch):
    prompts = [f"prompt number {i}" for i in range(10)]
    full = interp.capture(llama, prompts, layers=[1, 2], batch_size=3)
    calls = []
    original = CaptureJob.run

    def counting(self, start, stop, *args):
        calls.append(start)
        if len(calls) == 3:
            raise KeyboardInterrupt  # interrupted during the third shard
        return original(self, start, stop, *args)

    monkeypatch.setattr(CaptureJob, "run", counting)
    with pytest.raises(KeyboardInterrupt):
        interp.capture(llama, prompts, layers=[1, 2], batch_size=3, out_dir=tmp_path, shard_size=4)
    assert sorted(p.name for p in tmp_path.glob("shard_*")) == [
        "shard_00000.safetensors",
        "shard_00001.safetensors",
    ]
    calls.clear()
    monkeypatch.setattr(CaptureJob, "run", lambda self, *a: (calls.append(a[0]), original(self, *a))[1])
    shards = interp.capture(llama, prompts, layers=[1, 2], batch_size=3, out_dir=tmp_path, shard_size=4)
    assert calls == [8]  # only the unfinished shard ran
    loaded = shards.load(model=llama)
    torch.testing.assert_close(loaded["last"], full["last"], rtol=1e-4, atol=1e-5)
    assert loaded.prompt_ids == [str(i) for i in range(10)]
    assert ActivationShards.open(tmp_path).load(layers=[2])["last"].shape == (10, 1, 64)

    # a shard cut off mid-write is recomputed, not trusted
    (tmp_path / "shard_00001.safetensors").write_bytes(b"garbage")
    calls.clear()
    interp.capture(llama, prompts, layers=[1, 2], batch_size=3, out_dir=tmp_path, shard_size=4)
    assert calls == [4]


def test_sharded_capture_refuses_a_different_job(tmp_path, llama):
    interp.capture(llama, ["a", "b"], layers=[1], out_dir=tmp_path, shard_size=1)
    with pytest.raises(interp.InputError, match="different prompts, model or settings"):
        interp.capture(llama, ["a", "c"], layers=[1], out_dir=tmp_path, shard_size=1)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(interp.CorruptFileError, match="not valid JSON"):
        ActivationShards.open(tmp_path)


def test_progress_bar_on_long_runs(llama, capsys):
    interp.capture(llama, ["a", "b"], layers=[0], progress=True)
    assert "capture" in capsys.readouterr().err


def test_a_mixed_image_and_text_list_is_grouped_and_comes_back_in_order(tiny_vl, image, tmp_path):
    # a processor batch cannot mix image and text-only prompts; capture runs them apart
    prompts = ["what is this", "a text-only question", "and this one?", "another text question here"]
    imgs = [image, None, image, None]
    acts = interp.capture(
        tiny_vl, prompts, images=imgs, positions=["last", "all"], layers=[0, 1], batch_size=3
    )
    for i, (q, im) in enumerate(zip(prompts, imgs, strict=True)):
        alone = interp.capture(
            tiny_vl, [q], images=[im] if im is not None else None, positions=["last", "all"], layers=[0, 1]
        )
        torch.testing.assert_close(acts["last"][i], alone["last"][0], atol=1e-4, rtol=1e-4)
        n = int(alone.masks["all"][0].sum())  # the row's real tokens, wherever the padding went
        assert int(acts.masks["all"][i].sum()) == n
        torch.testing.assert_close(
            acts["all"][i][:, acts.masks["all"][i]],
            alone["all"][0][:, alone.masks["all"][0]],
            atol=1e-4,
            rtol=1e-4,
        )
    # sharded: each shard groups its own rows
    shards = interp.capture(tiny_vl, prompts, images=imgs, layers=[0, 1], out_dir=tmp_path, shard_size=3)
    torch.testing.assert_close(shards.load()["last"], acts["last"])
