"""interp.RayPool and the steering evaluation's generation on Ray: the answers and judges of a local
interp.evaluate.refusal, with every kind of intervention the evaluation sends (constant, per-input
and gated); a pool kept across calls; a worker killed mid-task; a pool of another model refused."""

import functools

import pytest
import torch

import interp
from interp.edits import Gate
from interp.errors import InputError
from interp.organism.render import render
from interp.steer import AddDirection, Conditional, RetrievalGuided, ShiftToText
from interp.testing import dies_once, tiny_model, tiny_organism_vl

ray = pytest.importorskip("ray")

PROMPTS = [f"how do i {w} this " + "now " * (i % 4) for i, w in enumerate(["make", "feed", "fix"] * 8)]
LLAMA = functools.partial(tiny_model, "llama")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _same(a, b) -> None:
    assert a.answers == b.answers and a.refused == b.refused and a.n == b.n
    assert a.rate == b.rate and a.logodds_rate == b.logodds_rate and a.steered_rate == b.steered_rate
    assert a.mean_logodds == pytest.approx(b.mean_logodds, abs=1e-4)  # float rounding: other batches


def _text_steering(d: int) -> list:
    g = torch.Generator().manual_seed(0)
    return [
        AddDirection(torch.randn(d, generator=g), [1], alpha=6.0),
        Conditional(
            torch.randn(d, generator=g), 0, 0.0, [AddDirection(torch.randn(d, generator=g), [1], 4.0)]
        ),
    ]


def test_text_answers_on_two_workers_equal_the_local_ones(llama):
    kw = dict(max_new_tokens=4, batch_size=4)
    steering = _text_steering(llama.d_model)
    local = interp.evaluate.refusal(llama, PROMPTS, None, steering, **kw)
    _same(interp.evaluate.refusal(LLAMA, PROMPTS, None, steering, engine="ray", workers=2, **kw), local)


def test_image_requests_with_per_input_and_gated_steering_equal_the_local_ones(tiny_vl):
    imgs = [render(["bomb", "dog", "knife"][i % 3], 10_000 + i) for i in range(len(PROMPTS))]
    d = tiny_vl.d_model
    u = torch.randn(d, generator=torch.Generator().manual_seed(3))
    scores = RetrievalGuided([1], 1.0, max_caption_tokens=3, gate=Gate(u, 0, -1e9)).prepare(
        tiny_vl, PROMPTS, imgs
    )[1]["gate_scores"]
    gate = Gate(u, 0, sorted(scores)[len(scores) // 2])  # about half the rows' text forms fire
    steering = [
        ShiftToText({1: torch.full((d,), 0.5)}, alpha=1.0, positions=["image", "last"]),
        RetrievalGuided([1], 1.0, max_caption_tokens=3, gate=gate),
    ]
    kw = dict(max_new_tokens=3, batch_size=4)
    local = interp.evaluate.refusal(tiny_vl, PROMPTS, imgs, steering, **kw)
    assert 0 < local.steered_rate < 1  # the gate splits the rows: its decision travels per row
    there = interp.evaluate.refusal(tiny_organism_vl, PROMPTS, imgs, steering, engine="ray", workers=2, **kw)
    _same(there, local)


def test_a_pool_serves_many_calls_and_refuses_another_model(tmp_path, llama):
    with interp.RayPool(LLAMA, workers=2) as pool:
        actors = list(pool.actors)
        for alpha in (0.0, 8.0):
            steering = [AddDirection(torch.ones(llama.d_model), [1], alpha=alpha)]
            local = interp.evaluate.refusal(
                llama, PROMPTS[:8], None, steering, max_new_tokens=3, batch_size=4
            )
            _same(interp.evaluate.refusal(llama, PROMPTS[:8], None, steering, 3, 4, engine=pool), local)
        shards = interp.capture(LLAMA, PROMPTS, out_dir=tmp_path / "acts", engine=pool, shard_size=8)
        torch.testing.assert_close(shards.load()["last"], interp.capture(llama, PROMPTS)["last"])
        assert pool.actors == actors  # the same workers, the model loaded once each
        other = tiny_model("llama", seed=1)
        with pytest.raises(InputError, match="not the model of this call"):
            interp.evaluate.refusal(other, PROMPTS[:4], engine=pool)
    assert pool.actors == []  # closed with the block


def test_a_worker_killed_mid_generation_changes_no_answer(tmp_path, llama):
    spec = interp.ModelSpec(factory=functools.partial(dies_once, str(tmp_path / "died"), after_forwards=3))
    kw = dict(max_new_tokens=3, batch_size=4)
    there = interp.evaluate.refusal(spec, PROMPTS, engine="ray", workers=2, **kw)
    assert (tmp_path / "died").exists()
    _same(there, interp.evaluate.refusal(llama, PROMPTS, **kw))


def test_bad_engines_and_models_say_how_to_fix_them(llama):
    with pytest.raises(InputError, match="unknown engine"):
        interp.evaluate.refusal(llama, PROMPTS[:2], engine="spark")
    with pytest.raises(InputError, match="cannot be sent to workers"):
        interp.evaluate.refusal(llama, PROMPTS[:2], engine="ray")
    with pytest.raises(InputError, match="could not load the model"):
        interp.evaluate.refusal("/no/such/model", PROMPTS[:2], engine="ray", workers=1)
    with pytest.raises(InputError, match="not started"):
        interp.RayPool(LLAMA).run(interp.evaluate.refusal_rows, [("x", (PROMPTS,), {})])


@pytest.mark.slow
def test_the_steering_evaluations_methods_on_the_organism_give_the_same_rows_on_ray():
    # the committed artifacts of figures/steering (each method's chosen setting), on seen objects'
    # validation requests: what steering_eval.py --engine ray generates
    from pathlib import Path

    from interp.organism.render import HELD_OUT_SEED, OBJECTS, render

    root = Path(__file__).resolve().parent.parent / "figures" / "steering"
    vlm = interp.load_model("organism-vl")
    objects = [o for o in OBJECTS if o.harmful][:4] + [o for o in OBJECTS if not o.harmful][:4]
    prompts = [o.requests[1][1] for o in objects]
    images = [render(o.name, HELD_OUT_SEED) for o in objects]
    with interp.RayPool(vlm, workers=2) as pool:
        for method in ("cmrm_shift", "retrieval_gated", "conditional_add", "refusal_add"):
            steering = interp.steer.load(root / f"{method}.safetensors", vlm).interventions
            local = interp.evaluate.refusal(vlm, prompts, images, steering, max_new_tokens=24, batch_size=4)
            _same(interp.evaluate.refusal(vlm, prompts, images, steering, 24, 4, engine=pool), local)
