import pytest

import interp
from interp.testing import tiny_model


def test_chat_template_and_left_padding(llama, prompts):
    batch = llama.encode(prompts)
    assert batch.texts[0].startswith("<|im_start|>user\nhello there<|im_end|>")
    assert batch.texts[0].endswith("<|im_start|>assistant\n")
    assert (batch.attention_mask[:, -1] == 1).all()  # left padded: last column real everywhere
    raw = llama.encode(prompts, chat_template=False)
    assert raw.texts == prompts
    assert llama.encode(prompts, system="Be brief.").texts[0].startswith("<|im_start|>system\nBe brief.")


def test_empty_inputs(llama):
    with pytest.raises(interp.InputError, match="empty"):
        llama.encode([])
    with pytest.raises(interp.InputError, match="zero tokens"):
        llama.encode([""], chat_template=False)
    with pytest.raises(interp.InputError, match="not a string"):
        llama.encode([3])


def test_prompt_longer_than_context():
    model = tiny_model("llama", max_position_embeddings=32)
    with pytest.raises(
        interp.InputError, match="prompt 1 is .* tokens, longer than the model's context of 32"
    ):
        model.encode(["short", "x" * 100])


def test_images_given_to_a_text_model(llama, image):
    with pytest.raises(interp.InputError, match="text-only model"):
        llama.encode(["what is this?"], images=[image])


def test_image_counts_must_match(llava, image):
    with pytest.raises(interp.InputError, match="2 image entries for 1 prompts"):
        llava.encode(["what is this?"], images=[image, image])
    with pytest.raises(interp.InputError, match="2 image placeholder"):
        llava.encode(["<image> and <image>?"], images=[image])
    with pytest.raises(interp.InputError, match="some prompts have images"):
        llava.encode(["a", "b"], images=[image, None])
    # placeholders written by the user are accepted when they match
    ok = llava.encode(["<image> what is this?"], images=[[image]])
    assert (ok.input_ids == llava.image_token_id).sum() == 16


def test_raw_prompt_gets_placeholders(llava, image):
    batch = llava.encode(["what is this?"], images=[image], chat_template=False)
    assert batch.texts == ["<image>\nwhat is this?"]


def test_chat_template_required_but_missing(llama):
    template = llama.tokenizer.chat_template
    try:
        llama.tokenizer.chat_template = None
        with pytest.raises(interp.InputError, match="no chat template"):
            llama.encode(["hi"], chat_template=True)
        assert llama.encode(["hi"]).texts == ["hi"]  # "auto" falls back to the raw prompt
    finally:
        llama.tokenizer.chat_template = template


def test_groups_split_a_mixed_list_by_kind_and_give_the_rows():
    from interp.inputs import groups

    got = list(groups(["a", "b", "c", "d"], ["I", None, [], ["J", "K"]], batch_size=1))
    assert [(rows, chunk, imgs) for rows, chunk, imgs in got] == [
        ([0], ["a"], ["I"]),
        ([3], ["d"], [["J", "K"]]),
        ([1], ["b"], None),
        ([2], ["c"], None),
    ]
    assert [rows for rows, _, _ in groups(["a", "b", "c"], None, 2)] == [[0, 1], [2]]
    with pytest.raises(interp.InputError, match="2 image entries for 3 prompts"):
        list(groups(["a", "b", "c"], ["I", None], 2))
