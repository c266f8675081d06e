"""A real llama.cpp (built by .ci/build_llama_cpp.sh) reads interp's control-vector file and steers
the SmolLM2 GGUF as interp's hooks steer the same weights. Skipped when no binary is built."""

from __future__ import annotations

import pytest

import interp
from interp.export.llama_cpp import compare_with_hooks, find_llama_cpp
from interp.locate.directions import refusal_directions
from interp.models.load import default_gguf_path
from interp.steer import AddDirection

pytestmark = [
    pytest.mark.slow,
    pytest.mark.llamacpp,
    pytest.mark.skipif(find_llama_cpp() is None, reason="no llama.cpp binary: run .ci/build_llama_cpp.sh"),
]


def test_control_vector_steers_llama_cpp_like_the_hooks(smollm, tmp_path):
    harm, harmless = interp.data.load("harmbench", n=32), interp.data.load("harmless", n=44)
    acts = interp.capture(
        smollm, harm.prompts + harmless.prompts[:32], labels=harm.labels + harmless.labels[:32], layers=[12]
    )
    add = AddDirection(refusal_directions(acts)[12], layers=[12, 13, 14], alpha=8.0)
    check = compare_with_hooks(
        smollm, find_llama_cpp(), default_gguf_path(), harmless.prompts[32:], add, tmp_path
    )
    assert check.changed_by_control_vector >= 0.75  # llama.cpp read the file and it steers
    assert check.changed_by_hooks >= 0.75
    # the same steered text as interp, as closely as the two engines agree without steering ...
    assert check.agree_steered >= 0.8 * check.agree_plain
    # ... and a file with its layers off by one, or its sign flipped, agrees much less
    assert check.agree_steered >= check.agree_shifted_layers + 0.1
    assert check.agree_steered >= check.agree_negated + 0.3
