"""interp.capture(..., engine="ray"): the shards of a local capture, from workers that load the model
themselves; a worker killed mid-shard; resuming after the driver stopped; bad specs and directories."""

import contextlib
import functools
import json

import numpy as np
import pytest
import torch
from PIL import Image

import interp
from interp.errors import InputError
from interp.testing import dies_once, tiny_model

ray = pytest.importorskip("ray")

PROMPTS = [f"prompt {i}: " + "word " * (i % 7) for i in range(40)]
LABELS = ["harmful" if i % 3 else "harmless" for i in range(40)]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _same(a: interp.ActivationShards, b: interp.ActivationShards, atol: float = 1e-6) -> None:
    assert a.manifest["key"] == b.manifest["key"] and a.manifest["shards"] == b.manifest["shards"]
    x, y = a.load(), b.load()
    assert x.prompt_ids == y.prompt_ids and x.labels == y.labels and x.layers == y.layers
    assert x.fingerprint == y.fingerprint and x.metadata == y.metadata
    for k in x.tensors:
        torch.testing.assert_close(x.tensors[k], y.tensors[k], rtol=0, atol=atol)
    for k in x.masks:
        assert torch.equal(x.masks[k], y.masks[k])


def _local(family, tmp_path, **kw):
    return interp.capture(tiny_model(family), PROMPTS, labels=LABELS, out_dir=tmp_path / "local", **kw)


def test_two_workers_give_the_shards_of_a_local_capture(tmp_path):
    kw = dict(positions=["last", "mean"], shard_size=8, batch_size=3)
    spec = interp.ModelSpec(factory=functools.partial(tiny_model, "llama"))
    shards = interp.capture(
        spec, PROMPTS, labels=LABELS, out_dir=tmp_path / "ray", engine="ray", workers=2, **kw
    )
    _same(shards, _local("llama", tmp_path, **kw))
    assert len(shards) == len(PROMPTS) and len(shards.shard_paths) == 5


def test_image_prompts_on_a_tiny_llava(tmp_path):
    img = Image.fromarray((np.random.RandomState(0).rand(40, 48, 3) * 255).astype("uint8"))
    kw = dict(images=[img] * len(PROMPTS), positions=["last", "image_mean"], shard_size=16, batch_size=4)
    spec = functools.partial(tiny_model, "llava")  # a bare factory is a spec too
    shards = interp.capture(
        spec, PROMPTS, labels=LABELS, out_dir=tmp_path / "ray", engine="ray", workers=2, **kw
    )
    _same(shards, _local("llava", tmp_path, **kw))


def test_a_worker_killed_mid_shard_loses_and_duplicates_nothing(tmp_path):
    marker = tmp_path / "died"
    spec = interp.ModelSpec(factory=functools.partial(dies_once, str(marker), after_forwards=1))
    kw = dict(shard_size=10, batch_size=4)  # 3 forwards a shard: the death is inside one
    shards = interp.capture(
        spec, PROMPTS, labels=LABELS, out_dir=tmp_path / "ray", engine="ray", workers=2, **kw
    )
    assert marker.exists()  # a worker did die
    _same(shards, _local("llama", tmp_path, **kw))
    assert sorted(shards.manifest["done"]) == shards.manifest["shards"]  # each shard once


def test_a_rerun_after_the_driver_stopped_computes_only_what_is_missing(tmp_path):
    out = tmp_path / "ray"
    spec = functools.partial(tiny_model, "llama")
    kw = dict(labels=LABELS, out_dir=out, engine="ray", workers=2, shard_size=8)
    first = interp.capture(spec, PROMPTS, **kw)
    kept = {p.name: p.stat().st_mtime_ns for p in first.shard_paths}
    # as the driver leaves it when it dies: a shard never written, one cut off mid-write, the manifest behind
    (out / "shard_00002.safetensors").unlink()
    (out / "shard_00004.safetensors").write_bytes((out / "shard_00004.safetensors").read_bytes()[:100])
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["done"] = manifest["done"][:1]
    (out / "manifest.json").write_text(json.dumps(manifest))
    again = interp.capture(spec, PROMPTS, **kw)
    redone = {p.name for p in again.shard_paths if p.stat().st_mtime_ns != kept[p.name]}
    assert redone == {"shard_00002.safetensors", "shard_00004.safetensors"}
    _same(again, _local("llama", tmp_path, shard_size=8))


def test_a_worker_that_cannot_load_the_model_fails_the_call_at_start(tmp_path):
    with pytest.raises(InputError, match="could not load the model"):
        interp.capture("/no/such/model", PROMPTS, out_dir=tmp_path / "x", engine="ray", workers=1)
    assert not (tmp_path / "x" / "manifest.json").exists()


def test_a_directory_of_other_prompts_is_refused(tmp_path):
    spec = functools.partial(tiny_model, "llama")
    interp.capture(spec, PROMPTS[:8], out_dir=tmp_path / "ray", engine="ray", workers=1, shard_size=4)
    with pytest.raises(InputError, match="different prompts, model or settings"):
        interp.capture(spec, PROMPTS[:9], out_dir=tmp_path / "ray", engine="ray", workers=1, shard_size=4)


def test_an_error_in_the_prompts_is_the_error_a_local_capture_gives(tmp_path):
    img = Image.new("RGB", (40, 48))
    spec = functools.partial(tiny_model, "llava")
    with pytest.raises(InputError, match="no image tokens"):  # image_mean of prompts without images
        interp.capture(
            spec,
            PROMPTS[:4],
            images=[img, None, img, None],
            positions="image_mean",
            out_dir=tmp_path / "x",
            engine="ray",
            workers=1,
            shard_size=4,
        )


def test_bad_calls_say_how_to_fix_them(tmp_path, llama):
    with pytest.raises(InputError, match="pass out_dir"):
        interp.capture("default", PROMPTS, engine="ray")
    with pytest.raises(InputError, match="cannot be sent to workers"):
        interp.capture(llama, PROMPTS, out_dir=tmp_path, engine="ray")
    with pytest.raises(InputError, match="unknown engine"):
        interp.capture(llama, PROMPTS, engine="spark")
    with pytest.raises(InputError, match="a name or spec is for engine='ray'"):
        interp.capture("default", PROMPTS)


@pytest.mark.slow
@contextlib.contextmanager
def threads(n: int):
    """torch's thread count for the block: the workers run one thread each (Ray's default for one CPU),
    and on a CPU states equal bit for bit only at the same thread count (matrix kernels split their
    sums by thread; SmolLM2's states differ by up to about 1e-3 between 1 and 2 threads on AVX-512)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_two_workers_on_smollm2_equal_a_local_capture(tmp_path, smollm):
    prompts = PROMPTS[:12]
    kw = dict(layers=[3, 10, 20], shard_size=4, batch_size=4)
    shards = interp.capture("default", prompts, out_dir=tmp_path / "ray", engine="ray", workers=2, **kw)
    with threads(1):
        _same(shards, interp.capture(smollm, prompts, out_dir=tmp_path / "local", **kw), atol=0)


def test_the_locate_reports_captures_on_ray_give_the_same_numbers(tmp_path):
    # a model loaded by interp.load_model carries its spec: the workers load it the same way
    from interp.locate.report import capture_rows

    model = interp.load_model("default")
    assert interp.ModelSpec.of(model) == interp.ModelSpec("default")
    kw = dict(labels=LABELS[:20], positions="last", batch_size=4)
    with threads(1):  # the workers' thread count
        here = capture_rows(model, PROMPTS[:20], "local", 1, **kw)
    there = capture_rows(model, PROMPTS[:20], "ray", 2, **kw)  # shards of 12 and 8: whole batches
    assert here.prompt_ids == there.prompt_ids and here.labels == there.labels
    torch.testing.assert_close(here["last"], there["last"], rtol=0, atol=0)
