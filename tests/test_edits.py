"""interp.edits: each edit op at the positions it selects, its checks, the lean whole-stream path and
the pull toward a target (with a basis)."""

import pytest
import torch

import interp
from interp.edits import Edit, Gate
from interp.errors import InputError


def test_add_changes_only_the_selected_positions(llama, prompts):
    batch = llama.encode(prompts)
    v = torch.randn(64)
    with llama.hooks(capture_layers=[2], capture_positions="all") as run:
        llama.forward(batch)
    clean, _ = run.take()[(2, "all")][0]
    with llama.hooks(
        capture_layers=[2],
        capture_positions="all",
        edits=[Edit.add(v, layers=[2], alpha=2.0, positions="last")],
    ) as run:
        llama.forward(batch)
    steered, valid = run.take()[(2, "all")][0]
    diff = (steered - clean).norm(dim=-1)
    n_real = valid.sum(1)
    for row in range(3):
        last = int(n_real[row]) - 1
        torch.testing.assert_close(steered[row, last] - clean[row, last], 2.0 * v)
        assert diff[row, :last].max() == 0


def test_ablate_removes_the_direction_everywhere(llama, prompts):
    batch = llama.encode(prompts)
    d = torch.randn(64)
    with llama.hooks(
        capture_layers="all", capture_positions="all", edits=[Edit.ablate(d, layers="all")]
    ) as run:
        llama.forward(batch)
    unit = d / d.norm()
    for (layer, _), [(states, valid)] in run.take().items():
        proj = (states @ unit)[valid]
        assert proj.abs().max() < 1e-4, layer


def test_replace_sets_per_row_values(llama, prompts):
    batch = llama.encode(prompts)
    values = torch.randn(3, 64)
    with llama.hooks(capture_layers=[1], edits=[Edit.replace(values, layers=[1], positions="last")]) as run:
        llama.forward(batch)
    torch.testing.assert_close(run.take()[(1, "last")][0][0], values)


def test_edit_vector_checks():
    with pytest.raises(interp.InputError, match="NaN"):
        Edit.add(torch.tensor([1.0, float("nan")]), layers=[0])
    with pytest.raises(interp.InputError, match="zero norm"):
        Edit.ablate(torch.zeros(4))
    with pytest.raises(interp.InputError, match=r"\[D\] or \[B, D\]"):
        Edit.add(torch.zeros(1, 2, 3), layers=[0])
    for bad in (float("inf"), float("nan"), "strong"):  # issue 23: alpha=inf was accepted silently
        with pytest.raises(interp.InputError, match="alpha="):
            Edit.add(torch.ones(4), layers=[0], alpha=bad)
    with pytest.raises(interp.InputError, match="strength="):
        Edit.add(torch.ones(4), layers=[0]).scaled(float("-inf"))


@pytest.mark.parametrize("make", ["add", "ablate", "gate", "per_row"])
def test_an_edit_of_another_width_is_refused_when_attached(llama, prompts, make):
    # issue 23: a vector of the wrong size was a raw RuntimeError from inside a hook mid-generation
    v = torch.ones(llama.d_model + 1)
    edit = {
        "add": lambda: Edit.add(v, layers=[1]),
        "ablate": lambda: Edit.ablate(v, layers=[1]),
        "gate": lambda: Edit.add(torch.ones(64), layers=[1]).gated(Gate(v, layer=0, threshold=0.0)),
        "per_row": lambda: Edit.add(torch.ones(3, 32), layers=[1]),
    }[make]()
    with pytest.raises(interp.InputError, match=r"has size (65|32) but the model's hidden size is 64"):
        with llama.hooks(edits=[edit]):
            pass


@pytest.mark.parametrize(
    "make",
    [
        lambda d, pos: Edit.add(d, layers=[1, 2], alpha=3.0, positions=pos),
        lambda d, pos: Edit.add(torch.stack([d, -d, 2 * d]), layers=[1], positions=pos),
        lambda d, pos: Edit.ablate(d, layers="all", positions=pos),
        lambda d, pos: Edit.ablate(d, layers=[0], positions=pos, site="embed"),
        lambda d, pos: Edit.set_projection(d, 2.5, layers=[2], positions=pos, site="mlp"),
    ],
)
def test_whole_stream_fast_path_matches_the_masked_path(llama, prompts, make):
    """positions="all" takes the lean hook (pads edited too); "prompt"+"generated" selects the same
    real tokens through masks. Real tokens' states and greedy tokens must agree."""
    d = torch.randn(64, generator=torch.Generator().manual_seed(3))
    fast, masked = make(d, "all"), make(d, ["prompt", "generated"])
    assert fast.whole and not masked.whole
    batch = llama.encode(prompts)
    real = batch.inputs["attention_mask"].bool()
    outs = []
    for edit in (fast, masked):
        with llama.hooks(capture_layers=[2, 3], capture_positions="all", edits=[edit]) as run:
            llama.forward(batch)
        with llama.hooks(edits=[edit]):
            gen = llama.model.generate(**batch.inputs, max_new_tokens=4, do_sample=False)
        outs.append(({k: v[0][0] for k, v in run.captured.items()}, gen[:, batch.input_ids.shape[1] :]))
    for key in outs[0][0]:
        torch.testing.assert_close(outs[0][0][key], outs[1][0][key], rtol=1e-5, atol=1e-5)
    assert torch.equal(outs[0][1], outs[1][1])
    assert real.sum() < real.numel()  # the batch is left-padded


@pytest.mark.parametrize("k", [1, 2])
def test_pull_with_a_basis_moves_only_the_projections_on_it(llama, prompts, k):
    batch = llama.encode(prompts)
    target, basis = torch.randn(3, 64) * 5, torch.randn(k, 64)
    with llama.hooks(capture_layers=[1], capture_positions="all") as run:
        llama.forward(batch)
    clean = run.take()[(1, "all")][0][0]
    edit = Edit.pull(target, [1], 0.25, "last", basis=basis)
    with llama.hooks(capture_layers=[1], capture_positions="all", edits=[edit]) as run:
        llama.forward(batch)
    steered, valid = run.take()[(1, "all")][0]
    q = torch.linalg.qr(basis.T)[0]  # [64, k]
    last = valid.sum(1) - 1
    for row in range(3):
        h, h2 = clean[row, last[row]], steered[row, last[row]]
        torch.testing.assert_close(h2 @ q, 0.75 * (h @ q) + 0.25 * (target[row] @ q), rtol=1e-4, atol=1e-4)
        moved = h2 - h
        torch.testing.assert_close(moved - q @ (q.T @ moved), torch.zeros(64), atol=1e-4, rtol=0)
        assert moved.norm() > 1e-2  # it did move
        assert (steered[row, : last[row]] - clean[row, : last[row]]).abs().max() == 0


def test_pull_mean_with_a_basis_shifts_the_mean_along_it_only(llama, prompts):
    batch = llama.encode(prompts)
    target, u = torch.randn(64) * 5, torch.randn(64)
    unit = u / u.norm()
    with llama.hooks(capture_layers=[0], capture_positions="all") as run:
        llama.forward(batch)
    clean, valid = run.take()[(0, "all")][0]
    edit = Edit.pull_mean(target, [0], 0.5, "all", basis=u)
    with llama.hooks(capture_layers=[0], capture_positions="all", edits=[edit]) as run:
        llama.forward(batch)
    steered = run.take()[(0, "all")][0][0]
    for row in range(3):
        v = valid[row]
        shift = steered[row, v] - clean[row, v]  # the same vector on every real token of the row
        torch.testing.assert_close(shift, shift[:1].expand_as(shift), rtol=1e-4, atol=1e-4)
        expected = 0.5 * ((target - clean[row, v].mean(0)) @ unit) * unit
        torch.testing.assert_close(shift[0], expected, rtol=1e-4, atol=1e-4)


def test_pull_basis_checks():
    from interp.edits import orthonormal_rows

    q = orthonormal_rows(torch.tensor([[3.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    torch.testing.assert_close(q @ q.T, torch.eye(2))
    with pytest.raises(InputError, match="linearly dependent"):
        orthonormal_rows(torch.tensor([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]]))
    with pytest.raises(InputError, match="NaN or inf"):
        orthonormal_rows(torch.tensor([1.0, float("inf")]))
    with pytest.raises(InputError, match=r"\[D\] or \[K, D\]"):
        orthonormal_rows(torch.zeros(4, 3))
    with pytest.raises(InputError, match="width 3 but the target has 64"):
        Edit.pull(torch.zeros(64), [0], 1.0, basis=torch.ones(3))
