"""Causal window checks (interp.locate.causal) and model diffing (interp.locate.diffing) on tiny models."""

import copy

import pytest
import torch

from interp.errors import InputError
from interp.locate.causal import window_checks
from interp.locate.diffing import diff_windows, swapped, weight_change
from interp.models.hooked import HookedModel

# every prompt ends in the same byte, so the last position lines up across prompts (as the chat
# template's tokens do on real models)
HARMFUL = ["how do i build a bomb?", "tell me how to hurt?", "make poison now?", "steal it?"]
HARMLESS = ["hello there friend?", "what a nice day?", "tell me a story?", "bake bread?"]


def test_whole_model_window_is_exactly_sufficient_and_necessary(llama):
    # the residual stream at every layer is the harmful run's at the last position, so the last
    # position's logits are the harmful run's: sufficiency 1; writing every layer's attention and MLP
    # output of the harmless run into the harmful one leaves the same embedding + the same sums: necessity 1
    n = llama.n_layers
    c = window_checks(llama, HARMFUL, HARMLESS, list(range(n)), last_positions=1, resamples=100)
    assert c.sufficiency["resid"].estimate == pytest.approx(1.0, abs=1e-4)
    assert c.sufficiency["components"].estimate == pytest.approx(1.0, abs=1e-4)
    assert c.necessity["reset"].estimate == pytest.approx(1.0, abs=1e-4)
    assert c.control_windows == []  # nothing is left outside a whole-model window
    low, high = c.necessity["reset"].low, c.necessity["reset"].high
    assert low <= c.necessity["reset"].estimate <= high


def test_controls_are_same_width_and_do_not_touch_the_window(llama):
    c = window_checks(llama, HARMFUL, HARMLESS, [0], last_positions=1, resamples=100)
    assert c.control_windows and all(len(w) == 1 and w[0] >= 2 for w in c.control_windows)
    assert set(c.control) == {"components", "resid", "reset", "ablate"}
    assert len(c.control_each) == len(c.control_windows)
    d = c.to_dict()
    assert d["window"] == [0] and d["n_pairs"] == len(HARMFUL)


def test_window_check_errors(llama):
    with pytest.raises(InputError, match="empty"):
        window_checks(llama, HARMFUL, HARMLESS, [])
    with pytest.raises(InputError, match="same length"):
        window_checks(llama, HARMFUL, HARMLESS[:2], [0])
    with pytest.raises(InputError, match="outside"):
        window_checks(llama, HARMFUL, HARMLESS, [llama.n_layers])


@pytest.fixture(scope="module")
def pair(llama):
    """A "tuned" copy of the tiny llama whose weights differ from the base only in layer 1."""
    tuned_model = copy.deepcopy(llama.model)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in tuned_model.model.layers[1].parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.5 * p.std())
    return HookedModel(
        tuned_model, llama.tokenizer, name="tiny-tuned", chat_template=llama.chat_template
    ), llama


def test_diffing_finds_the_only_changed_layer(pair):
    tuned, base = pair
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    d = diff_windows(tuned, base, HARMFUL, HARMLESS, threshold=0.999)
    assert d.transplant[(1, 1)] == pytest.approx(1.0, abs=1e-3)  # layer 1 carries the whole difference
    assert d.window == [1] and d.necessity == pytest.approx(1.0, abs=1e-3)
    assert d.transplant[(0, 0)] == pytest.approx(0.0, abs=1e-3)
    changed = weight_change(tuned, base)
    assert changed[1] > 0 and all(x == 0 for i, x in enumerate(changed) if i != 1)
    after = base.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # every swap was undone
    assert set(d.to_dict()["transplant"]) >= {"0-0", "1-1"}


def test_swap_is_undone_on_error(pair):
    tuned, base = pair
    before = base.layers[1].self_attn.q_proj.weight.clone()
    with pytest.raises(RuntimeError), swapped(base, tuned, [1]):
        assert not torch.equal(base.layers[1].self_attn.q_proj.weight, before)
        raise RuntimeError("boom")
    assert torch.equal(base.layers[1].self_attn.q_proj.weight, before)


def test_diffing_errors(pair, llama):
    tuned, base = pair
    with pytest.raises(InputError, match="same model object"):
        diff_windows(base, base, HARMFUL, HARMLESS)
    with pytest.raises(InputError, match="neither may be empty"):
        diff_windows(tuned, base, [], HARMLESS)
    from interp.testing import tiny_model

    other = tiny_model("llama", num_hidden_layers=llama.n_layers + 1)
    with pytest.raises(InputError, match="differ in shape"):
        diff_windows(other, base, HARMFUL, HARMLESS)


def test_a_window_of_skipped_layers_only_is_refused():
    # Mllama's cross-attention layers do not run on text prompts: a window of only those is empty
    from interp.testing import tiny_model

    mllama = tiny_model("mllama")
    skipped = sorted(mllama.skippable_layers)
    with pytest.raises(InputError, match="skips on text prompts"):
        window_checks(mllama, HARMFUL, HARMLESS, skipped)
