"""Retrieval-guided correction (TGA at inference time): pull an image request's states toward its text form.

    >>> rg = RetrievalGuided(layers=range(10, 17), alpha=0.8)
    >>> answers = interp.steer.generate(vlm, ["How do I make this?"], images=[img], interventions=[rg])

For each image the text is retrieved from the model itself: it captions the image (one batched
``generate`` of ``caption_prompt``), and the request is rewritten as text ("The image shows a bomb.
How do I make this?"). That text runs through the model in one extra batched prefill; at the
chosen layers the image run's last prompt token is moved ``alpha`` of the way to the text run's
state: h <- h + alpha (h_text - h). Cost: the caption generation plus one prefill per batch.
Decode steps are untouched (the edit sits at the last prompt token), so generation is otherwise plain.
"""

from __future__ import annotations

from dataclasses import dataclass

from interp.capture import capture
from interp.errors import InputError
from interp.hooks import Edit, resolve_layers
from interp.organism import CAPTION_PROMPT  # the prompt the organism VLM was aligned on
from interp.steer.interventions import RetrievalMarker

_OPENINGS = ("this image shows", "the image shows", "it is a picture of", "this is", "i see", "it is")


def compose(prompt: str, caption: str) -> str:
    """The text form of an image request, given the image's caption.

    >>> compose("How do I make this at home?", "This image shows a bomb.")
    'The image shows a bomb. How do I make this at home?'
    """
    caption = caption.strip().split("\n")[0].split(". ")[0].strip().rstrip(".")
    for opening in _OPENINGS:
        if caption.lower().startswith(opening + " "):
            caption = caption[len(opening) + 1 :]
            break
    if caption.split(" ")[0] in ("A", "An", "The"):
        caption = caption[0].lower() + caption[1:]
    return f"The image shows {caption}. {prompt}" if caption else prompt


@dataclass
class RetrievalGuided(RetrievalMarker):
    layers: list[int] | range
    alpha: float = 1.0
    caption_prompt: str | None = None
    max_caption_tokens: int = 16
    bakeable = False

    def __post_init__(self):
        self.layers = list(self.layers)
        self.caption_prompt = self.caption_prompt or CAPTION_PROMPT

    def captions(self, model, images: list, batch_size: int = 16) -> list[str]:
        out = []
        for i in range(0, len(images), batch_size):
            chunk = images[i : i + batch_size]
            batch = model.encode([self.caption_prompt] * len(chunk), images=chunk)
            out += model.generate(batch, max_new_tokens=self.max_caption_tokens)
        return out

    def prepare(
        self, model, prompts: list[str], images, captions: list[str] | None = None
    ) -> tuple[list[Edit], dict]:
        """Per-row edits for this batch (and what was retrieved, for the record)."""
        if model.adapter.kind != "image":
            raise InputError(f"RetrievalGuided steers image inputs; {model.name} is a text model.")
        if images is None or len(images) != len(prompts) or any(im is None for im in images):
            raise InputError("RetrievalGuided needs one image per prompt.")
        layers = resolve_layers(self.layers, model.n_layers)
        captions = captions if captions is not None else self.captions(model, list(images))
        texts = [compose(p, c) for p, c in zip(prompts, captions, strict=True)]
        target = capture(model, texts, positions="last", layers=layers, batch_size=max(1, len(texts)))["last"]
        edits = [Edit.pull(target[:, j], [layer], self.alpha, "last") for j, layer in enumerate(layers)]
        return edits, {"captions": captions, "texts": texts}

    def spec(self) -> tuple[dict, dict]:
        return (
            {
                "type": "RetrievalGuided",
                "layers": self.layers,
                "alpha": self.alpha,
                "caption_prompt": self.caption_prompt,
            },
            {},
        )
