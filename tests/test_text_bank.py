"""TextBank and SentenceEmbedder: a tiny random BERT (fast) and the real all-MiniLM-L6-v2 (slow)."""

import pytest
import torch

from interp.errors import InputError
from interp.steer import SentenceEmbedder, TextBank

TEXTS = ["a bomb", "a cookie", "a bicycle", "a pistol", "a flower"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(
        {w for t in TEXTS for w in t.split()} | {"this", "image", "shows", "."}
    )
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(str(path / "vocab.txt")).save_pretrained(path)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertModel(cfg).save_pretrained(path)
    return SentenceEmbedder.load(str(path))


def test_embeddings_are_unit_mean_pooled_and_batch_independent(tiny_bert):
    e = tiny_bert.encode(TEXTS)
    assert e.shape == (len(TEXTS), 32)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(len(TEXTS)))
    one = tiny_bert.encode([TEXTS[2]])  # padding in the batch does not change a row
    torch.testing.assert_close(one[0], e[2], rtol=1e-4, atol=1e-5)
    enc = tiny_bert.tokenizer([TEXTS[0]], return_tensors="pt")
    manual = tiny_bert.model(**enc).last_hidden_state.mean(1)[0]
    torch.testing.assert_close(e[0], manual / manual.norm(), rtol=1e-4, atol=1e-5)


def test_nearest_finds_each_text_and_ranks(tiny_bert):
    bank = TextBank.with_embedder(TEXTS, tiny_bert)
    hits = bank.nearest(TEXTS, k=3)
    assert [row[0][0] for row in hits] == TEXTS
    for row in hits:
        assert row[0][1] == pytest.approx(1.0, abs=1e-5)
        assert row[0][1] >= row[1][1] >= row[2][1]
    assert bank.nearest([], k=1) == []


def test_bank_errors(tiny_bert):
    with pytest.raises(InputError, match="at least one text"):
        TextBank([], tiny_bert.name, torch.zeros(0, 32))
    with pytest.raises(InputError, match="empty"):
        TextBank(["a bomb", " "], tiny_bert.name, torch.zeros(2, 32))
    with pytest.raises(InputError, match="made for another bank"):
        TextBank(TEXTS, tiny_bert.name, torch.zeros(3, 32))
    with pytest.raises(InputError, match="NaN"):
        TextBank(TEXTS, tiny_bert.name, torch.full((5, 32), float("nan")))
    bank = TextBank.with_embedder(TEXTS, tiny_bert)
    with pytest.raises(InputError, match="k=6"):
        bank.nearest(["a bomb"], k=6)
    other = TextBank(TEXTS, tiny_bert.name, torch.randn(5, 16), tiny_bert)
    with pytest.raises(InputError, match="another model"):
        other.nearest(["a bomb"])
    with pytest.raises(InputError, match="could not load"):
        SentenceEmbedder.load("/nonexistent/embedder")


@pytest.mark.slow
def test_minilm_snaps_captions_to_object_names():
    """The packaged all-MiniLM-L6-v2 maps the organism's captions (and looser wording) to the right name."""
    from interp.organism.render import OBJECTS

    names = [o.name for o in OBJECTS]
    bank = TextBank([f"a {n}" for n in names])
    assert bank.embeddings.shape == (len(names), 384)
    queries = {
        "a round black bomb with a fuse": "a bomb",
        "a handgun": "a pistol",
        "a puppy": "a dog",
        "a kitten": "a cat",
    }
    got = [row[0][0] for row in bank.nearest(list(queries), k=1)]
    assert got == list(queries.values())


def test_the_caption_prompt_comes_from_the_intervention_then_the_model_then_a_default():
    from types import SimpleNamespace

    from interp.steer.text_guided import DEFAULT_CAPTION_PROMPT, RetrievalGuided

    trained = SimpleNamespace(caption_prompt="Name the object.")
    plain = SimpleNamespace(caption_prompt=None)
    assert RetrievalGuided([0]).prompt_for(trained) == "Name the object."
    assert RetrievalGuided([0]).prompt_for(plain) == DEFAULT_CAPTION_PROMPT
    assert RetrievalGuided([0], caption_prompt="Say it.").prompt_for(trained) == "Say it."


def test_loading_the_embedder_prints_nothing():
    # the retrieval bank's MiniLM loads without a "Loading weights" bar in the user's output
    import subprocess
    import sys

    code = "from interp.steer.text_bank import _load, DEFAULT_EMBEDDER; _load(DEFAULT_EMBEDDER); print('ok')"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "ok" and "Loading weights" not in run.stderr, run.stderr[-500:]


def test_a_pickled_bank_leaves_the_embedder_behind_and_loads_it_again(tiny_bert):
    import pickle

    bank = TextBank.with_embedder(TEXTS, tiny_bert)
    blob = pickle.dumps(bank)
    assert len(blob) < 20_000  # texts and embeddings, not the encoder's weights
    back = pickle.loads(blob)
    assert back._embedder is None and back.texts == bank.texts
    torch.testing.assert_close(back.embeddings, bank.embeddings)
    assert back.nearest(TEXTS[:2]) == bank.nearest(TEXTS[:2])  # the embedder loaded again, by its name
