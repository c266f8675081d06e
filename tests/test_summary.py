import pytest
import torch

import interp
from interp.summary import layer_summary


def test_summary_separates_a_planted_difference(llama):
    prompts = [f"sample {i}" for i in range(12)]
    labels = ["harmful", "harmless"] * 6
    acts = interp.capture(llama, prompts, labels=labels, layers=[0, 1])
    shift = torch.zeros_like(acts["last"])
    shift[0::2, 1] += 5.0  # layer 1 of harmful rows moved far along one axis
    acts.tensors["last"] = acts["last"] + shift
    s = layer_summary(acts)
    assert s.heldout_accuracy[1] == 1.0 and s.diff_norm[1] > s.diff_norm[0]
    assert "best held-out separation at layer 1" in s.table()
    assert s.heldout_interval[1] == (1.0, 1.0)  # every prompt right: nothing varies
    lo, hi = s.heldout_interval[0]
    assert lo <= s.heldout_accuracy[0] <= hi and hi - lo > 0.1  # 12 prompts: a wide interval
    assert "95% interval" in s.table() and f"[{lo:.2f}, {hi:.2f}]" in s.table()


def test_summary_needs_two_classes(llama):
    acts = interp.capture(llama, ["a", "b"], labels=["harmful", "harmful"], layers=[0])
    with pytest.raises(interp.InputError, match="two label classes"):
        layer_summary(acts)
    acts = interp.capture(llama, ["a", "b", "c"], labels=["harmful", "harmless", "harmless"], layers=[0])
    with pytest.raises(interp.InputError, match="at least 2 prompts"):
        layer_summary(acts)
