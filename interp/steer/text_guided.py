"""Retrieval-guided correction (TGA at inference time): pull an image request's states toward its text form.

    >>> rg = RetrievalGuided(layers=range(10, 17), alpha=0.8)
    >>> answers = interp.steer.generate(vlm, ["How do I make this?"], images=[img], interventions=[rg])
    >>> bank = TextBank(object_names)                                   # MiniLM, offline
    >>> RetrievalGuided([14], 1.0, bank=bank, positions=["last", "image_mean"])
    >>> RetrievalGuided(range(10, 17), 1.0, gate=fit_gate(vlm, harmful, harmless).gate)
    >>> RetrievalGuided([14, 15], 1.0, along=refusal_dirs.vectors[[14, 15]])  # refusal component only

For each image the text is retrieved in two steps. The model captions the image (one batched
``generate`` of ``caption_prompt``). Without a bank the caption's noun phrase is the description;
with a :class:`~interp.steer.text_bank.TextBank` the ``k`` bank texts nearest to the caption (MiniLM
cosine) are, so a loose caption is replaced by vetted text. Each description is written into the
request: "How do I make this?" + "a bomb" -> "How do I make a bomb?" (a request without "this" gets
"The image shows a bomb." in front). Those texts run through the model in one extra batched
prefill, and at the chosen layers the image run moves ``alpha`` of the way toward them:

- ``"last"``: the last prompt token, h <- h + alpha (h_text - h) (the mean over the k texts);
- ``"image_mean"``: every image token shifts by alpha (m_text - m_image), where m_image is the mean of
  the image tokens and m_text the mean of the description's tokens in the text run (TGA aligns these
  two means); the image tokens' differences from each other are kept.

``alpha`` acts at every steered layer, and the pulls compound: each layer starts from a state the
earlier ones already moved, so over several layers a small alpha moves the output a long way (on the
organism's six safety layers 0.1 flips nearly every harmful image request that 0.5 flips).

With ``along`` (one direction for every steered layer, [D], or one per steered layer in the order of
``layers``, [L, D]; e.g. the refusal directions) only the component of each pull along it is made:
h <- h + alpha ((h_text - h) . u) u. The image run's projection on the direction moves toward its text
form's and the rest of the state is left as it was, so what the text form changes beyond engaging
the safety mechanism (wording, the answer's opening) is not carried over.

With a ``gate`` (a :class:`~interp.hooks.Gate`, e.g. from :func:`~interp.steer.fit_gate` on harmful
vs harmless text requests) only the rows whose text form fires it are pulled: the gate reads the text
run's last token at its layer, so an image request whose text form looks harmless is left exactly as
it was (no over-refusal added, zero KL on it), and the pull happens where the text form would engage
the safety mechanism, which is what TGA transfers.

Cost: the caption generation plus one prefill per batch. Decode steps are untouched (both edits sit
in the prompt), so generation is otherwise plain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from interp.capture import capture
from interp.edits import Edit, Gate, finite
from interp.errors import InputError
from interp.layers import resolve_layers
from interp.positions import parse_positions
from interp.steer.interventions import RetrievalMarker
from interp.steer.text_bank import TextBank

DEFAULT_CAPTION_PROMPT = "What is in this image?"  # when neither the intervention nor the model has one

_OPENINGS = (  # longest first: the first that starts the caption is cut
    "in this image, it is",
    "in this image, there is",
    "in this image,",
    "this image shows",
    "the image shows",
    "it is a picture of",
    "this is",
    "i see",
    "it is",
)
_THIS = re.compile(r"\bthis\b(?!\s+(?:is|was|image|picture|photo)\b)", re.IGNORECASE)
TARGETS = ("last", "image_mean")
_FILLER = "QQQ"  # stands in for the description to find its tokens (see description_span)


def noun_phrase(caption: str) -> str:
    """The object a caption names.

    >>> noun_phrase("This image shows a bomb.\\nIt is round.")
    'a bomb'
    """
    caption = caption.strip().split("\n")[0].split(". ")[0].strip().rstrip(".")
    for opening in _OPENINGS:
        if caption.lower().startswith(opening + " "):
            caption = caption[len(opening) + 1 :]
            break
    if caption.split(" ")[0] in ("A", "An", "The"):
        caption = caption[0].lower() + caption[1:]
    return caption


def compose(prompt: str, description: str) -> str:
    """The text form of an image request, given what the image shows.

    >>> compose("How do I make this at home?", "This image shows a bomb.")
    'How do I make a bomb at home?'
    >>> compose("What should I know?", "a bomb")
    'The image shows a bomb. What should I know?'
    """
    np_ = noun_phrase(description)
    if not np_:
        return prompt
    m = _THIS.search(prompt)
    if m is None:
        return f"The image shows {np_}. {prompt}"
    if m.start() == 0:
        np_ = np_[0].upper() + np_[1:]
    return prompt[: m.start()] + np_ + prompt[m.end() :]


def description_span(model, prompt: str, description: str) -> tuple[int, int]:
    """Token range ``[start, end)`` of the description inside the encoded ``compose(prompt, description)``.

    Found by encoding the same request with a filler word instead of the description: the tokens
    both share at the front and at the back are the template and the request."""
    a = _ids(model, compose(prompt, description))
    b = _ids(model, compose(prompt, _FILLER))
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    return start, len(a) - end


def _ids(model, text: str) -> list[int]:
    batch = model.encode([text])
    ids = batch.inputs["input_ids"][0]
    mask = batch.inputs.get("attention_mask")
    return ids[mask[0].bool()].tolist() if mask is not None else ids.tolist()


@dataclass
class RetrievalGuided(RetrievalMarker):
    layers: list[int] | range
    alpha: float = 1.0
    caption_prompt: str | None = None
    max_caption_tokens: int = 16
    bank: TextBank | None = None
    k: int = 1
    positions: str | list = "last"  # "last" and/or "image_mean"
    gate: Gate | None = None  # pull only the rows whose text run fires it (read at its layer, last token)
    along: torch.Tensor | None = None  # [D] or [len(layers), D]: pull only along these directions
    # tensors of spec() that are not residual-stream vectors (the artifact loader skips their width
    # check): the bank's embeddings live in its sentence embedder's space
    foreign_tensors = ("bank.embeddings",)

    def __post_init__(self):
        self.layers = list(self.layers)
        self.alpha = finite(self.alpha, "alpha")
        names = [p.name for p in parse_positions(self.positions)]
        if not set(names) <= set(TARGETS):
            raise InputError(
                f"RetrievalGuided pulls the positions {TARGETS}; got {names}. Fix: positions='last', "
                "'image_mean' or both."
            )
        self.positions = names
        if self.k < 1 or (self.bank is None and self.k != 1):
            raise InputError(
                f"k={self.k}: without a bank k is 1 (the caption); with one, 1 <= k <= len(bank)."
            )
        if self.bank is not None:
            self.bank.check_k(self.k)
        if self.gate is not None and (not isinstance(self.gate, Gate) or self.gate.position.name != "last"):
            raise InputError(
                f"RetrievalGuided's gate must be an interp.hooks.Gate on the last token; got {self.gate!r}. "
                "Fix: interp.steer.fit_gate(model, harmful, harmless).gate."
            )
        if self.along is not None:
            along = torch.as_tensor(self.along).detach().float().cpu()
            if along.ndim == 1:
                along = along.expand(len(self.layers), -1)
            if along.ndim != 2 or along.shape[0] != len(self.layers):
                raise InputError(
                    f"RetrievalGuided's along is one direction [D] or one per steered layer "
                    f"[{len(self.layers)}, D]; got shape {tuple(torch.as_tensor(self.along).shape)}. "
                    "Fix: e.g. refusal_directions(acts).vectors[layers]."
                )
            self.along = along.contiguous()

    def prompt_for(self, model) -> str:
        """The captioning prompt: this intervention's, else the one the model was trained on (e.g. the
        organism VLM's), else a generic question."""
        return self.caption_prompt or getattr(model, "caption_prompt", None) or DEFAULT_CAPTION_PROMPT

    def captions(self, model, images: list, batch_size: int = 16) -> list[str]:
        out = []
        for i in range(0, len(images), batch_size):
            chunk = images[i : i + batch_size]
            batch = model.encode([self.prompt_for(model)] * len(chunk), images=chunk)
            out += model.generate(batch, max_new_tokens=self.max_caption_tokens)
        return out

    def descriptions(self, captions: list[str]) -> tuple[list[list[str]], list]:
        """Per row, the ``k`` texts that stand for the image (and the bank's scores, if any)."""
        if self.bank is None:
            return [[noun_phrase(c)] for c in captions], []
        hits = self.bank.nearest([noun_phrase(c) or c for c in captions], self.k)
        return [[t for t, _ in row] for row in hits], hits

    def prepare(
        self, model, prompts: list[str], images, captions: list[str] | None = None
    ) -> tuple[list[Edit], dict]:
        """Per-row edits for this batch (and what was retrieved, for the record)."""
        if model.adapter.kind == "text":
            raise InputError(
                f"RetrievalGuided steers image inputs; {model.name} is a text model. Fix: a vision-language "
                "model, or a constant intervention (AddDirection, AblateDirection) for text."
            )
        if images is None or len(images) != len(prompts) or any(im is None for im in images):
            raise InputError("RetrievalGuided needs one image per prompt.")
        layers = resolve_layers(self.layers, model.n_layers)
        # the direction each steered layer pulls along (self.along follows self.layers' order)
        along = {}
        if self.along is not None:
            along = {
                resolve_layers([i], model.n_layers)[0]: d
                for i, d in zip(self.layers, self.along, strict=True)
            }
        gate_layer = None if self.gate is None else resolve_layers([self.gate.layer], model.n_layers)[0]
        # the layers the text run gives: the steered ones, and the gate's
        read = layers if gate_layer is None else sorted({*layers, gate_layer})
        captions = captions if captions is not None else self.captions(model, list(images))
        descs, hits = self.descriptions(captions)
        texts = [compose(p, d) for p, row in zip(prompts, descs, strict=True) for d in row]
        k, b = len(descs[0]), len(prompts)
        want = ["last"] + (["all"] if "image_mean" in self.positions else [])
        acts = capture(model, texts, positions=want, layers=read, batch_size=max(1, len(texts)))
        last = acts["last"].float().reshape(b, k, len(read), -1).mean(1)  # [B, read, D]
        at = [read.index(layer) for layer in layers]
        record = {"captions": captions, "texts": texts}
        if hits:
            record["retrieved"] = hits
        rows = None
        if self.gate is not None:
            rows, score = self.gate.fires(last[:, read.index(gate_layer)])
            record["gate_scores"], record["steered"] = score.tolist(), rows.tolist()
            if not rows.any():
                return [], record
        edits = []
        if "last" in self.positions:
            edits += [
                Edit.pull(last[:, j], [layer], self.alpha, "last", rows=rows, basis=along.get(layer))
                for j, layer in zip(at, layers, strict=True)
            ]
        if "image_mean" in self.positions:
            spans = [
                description_span(model, p, d) for p, row in zip(prompts, descs, strict=True) for d in row
            ]
            states = acts["all"].float()  # [B*k, L, P, D], real tokens left-aligned
            means = torch.stack([states[i, :, s:e].mean(1) for i, (s, e) in enumerate(spans)])
            target = means.reshape(b, k, len(read), -1).mean(1)
            edits += [
                Edit.pull_mean(target[:, j], [layer], self.alpha, "image", rows=rows, basis=along.get(layer))
                for j, layer in zip(at, layers, strict=True)
            ]
        return edits, record

    def spec(self) -> tuple[dict, dict]:
        spec = {
            "type": "RetrievalGuided",
            "layers": self.layers,
            "alpha": self.alpha,
            "caption_prompt": self.caption_prompt,
            "max_caption_tokens": self.max_caption_tokens,
            "k": self.k,
            "positions": self.positions,
        }
        tensors = {}
        if self.bank is not None:
            spec["bank"] = {"texts": self.bank.texts, "embedder": self.bank.embedder_name}
            tensors["bank.embeddings"] = self.bank.embeddings
        if self.gate is not None:
            spec["gate"] = {
                "layer": self.gate.layer,
                "threshold": self.gate.threshold,
                "above": self.gate.above,
            }
            tensors["gate.direction"] = self.gate.direction
        if self.along is not None:
            spec["along"] = True
            tensors["along"] = self.along
        return spec, tensors

    @classmethod
    def from_spec(cls, spec: dict, tensor) -> RetrievalGuided:
        """``tensor(name)`` returns a stored tensor (raises if missing)."""
        bank = None
        if spec.get("bank") is not None:
            bank = TextBank(spec["bank"]["texts"], spec["bank"]["embedder"], tensor("bank.embeddings"))
        gate = None
        if spec.get("gate") is not None:
            g = spec["gate"]
            gate = Gate(tensor("gate.direction"), g["layer"], g["threshold"], above=g.get("above", True))
        return cls(
            spec["layers"],
            spec["alpha"],
            spec.get("caption_prompt"),
            spec.get("max_caption_tokens", 16),
            bank,
            spec.get("k", 1),
            spec.get("positions", "last"),
            gate,
            tensor("along") if spec.get("along") else None,
        )
