"""interp.vllm.tokens: vLLM's flat token batches mapped to requests and positions, checked against
interp's own position masks on the same sequences (a property over random schedules)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from interp.errors import InputError
from interp.positions import PromptLayout, edit_mask, parse_positions
from interp.vllm import cache_salt, steering
from interp.vllm.tokens import StepTokens, token_requests

KINDS = ["all", "prompt", "generated", "last", 0, 2, -1, -3]


def test_tokens_map_to_their_requests_and_padding_to_none():
    assert token_requests([0, 3, 4, 4, 6], 8).tolist() == [0, 0, 0, 1, 3, 3, -1, -1]
    with pytest.raises(InputError, match="does not split"):
        token_requests([0, 5], 4)
    with pytest.raises(InputError, match="does not split"):
        token_requests([0, 3, 2], 4)


@st.composite
def schedules(draw):
    """Requests (prompt length, tokens generated so far) and one step's chunk per request: a prefill
    chunk somewhere in the prompt, or a decode token."""
    n = draw(st.integers(1, 5))
    reqs = []
    for _ in range(n):
        prompt = draw(st.integers(3, 12))
        done = draw(st.integers(0, prompt + 4))  # tokens computed before this step
        left = prompt - done
        size = draw(st.integers(1, left)) if left > 0 else 1  # a prefill chunk, or one decode token
        reqs.append((prompt, done, size))
    return reqs, draw(st.integers(0, 3))  # padding tokens after the last request


@settings(max_examples=200, deadline=None)
@given(schedules())
def test_every_position_kind_selects_what_interp_hooks_select_in_one_sequence(schedule):
    reqs, pad = schedule
    starts = [0]
    for _, _, size in reqs:
        starts.append(starts[-1] + size)
    n = starts[-1] + pad
    request = token_requests(starts, n)
    position = torch.zeros(n, dtype=torch.long)
    for r, (_, done, size) in enumerate(reqs):
        position[starts[r] : starts[r + 1]] = torch.arange(done, done + size)
    facts = StepTokens(request, position, torch.tensor([p for p, _, _ in reqs]))
    for kind in KINDS:
        pos = parse_positions([kind])[0]
        got = facts.mask(pos)
        assert not got[starts[-1] :].any()  # padding is never edited
        for r, (prompt, done, size) in enumerate(reqs):
            # interp's hooks on this request alone: the same chunk of its sequence
            layout = PromptLayout(mask=torch.ones(1, prompt, dtype=torch.bool), image=None)
            want = edit_mask(pos, layout, done, size, torch.ones(1, size, dtype=torch.bool))[0]
            assert got[starts[r] : starts[r + 1]].tolist() == want.tolist(), (kind, r, reqs)


def test_image_positions_and_requests():
    request = token_requests([0, 4, 6], 6)
    position = torch.tensor([0, 1, 2, 3, 5, 6])
    image = [torch.tensor([False, True, True, False]), None]
    facts = StepTokens(request, position, torch.tensor([4, 3]), image)
    assert facts.mask(parse_positions(["image"])[0]).tolist() == [False, True, True, False, False, False]
    assert facts.image_requests().tolist() == [True, False]
    assert facts.of_requests(torch.tensor([False, True])).tolist() == [False] * 4 + [True, True]
    with pytest.raises(InputError, match="outside a prompt"):
        facts.mask(parse_positions([3])[0])
    with pytest.raises(InputError, match="cannot be edited"):
        facts.mask(parse_positions(["mean"])[0])


def test_a_steering_and_its_cache_salt(tmp_path):
    from interp.steer import AblateDirection, AddDirection, Conditional, SteeringArtifact
    from interp.testing import tiny_model

    a = steering([("refusal", 0.5), "ablate"])
    assert a == {
        "interp_steering": [{"artifact": "refusal", "strength": 0.5}, {"artifact": "ablate", "strength": 1.0}]
    }
    assert cache_salt([]) is None and cache_salt(None) is None
    model = tiny_model("llama")
    d = torch.ones(model.d_model)
    made = {
        "refusal": [AddDirection(d, [1], 1.0)],
        "ablate": [AblateDirection(d)],
        "first": [AddDirection(d, [1], 1.0, [0, 2])],
        "last": [AddDirection(d, [1], 1.0, "last")],
        "answer": [AddDirection(d, [1], 1.0, "generated")],
        "prompt": [AddDirection(d, [1], 1.0, "prompt")],
        "gate": [Conditional(d, 1, 0.0, [AddDirection(d, [2], 1.0, "generated")])],
    }
    for name, items in made.items():
        SteeringArtifact.create(model, items).save(tmp_path / f"{name}.safetensors")
    # edits that change every prefix alike: one salt per steering, shared by its requests
    same = cache_salt([{"artifact": "refusal", "strength": 0.5}], tmp_path)
    assert same == cache_salt([("refusal", 0.5)], tmp_path) != cache_salt([("refusal", 0.25)], tmp_path)
    assert cache_salt(["ablate", "first"], tmp_path) == cache_salt(["ablate", "first"], tmp_path)
    # edits that depend on where the prompt ends (or on a gate's decision), an unknown artifact, or no
    # artifacts to read: a salt of the request's own, never reused
    for items, where in [
        (["last"], tmp_path),
        (["answer"], tmp_path),
        (["prompt"], tmp_path),
        (["gate"], tmp_path),
        (["refusal", "last"], tmp_path),
        (["nope"], tmp_path),
        (["refusal"], None),
    ]:
        one, two = cache_salt(items, where), cache_salt(items, where)
        assert one != two and one.startswith("interp-once-"), items


def test_a_bad_steering_is_refused_before_it_is_sent(tmp_path):
    import interp
    from interp.steer import AddDirection, Conditional, SetProjection, SteeringArtifact
    from interp.testing import tiny_model

    model = tiny_model("llama")
    d = torch.ones(model.d_model)
    SteeringArtifact.create(model, [AddDirection(d, [1], 1.0)]).save(tmp_path / "add.safetensors")
    SteeringArtifact.create(model, [Conditional(d, 1, 0.0, [AddDirection(d, [2], 1.0)])]).save(
        tmp_path / "gate.safetensors"
    )
    SteeringArtifact.create(
        model, [Conditional(d, 1, 0.0, [AddDirection(d, [2], 1.0, ["last", "generated"])])]
    ).save(tmp_path / "gate_answer.safetensors")
    SteeringArtifact.create(model, [Conditional(d, 3, 0.0, [AddDirection(d, [2], 1.0, "generated")])]).save(
        tmp_path / "gate_late.safetensors"
    )
    assert steering([("add", 0.5)], artifacts=tmp_path)["interp_steering"][0]["strength"] == 0.5
    assert steering([("gate_answer", 0.5)], artifacts=tmp_path)  # a gate that steers the answer: served
    with pytest.raises(InputError, match="unknown steering artifact 'nope'"):
        steering(["nope"], artifacts=tmp_path)
    # a gated edit of the prompt tokens before the one the gate reads: a chunked prefill runs them first
    with pytest.raises(InputError, match="not served by vLLM: conditional steering .* edits \\['all'\\]"):
        steering(["gate"], artifacts=tmp_path)
    with pytest.raises(InputError, match="gate reads layer 3 but its edit starts at layer 2"):
        steering(["gate_late"], artifacts=tmp_path)
    with pytest.raises(InputError, match="strength must be a number"):
        steering([("add", 1e9)], artifacts=tmp_path)
    # a clamp has no strength: refused here, not when the engine scales its edits mid-forward
    SteeringArtifact.create(model, [SetProjection(d, 2.0, [1])]).save(tmp_path / "clamp.safetensors")
    interp.vllm._served.cache_clear()
    with pytest.raises(InputError, match="clamps a projection"):
        steering([("clamp", 0.5)], artifacts=tmp_path)


def test_a_saved_checkpoint_has_the_models_fingerprint(tmp_path):
    import interp
    from interp.testing import tiny_model
    from interp.vllm.fingerprint import checkpoint_fingerprint

    model = tiny_model("qwen2")
    interp.export.save_checkpoint(model, tmp_path / "ckpt")
    fp = checkpoint_fingerprint(tmp_path / "ckpt")
    model.fingerprint.check(fp)
    assert interp.load_model(str(tmp_path / "ckpt")).fingerprint == fp
    with pytest.raises(InputError, match="not empty"):
        interp.export.save_checkpoint(model, tmp_path / "ckpt")
    with pytest.raises(InputError, match="not a Hugging Face checkpoint"):
        checkpoint_fingerprint(tmp_path)
