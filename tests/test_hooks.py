import pytest
import torch

import interp
from interp.edits import Edit, Gate
from interp.errors import InputError, LayerIndexError
from tests.conftest import FAMILIES, images_for, trained_like


def _logits(model, batch, edits=()):
    with model.hooks(edits=edits):
        return model.forward(batch).logits


def test_hooks_are_removed_even_when_forward_raises(llama, prompts):
    batch = llama.encode(prompts)
    before = [len(m._forward_hooks) for m in llama.layers] + [len(llama.model._forward_pre_hooks)]
    with pytest.raises(RuntimeError, match="boom"):
        with llama.hooks(capture_layers="all", edits=[Edit.add(torch.ones(64), layers=[1])]):
            raise RuntimeError("boom")
    bad = Edit.add(torch.ones(2, 64), layers=[1])  # 2 rows for a batch of 3: raises inside the forward
    with pytest.raises(interp.InputError, match="2 rows"):
        with llama.hooks(edits=[bad]):
            llama.forward(batch)
    after = [len(m._forward_hooks) for m in llama.layers] + [len(llama.model._forward_pre_hooks)]
    assert before == after


def test_left_padding_does_not_change_captured_states(llama, prompts):
    together = interp.capture(llama, prompts, positions=["last", "mean", 0])
    for i, p in enumerate(prompts):
        alone = interp.capture(llama, [p], positions=["last", "mean", 0])
        for pos in ("last", "mean", "tok0"):
            torch.testing.assert_close(together[pos][i], alone[pos][0], rtol=1e-4, atol=1e-5)


def test_generated_only_steering_leaves_prefill_alone_and_hits_every_decode_step(llama, prompts):
    batch = llama.encode(prompts)
    v = torch.randn(64) * 50
    n_new = 5
    clean_prefill = _logits(llama, batch)
    edit = Edit.add(v, layers=[1], positions="generated")
    torch.testing.assert_close(_logits(llama, batch, [edit]), clean_prefill)  # prefill untouched

    calls = []
    with llama.hooks(edits=[edit]) as run:
        original = edit.apply

        def spy(h, mask, prepared=None):
            calls.append((h.shape[1], run.past_len, int(mask.sum())))
            return original(h, mask, prepared)

        edit.apply = spy
        steered = llama.generate(batch, max_new_tokens=n_new, min_new_tokens=n_new)
    del edit.apply
    prefill, *decode = calls
    assert prefill[2] == 0  # nothing edited at prefill
    assert len(decode) == n_new - 1  # the first new token comes from the prefill logits
    assert all(c == 1 and edited == 3 for c, _, edited in decode)
    assert [past for _, past, _ in decode] == sorted(past for _, past, _ in decode)
    assert steered != llama.generate(batch, max_new_tokens=n_new, min_new_tokens=n_new)


def test_last_position_edit_fires_only_at_prefill(llama, prompts):
    batch = llama.encode(prompts)
    edit = Edit.add(torch.randn(64), layers=[0], positions="last")
    counts = []
    original = edit.apply
    edit.apply = lambda h, mask, prepared=None: (counts.append(int(mask.sum())), original(h, mask, prepared))[
        1
    ]
    with llama.hooks(edits=[edit]):
        llama.generate(batch, max_new_tokens=4, min_new_tokens=4)
    assert counts[0] == 3 and all(c == 0 for c in counts[1:])


def test_capture_ignores_decode_steps(llama, prompts):
    batch = llama.encode(prompts)
    with llama.hooks(capture_layers=[0, 3]) as run:
        llama.generate(batch, max_new_tokens=4, min_new_tokens=4)
    got = run.take()
    assert len(got[(0, "last")]) == 1 and got[(3, "last")][0][0].shape == (3, 64)


def test_contexts_do_not_share_state(llama, prompts):
    batch = llama.encode(prompts)
    with llama.hooks(capture_layers=[1]) as a, llama.hooks(capture_layers=[1]) as b:
        llama.forward(batch)
    assert a is not b
    torch.testing.assert_close(a.take()[(1, "last")][0][0], b.take()[(1, "last")][0][0])


def _tiny_batch(family, image):
    """A trained-like tiny model of ``family`` and a batch (with images where the family takes them)."""
    model, images = trained_like(family), images_for(family, image, 2)
    if images:
        return model, model.encode(["describe it", "what is in this picture"], images=images)
    return model, model.encode(["hello there", "a longer prompt than that"])


@pytest.mark.parametrize("family", FAMILIES)
def test_component_sites_add_up_to_the_residual_stream(family, image):
    """resid_i = resid_{i-1} + attn_i + mlp_i exactly, at every layer and token, in every family.
    Gemma 2/3 normalize each block's output before adding it, so their attn/mlp sites are the norms
    after the blocks (``model.writer``, as TransformerLens's hook_attn_out/hook_mlp_out); Mllama's
    cross-attention layers add tanh(gate) * output (the MLP's masked per token), which the sites
    read (``model.write_gain``)."""
    model, batch = _tiny_batch(family, image)
    layers = list(range(model.n_layers))
    got = {}
    for site in ("resid", "attn", "mlp"):
        with model.hooks(capture_layers=layers, capture_positions="all", capture_site=site) as run:
            model.forward(batch)
        got[site] = {i: run.captured[(i, "all")][0][0] for i in layers}
    for i in layers[1:]:
        torch.testing.assert_close(
            got["resid"][i], got["resid"][i - 1] + got["attn"][i] + got["mlp"][i], rtol=1e-5, atol=1e-4
        )
    assert all(got["attn"][i].abs().max() > 0 for i in layers)  # every block writes something
    if family not in ("gemma2", "gemma3_text", "gemma3", "mllama"):  # the block's own output
        manual = []
        handle = model.layers[1].mlp.register_forward_hook(lambda m, a, o: manual.append(o))
        try:
            model.forward(batch)
        finally:
            handle.remove()
        assert model.writer(1, "mlp") is model.layers[1].mlp
        with model.hooks(capture_layers=[1], capture_site="mlp") as run:
            model.forward(batch)
        torch.testing.assert_close(run.captured[(1, "last")][0][0], manual[0][:, -1])


@pytest.mark.parametrize("site", ["attn", "mlp"])
def test_an_edit_at_a_gated_cross_attention_writer_moves_the_stream_by_that_vector(image, site):
    # Mllama adds tanh(gate) * output (the MLP's zeroed for text tokens that see no image): an edit at
    # the site changes what reaches the stream by exactly its vector wherever the block writes
    model, batch = _tiny_batch("mllama", image)
    cross = model.text_config.cross_attention_layers[0]
    v = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))

    def sites(edits=()):
        out = {}
        for s in ("resid", "attn", "mlp"):
            with model.hooks(
                capture_layers=[cross], capture_positions="all", capture_site=s, edits=edits
            ) as run:
                model.forward(batch)
            states, valid = run.captured[(cross, "all")][0]
            out[s] = states[valid]
        return out

    base, moved = sites(), sites([Edit.add(v, [cross], 2.0, "all", site=site)])
    delta = {s: moved[s] - base[s] for s in base}
    reached = base[site].abs().amax(-1) > 0  # the MLP writes nothing for text tokens that see no image
    assert reached.any() and (reached.all() if site == "attn" else not reached.all())
    # what the block writes moved by 2v where it reaches the stream, and the stream by exactly that
    # (plus, for an attn edit, what the MLP after it writes differently)
    want = torch.where(reached.unsqueeze(-1), 2.0 * v, torch.zeros_like(v))
    other = delta["mlp"] if site == "attn" else 0.0
    torch.testing.assert_close(delta["resid"] - other, want, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        getattr(model.layers[cross], f"cross_attn_{site}_gate").zero_()
    with pytest.raises(InputError, match="gate that is 0"):
        sites([Edit.add(v, [cross], 2.0, "all", site=site)])


def test_an_edit_on_the_mlp_output_moves_the_stream_by_exactly_that_vector(llama):
    batch = llama.encode(["hello there", "x"])
    v = torch.randn(llama.d_model)
    with llama.hooks(capture_layers=[1], capture_positions="last") as run:
        llama.forward(batch)
    base = run.captured[(1, "last")][0][0]
    edit = interp.Edit.add(v, layers=[1], alpha=2.0, positions="last", site="mlp")
    with llama.hooks(capture_layers=[1], capture_positions="last", edits=[edit]) as run:
        llama.forward(batch)
    torch.testing.assert_close(
        run.captured[(1, "last")][0][0] - base, 2.0 * v.expand(2, -1), rtol=1e-4, atol=1e-4
    )
    with pytest.raises(InputError, match="site"):
        interp.Edit.add(v, layers=[1], site="ffn")
    with pytest.raises(InputError, match="site"):
        interp.capture(llama, ["x"], site="mlp", backend="nnsight")


def test_replay_resumes_from_cached_states_and_restores_forward(llama):
    batch = llama.encode(["hello there", "a longer prompt than that"])
    with llama.hooks(keep_layers=[0, 1, 2]) as run, torch.inference_mode():
        full = llama.model(**batch.inputs).logits
    replay = {k: run.kept[k] for k in (0, 1, 2)}
    with llama.hooks(replay=replay, replay_tuple=bool(run.output_is_tuple)), torch.inference_mode():
        resumed = llama.model(**batch.inputs).logits
    torch.testing.assert_close(resumed, full)
    # a replayed layer really skips its computation: replaying zeros changes the output
    zeros = {0: torch.zeros_like(run.kept[0])}
    with llama.hooks(replay=zeros), torch.inference_mode():
        assert not torch.allclose(llama.model(**batch.inputs).logits, full)
    assert "forward" not in vars(llama.layers[0])  # the class's forward is back
    with pytest.raises(InputError, match="replayed states"):
        with llama.hooks(replay={0: run.kept[0][:1]}), torch.inference_mode():
            llama.model(**batch.inputs)
    assert "forward" not in vars(llama.layers[0])


def test_embed_site_edits_the_stream_before_layer_0_only(llama):
    d = torch.randn(llama.d_model)
    batch = llama.encode(["hello there"])
    with llama.hooks(edits=[Edit.add(d, [0], 5.0, site="embed")]), torch.inference_mode():
        seen = {}
        handle = llama.layers[0].register_forward_pre_hook(
            lambda m, a, k: seen.update(h=k.get("hidden_states", a[0] if a else None)), with_kwargs=True
        )
        try:
            llama.model(**batch.inputs)
        finally:
            handle.remove()
    with torch.inference_mode():
        plain = llama.embed(batch.input_ids)
    torch.testing.assert_close(seen["h"] - plain, 5.0 * d.expand_as(plain))  # Edit.add adds the raw vector
    with (
        pytest.raises(LayerIndexError, match="layers=\\[0\\]"),
        llama.hooks(edits=[Edit.add(d, [1], 1.0, site="embed")]),
    ):
        pass
    with (
        pytest.raises(InputError, match="capture_site"),
        llama.hooks(capture_layers=[0], capture_site="embed"),
    ):
        pass


@pytest.mark.parametrize("family", FAMILIES)
def test_unembed_of_the_last_layer_gives_the_models_logits(family, image):
    """The logit lens reads a state as the model does: final norm, LM head and (Gemma 2) soft-capping."""
    model, batch = _tiny_batch(family, image)
    if family == "gemma2":
        model.text_config.final_logit_softcapping = 0.5  # tiny logits: a cap this low bends them
    last = model.n_layers - 1
    with model.hooks(capture_layers=[last], capture_positions="last") as run, torch.inference_mode():
        logits = model.model(**batch.inputs).logits[:, -1]
    lens = model.unembed(run.captured[(last, "last")][0][0])
    torch.testing.assert_close(lens, logits, rtol=1e-5, atol=1e-5)


def _generate(model, batch, edits, use_cache, n=6):
    with model.hooks(edits=edits):
        return model.generate(batch, max_new_tokens=n, min_new_tokens=n, use_cache=use_cache)


@pytest.mark.parametrize("positions", ["generated", "prompt", "last", "all", 0, "gated"])
def test_steered_generate_gives_the_same_tokens_without_the_kv_cache(llama, prompts, positions):
    # generate(use_cache=False) re-runs prompt + generated tokens at every step; the re-runs keep the
    # prompt's layout, so "generated" still edits new tokens, "last" the prompt's last token, and a
    # gate keeps its prefill decision
    batch = llama.encode(prompts)
    v = torch.randn(64, generator=torch.Generator().manual_seed(1)) * 30
    if positions == "gated":
        d = torch.randn(64, generator=torch.Generator().manual_seed(2))
        with llama.hooks(capture_layers=[0]) as run:
            llama.forward(batch)
        scores = run.take()[(0, "last")][0][0] @ (d / d.norm())
        gate = Gate(d, layer=0, threshold=float(scores.median()))  # fires on one row of three
        edits = [Edit.add(v, layers=[2], positions="all").gated(gate)]
    else:
        edits = [Edit.add(v, layers=[1], positions=positions)]
    cached = _generate(llama, batch, edits, use_cache=True)
    assert cached != _generate(llama, batch, [], use_cache=True)  # the edit matters
    assert _generate(llama, batch, edits, use_cache=False) == cached


def test_image_steering_in_generate_without_the_kv_cache(llava, image):
    batch = llava.encode(["describe it", "what is in this picture please"], images=[image, image])
    edits = [
        Edit.add(
            torch.randn(llava.d_model, generator=torch.Generator().manual_seed(0)) * 30, [1], 1.0, "image"
        )
    ]
    cached = _generate(llava, batch, edits, use_cache=True, n=5)
    assert cached != _generate(llava, batch, [], use_cache=True, n=5)
    assert _generate(llava, batch, edits, use_cache=False, n=5) == cached


def test_a_forward_on_other_ids_is_a_new_prompt_even_without_a_cache(llama, prompts):
    # only ids that extend the previous forward's by one token continue it; anything else is a prompt
    batch = llama.encode(prompts)
    other = llama.encode(["another prompt entirely", "b", "and a third"])
    with llama.hooks(capture_layers=[1]) as run:
        llama.forward(batch, use_cache=False)
        assert not run.rerun
        llama.forward(other, use_cache=False)
        assert not run.rerun
        llama.generate(batch, max_new_tokens=3, min_new_tokens=3, use_cache=False)
    got = run.take()[(1, "last")]
    assert len(got) == 3  # two forwards and one prefill: the decode steps captured nothing
    torch.testing.assert_close(got[2][0], got[0][0])


def test_per_row_edits_under_beam_search_say_how_to_repeat_them(llama, prompts):
    batch = llama.encode(prompts)
    vectors = torch.randn(3, 64, generator=torch.Generator().manual_seed(3)) * 30
    with pytest.raises(InputError, match=r"num_beams=2.*repeat_interleave\(2, dim=0\)"):
        with llama.hooks(edits=[Edit.add(vectors, layers=[1], positions="last")]):
            llama.generate(batch, max_new_tokens=3, num_beams=2)
    with llama.hooks(edits=[Edit.add(vectors.repeat_interleave(2, dim=0), layers=[1], positions="last")]):
        together = llama.generate(batch, max_new_tokens=4, min_new_tokens=4, num_beams=2)
    assert together != llama.generate(batch, max_new_tokens=4, min_new_tokens=4, num_beams=2)
    for i, p in enumerate(prompts):  # the fix steers each prompt's beams with that prompt's vector
        with llama.hooks(edits=[Edit.add(vectors[i : i + 1].repeat(2, 1), layers=[1], positions="last")]):
            alone = llama.generate(llama.encode([p]), max_new_tokens=4, min_new_tokens=4, num_beams=2)
        assert alone == together[i : i + 1]


def test_a_gate_on_a_layer_mllama_skips_reads_the_stream_that_passes_it(image):
    # without images Mllama skips its cross-attention layers: a gate there decides on the layer
    # before's output (the stream the skipped layer passes on); with images, on its own layer's
    from interp.testing import open_gates, tiny_model

    model = open_gates(tiny_model("mllama"))
    cross = model.text_config.cross_attention_layers[0]
    d = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    gate = Gate(d, layer=cross, threshold=0.0)
    edit = Edit.add(d, [cross + 1], 1.0).gated(gate)
    prompts = ["hello there", "a longer prompt"]
    for images, read in ((None, cross - 1), ([image, image], cross)):
        batch = model.encode(prompts, images=images)
        with model.hooks(capture_layers=[read]) as plain:
            model.forward(batch)
        with model.hooks(edits=[edit]) as run:
            model.forward(batch)
        torch.testing.assert_close(run.gate_scores[gate], plain.take()[(read, "last")][0][0] @ (d / d.norm()))


class _Cache:
    """A stand-in KV cache that holds ``n`` tokens."""

    def __init__(self, n: int):
        self.n = n

    def get_seq_length(self) -> int:
        return self.n


@pytest.mark.parametrize("name", ["cache", "past_key_values"])
def test_a_decode_step_is_told_from_a_prompt_under_either_cache_name(llama, prompts, name):
    # issue 23: transformers 5.24 passes the KV cache as `cache=`; the hooks looked only for
    # `past_key_values`, so a decode step without an attention mask (an unpadded batch: generate drops
    # an all-ones mask) was taken for a new one-token prompt
    batch = llama.encode(prompts[:1])
    with llama.hooks(capture_layers=[1]) as run:
        llama.forward(batch)
        run.on_forward(llama.model, (), {"input_ids": batch.input_ids[:, -1:], name: _Cache(7)})
        assert run.past_len == 7 and run.layout.prompt_len == batch.input_ids.shape[1]


@pytest.mark.parametrize("positions", ["last", "prompt", "generated", 0])
def test_a_steered_prompt_generates_the_same_alone_and_beside_a_longer_one(llama, prompts, positions):
    # the regression seen on the organism (issue 23): steered at "last", a prompt alone (no padding,
    # so no attention mask in the decode steps) was edited again at every decode step
    v = torch.randn(64, generator=torch.Generator().manual_seed(4)) * 30
    edits = [Edit.add(v, layers=[1], positions=positions)]
    short, long = prompts[0], prompts[1]
    alone = _generate(llama, llama.encode([short]), edits, use_cache=True, n=8)
    together = _generate(llama, llama.encode([short, long]), edits, use_cache=True, n=8)
    assert alone != _generate(llama, llama.encode([short]), [], use_cache=True, n=8)  # the edit matters
    assert together[0] == alone[0]


def test_an_early_stop_ends_the_block_without_an_exception_and_keeps_the_captures(llama, prompts):
    # the context owns its StopForward (baukit's Trace): callers write no try/except
    after = []
    with llama.hooks(capture_layers=[1], stop=True) as run:
        llama.forward(llama.encode(prompts))
        after.append("never reached: the forward stopped after layer 1")
    assert after == []
    assert run.take()[(1, "last")][0][0].shape == (3, 64)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in llama.model.modules())
