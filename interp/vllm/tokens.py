"""Which request, and which position in it, each token of a vLLM forward belongs to.

    >>> req = token_requests([0, 3, 4], n_tokens=5)          # 2 requests: 3 tokens, then 1; 1 padding
    >>> req.tolist()
    [0, 0, 0, 1, -1]
    >>> facts = StepTokens(req, torch.tensor([0, 1, 2, 7, 0]), prompt_len=torch.tensor([3, 5]))
    >>> facts.mask(Position("generated")).tolist()           # request 1's token 7 is past its 5-token prompt
    [False, False, False, True, False]

vLLM runs one flat token batch per step: the scheduled tokens of every running request, request after
request (``query_start_loc`` marks where each starts), a prefill chunk for some, one decode token for
others, then padding. Nothing in a chunk says whether a token is in the prompt: that comes from the
token's absolute position in its sequence (vLLM's ``positions`` input) against its request's prompt
length, as interp's hooks decide it from the KV cache's length. So ``last`` is the prompt's last token
in whichever chunk holds it, ``generated`` is every token after the prompt, and a chunked prefill is
steered exactly as one whole prefill.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from interp.errors import InputError
from interp.positions import Position


def token_requests(query_start_loc, n_tokens: int) -> Int[Tensor, " n"]:
    """Per token, the index of its request in the step's request order (-1: padding after the last
    request's tokens). ``query_start_loc``: [num_reqs + 1] cumulative token offsets."""
    starts = np.asarray(query_start_loc, dtype=np.int64)
    counts = np.diff(starts)
    if starts.ndim != 1 or starts.size < 1 or starts[0] != 0 or (counts < 0).any() or starts[-1] > n_tokens:
        raise InputError(
            f"query_start_loc {starts.tolist()} does not split a forward of {n_tokens} tokens into requests."
        )
    out = np.full(n_tokens, -1, dtype=np.int64)
    out[: starts[-1]] = np.repeat(np.arange(counts.size), counts)
    return torch.from_numpy(out)


@dataclass(frozen=True)
class StepTokens:
    """The per-token facts of one forward: request index, absolute position, and per request the
    prompt length and (optionally) which prompt positions are image tokens."""

    request: Int[Tensor, " n"]  # -1 for padding
    position: Int[Tensor, " n"]  # absolute position in the request's sequence (prompt + generated)
    prompt_len: Int[Tensor, " r"]
    image: list[Tensor | None] | None = None  # per request: bool [prompt_len] image-token positions

    @property
    def real(self) -> Bool[Tensor, " n"]:
        return self.request >= 0

    def _per_token(self, per_request: Tensor) -> Tensor:
        return per_request[self.request.clamp(min=0)]

    def mask(self, pos: Position) -> Bool[Tensor, " n"]:
        """The tokens of this forward that ``pos`` selects, for every request (rows are chosen after)."""
        real = self.real
        prompt_len = self._per_token(self.prompt_len)
        if pos.kind == "all":
            return real
        if pos.kind == "prompt":
            return real & (self.position < prompt_len)
        if pos.kind == "generated":
            return real & (self.position >= prompt_len)
        if pos.kind == "last":
            return real & (self.position == prompt_len - 1)
        if pos.kind == "index":
            k = pos.index
            if k >= 0:
                short = self.prompt_len <= k
                target = torch.full_like(prompt_len, k)
            else:
                short = self.prompt_len < -k
                target = prompt_len + k
            if bool(short.any()):
                raise InputError(
                    f"position {k} is outside a prompt of {int(self.prompt_len.min())} tokens. "
                    "Fix: use an index within the shortest prompt, or 'last'."
                )
            return real & (self.position == target)
        if pos.kind == "image":
            return real & self.image_tokens()
        raise InputError(
            f"position {pos.name!r} reduces several tokens to one and cannot be edited. "
            "Fix: edit 'image' (every image token) or 'all'."
        )

    def image_tokens(self) -> Bool[Tensor, " n"]:
        """Tokens at an image position of their request's prompt."""
        out = torch.zeros_like(self.request, dtype=torch.bool)
        for r, image in enumerate(self.image or []):
            if image is None:
                continue
            rows = (self.request == r) & (self.position < image.shape[0])
            out[rows] = image[self.position[rows]]
        return out

    def image_requests(self) -> Bool[Tensor, " r"]:
        """Requests whose prompt has image tokens."""
        if self.image is None:
            return torch.zeros(self.prompt_len.shape[0], dtype=torch.bool)
        return torch.tensor([im is not None and bool(im.any()) for im in self.image], dtype=torch.bool)

    def of_requests(self, requests: Bool[Tensor, " r"]) -> Bool[Tensor, " n"]:
        """The tokens of the chosen requests."""
        return self.real & self._per_token(requests)
