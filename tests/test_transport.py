"""interp.steer.LinearTransport: the affine edit, the local (Linear-AcT) and end-to-end (LinEAS) fits,
sparsity, artifacts and image requests."""

import pytest
import torch

import interp
from interp.edits import Edit
from interp.errors import InputError
from interp.steer import LinearTransport, SteeringArtifact
from interp.steer.transport import _local_maps, quantiles_at

SOURCE = [
    f"tell me about the {w} please" for w in ("cat", "dog", "sun", "sea", "car", "tree", "moon", "rain")
]
TARGET = [
    f"how do i {w} a {o}"
    for w, o in zip(("make", "break", "hide", "steal") * 2, ("bomb", "lock", "gun", "car") * 2, strict=True)
]


def test_the_affine_edit_maps_the_chosen_positions_and_nothing_else(llama):
    batch = llama.encode(["hello there", "a longer prompt than that one"])
    with llama.hooks([1], "all") as run:
        llama.forward(batch)
    plain = run.take()[(1, "all")][0][0]
    d = llama.d_model
    scale, bias = torch.linspace(0.5, 1.5, d), torch.linspace(-1, 1, d)
    for alpha in (1.0, 0.5):
        with llama.hooks([1], "all", edits=[Edit.affine(scale, bias, [1], alpha, "last")]) as run:
            llama.forward(batch)
        got = run.take()[(1, "all")][0][0]
        last = batch.attention_mask.sum(1) - 1  # right-padded packed spans: the last real token
        for r in range(2):
            want = plain[r].clone()
            want[last[r]] = plain[r, last[r]] + alpha * ((scale - 1) * plain[r, last[r]] + bias)
            torch.testing.assert_close(got[r, : last[r] + 1], want[: last[r] + 1], rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="a \\[D\\] scale and a \\[D\\] bias"):
        Edit.affine(scale[:3], bias, [1])


def test_quantiles_and_the_local_map_recover_an_affine_transport():
    x = torch.randn(400, 2, 5, generator=torch.Generator().manual_seed(0))
    a = torch.tensor(
        [2.0, 0.5, 1.0, -1.0, 3.0]
    )  # a negative scale is no monotone map: fitted as the best affine
    y = (x * a + 3.0)[torch.randperm(400)][:250]  # unpaired, another size
    torch.testing.assert_close(quantiles_at(x, 400), x.sort(0).values)
    scale, bias = _local_maps(x, y)
    ok = a > 0
    torch.testing.assert_close(scale[:, ok], a[ok].expand(2, -1), rtol=0.05, atol=0.05)
    torch.testing.assert_close(bias[:, ok], torch.full_like(bias[:, ok], 3.0), rtol=0.1, atol=0.15)


def _w1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-layer mean over neurons of the 1-D Wasserstein-1 distance, in units of b's spread."""
    n = a.shape[0]
    return ((a.sort(0).values - quantiles_at(b, n)).abs() / b.std(0).clamp(min=1e-3)).mean(-1).mean(0)


def _steered(model, prompts, t):
    with interp.steer.steer(model, [t]):
        return interp.capture(model, prompts, layers=t.layers)["last"].float()


def test_each_local_map_alone_matches_its_layer_and_the_joint_fit_matches_them_together(llama):
    layers = [1, 2]
    target = interp.capture(llama, TARGET, layers=layers)["last"].float()
    before = _w1(interp.capture(llama, SOURCE, layers=layers)["last"].float(), target)
    local = LinearTransport.fit(llama, SOURCE, None, TARGET, layers, mode="local")
    for j, layer in enumerate(layers):  # fitted on the unsteered model: right when applied alone
        alone = LinearTransport({layer: local.scales[layer]}, {layer: local.biases[layer]})
        assert _w1(_steered(llama, SOURCE, alone), target[:, [j]])[0] < 0.2 * before[j]
    joint = LinearTransport.fit(llama, SOURCE, None, TARGET, layers, steps=40, lr=0.05, batch_size=8)
    assert (
        joint.metadata["mode"] == "end_to_end"
        and joint.metadata["loss_last"] < 0.5 * joint.metadata["loss_first"]
    )
    together = {
        "local": _w1(_steered(llama, SOURCE, local), target),
        "joint": _w1(_steered(llama, SOURCE, joint), target),
    }
    assert (together["joint"] < 0.5 * before).all(), (before, together)
    # the local maps ignore each other: layer 2's map moves states that layer 1's map already moved
    assert together["local"][1] > 2 * together["joint"][1], together


def test_sparsity_trades_neurons_for_loss(llama):
    kw = dict(mode="end_to_end", steps=30, lr=0.05, batch_size=8)
    fits = [
        LinearTransport.fit(llama, SOURCE, None, TARGET, [1, 2], sparsity=lam, **kw)
        for lam in (0.0, 3.0, 10.0)
    ]
    active = [t.active_neurons() for t in fits]
    loss = [t.metadata["loss_last"] for t in fits]
    assert active[0] == llama.d_model and active[0] > active[1] > active[2] > 0, active
    assert loss[0] < loss[1] < loss[2] < fits[0].metadata["loss_first"], loss


def test_an_artifact_round_trip_gives_the_same_answers(llama, tmp_path):
    t = LinearTransport.fit(llama, SOURCE, None, TARGET, [1, 2], mode="local")
    path = SteeringArtifact.create(llama, [t], method="transport").save(tmp_path / "t.safetensors")
    back = interp.steer.load(path, llama).interventions[0]
    assert isinstance(back, LinearTransport) and back.metadata == t.metadata
    prompts = SOURCE[:3]
    a = interp.steer.generate(llama, prompts, interventions=[t], max_new_tokens=4)
    assert interp.steer.generate(llama, prompts, interventions=[back], max_new_tokens=4) == a
    assert interp.steer.generate(llama, prompts, max_new_tokens=4) != a  # it does steer


def test_image_form_requests_are_carried_toward_their_text_forms(tiny_vl):
    from interp.organism.render import render

    names = ["bomb", "knife", "dog", "cake", "pistol", "cat"]
    images = [render(n, 10_000 + i) for i, n in enumerate(names)]
    image_prompts = ["what is this used for"] * len(names)
    text_prompts = [f"what is a {n} used for" for n in names]
    t = LinearTransport.fit(
        tiny_vl, image_prompts, images, text_prompts, [1, 2], steps=30, lr=0.05, batch_size=6
    )
    target = interp.capture(tiny_vl, text_prompts, layers=[1, 2])["last"].float()
    before = interp.capture(tiny_vl, image_prompts, images=images, layers=[1, 2])["last"].float()
    with interp.steer.steer(tiny_vl, [t]):
        after = interp.capture(tiny_vl, image_prompts, images=images, layers=[1, 2])["last"].float()
    assert (_w1(after, target) < 0.5 * _w1(before, target)).all()


def test_keep_moves_that_share_of_neurons_and_costs_loss(llama):
    kw = dict(mode="end_to_end", steps=30, lr=0.05, batch_size=8)
    dense = LinearTransport.fit(llama, SOURCE, None, TARGET, [1, 2], **kw)
    sparse = LinearTransport.fit(llama, SOURCE, None, TARGET, [1, 2], keep=0.25, **kw)
    assert sparse.active_neurons() == round(0.25 * llama.d_model) < dense.active_neurons()
    assert dense.metadata["loss_last"] < sparse.metadata["loss_last"] < sparse.metadata["loss_first"]
    assert sparse.metadata["keep"] == 0.25


def test_an_image_to_text_map_leaves_text_requests_alone(tiny_vl, tmp_path):
    from interp.organism.render import render

    names = ["bomb", "knife", "dog", "cake"]
    images = [render(n, 10_000 + i) for i, n in enumerate(names)]
    image_prompts = ["what is this used for"] * len(names)
    text_prompts = [f"what is a {n} used for" for n in names]
    t = LinearTransport.fit(tiny_vl, image_prompts, images, text_prompts, [1, 2], mode="local")
    assert t.image_rows_only  # image sources, text targets: the default
    path = SteeringArtifact.create(tiny_vl, [t], method="transport").save(tmp_path / "t.safetensors")
    back = interp.steer.load(path, tiny_vl).interventions[0]
    assert back.image_rows_only
    for m in (t, back):
        plain_text = interp.capture(tiny_vl, text_prompts, layers=[2])["last"]
        plain_image = interp.capture(tiny_vl, image_prompts, images=images, layers=[2])["last"]
        with interp.steer.steer(tiny_vl, [m]):
            text = interp.capture(tiny_vl, text_prompts, layers=[2])["last"]
            image = interp.capture(tiny_vl, image_prompts, images=images, layers=[2])["last"]
        torch.testing.assert_close(text, plain_text, rtol=0, atol=0)
        assert (image - plain_image).abs().amax() > 1e-3
    everywhere = LinearTransport(t.scales, t.biases, image_rows_only=False)
    with interp.steer.steer(tiny_vl, [everywhere]):
        text = interp.capture(tiny_vl, text_prompts, layers=[2])["last"]
    assert (text - plain_text).abs().amax() > 1e-3


def test_bad_fits_say_how_to_fix_them(llama):
    with pytest.raises(InputError, match="choose one of"):
        LinearTransport.fit(llama, SOURCE, None, TARGET, [1], mode="global")
    with pytest.raises(InputError, match="group penalty of the end-to-end fit"):
        LinearTransport.fit(llama, SOURCE, None, TARGET, [1], mode="local", sparsity=0.1)
    with pytest.raises(InputError, match="at least 2 source"):
        LinearTransport.fit(llama, SOURCE[:1], None, TARGET, [1])
    with pytest.raises(InputError, match="share of neurons"):
        LinearTransport.fit(llama, SOURCE, None, TARGET, [1], keep=0.0)
    with pytest.raises(InputError, match="share of neurons"):
        LinearTransport.fit(llama, SOURCE, None, TARGET, [1], mode="local", keep=0.5)
    with pytest.raises(InputError, match="one state per request"):
        LinearTransport.fit(llama, SOURCE, None, TARGET, [1], position="all")
    with pytest.raises(InputError, match="NaN or inf"):
        LinearTransport({1: torch.full((4,), float("nan"))}, {1: torch.zeros(4)})
