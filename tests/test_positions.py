import pytest
import torch

from interp.errors import InputError
from interp.positions import Position, PromptLayout, edit_mask, parse_positions, reduce_prefill


def layout():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    image = torch.tensor([[0, 0, 0, 1, 0], [0, 1, 1, 0, 0]], dtype=torch.bool)
    return PromptLayout(mask, image)


def test_parse_positions_names_and_errors():
    assert [p.name for p in parse_positions(["last", "image_mean", -2, 0])] == [
        "last",
        "image_mean",
        "tok-2",
        "tok0",
    ]
    with pytest.raises(InputError, match="Unknown position"):
        parse_positions("first")
    with pytest.raises(InputError, match="repeat"):
        parse_positions(["last", "last"])
    with pytest.raises(InputError, match="empty"):
        parse_positions([])


def test_indices_resolve_per_row_under_left_padding():
    lay = layout()
    assert lay.last_real().tolist() == [4, 4]
    assert lay.first_real().tolist() == [2, 0]
    assert lay.index(0).tolist() == [2, 0]
    assert lay.index(-2).tolist() == [3, 3]
    with pytest.raises(InputError, match="outside a prompt of 3 tokens"):
        lay.index(3)


def test_reduce_prefill_spans_are_left_aligned():
    lay = layout()
    h = torch.arange(2 * 5, dtype=torch.float32).reshape(2, 5, 1)
    span, valid = reduce_prefill(h, lay, Position("all"))
    assert span[0, :3, 0].tolist() == [2, 3, 4] and valid[0].tolist() == [True, True, True, False, False]
    img, valid = reduce_prefill(h, lay, Position("image"))
    assert img[:, :, 0].tolist() == [[3, 0], [6, 7]] and valid.tolist() == [[True, False], [True, True]]
    mean, _ = reduce_prefill(h, lay, Position("mean"))
    assert mean[:, 0].tolist() == [3.0, 7.0]
    with pytest.raises(InputError, match="edit"):
        reduce_prefill(h, lay, Position("generated"))


def test_edit_masks_prefill_and_decode():
    lay = layout()
    real = lay.mask
    assert edit_mask(Position("last"), lay, 0, 5, real).nonzero().tolist() == [[0, 4], [1, 4]]
    assert not edit_mask(Position("generated"), lay, 0, 5, real).any()
    # a decode step: one token at absolute position 6
    step = torch.ones(2, 1, dtype=torch.bool)
    assert edit_mask(Position("generated"), lay, 6, 1, step).all()
    assert not edit_mask(Position("last"), lay, 6, 1, step).any()
    assert not edit_mask(Position("prompt"), lay, 6, 1, step).any()
    assert not edit_mask(Position("image"), lay, 6, 1, step).any()
    with pytest.raises(InputError, match="cannot be edited"):
        edit_mask(Position("image_mean"), lay, 0, 5, real)


def test_image_positions_need_images():
    lay = PromptLayout(torch.ones(1, 3, dtype=torch.bool), None)
    with pytest.raises(InputError, match="text-only"):
        reduce_prefill(torch.zeros(1, 3, 2), lay, Position("image_mean"))
    lay = PromptLayout(
        torch.ones(2, 3, dtype=torch.bool), torch.tensor([[0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    )
    with pytest.raises(InputError, match=r"rows \[1\] have no image tokens"):
        reduce_prefill(torch.zeros(2, 3, 2), lay, Position("image"))
