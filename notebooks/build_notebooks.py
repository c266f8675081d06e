"""Writes notebooks/*.ipynb from the cell lists below; with --execute, also runs them and writes the
executed copies, outputs included, to docs/notebooks/ for the documentation site.

    python notebooks/build_notebooks.py             # the sources (no outputs; tests/test_notebooks.py runs them)
    python notebooks/build_notebooks.py --execute   # + docs/notebooks/*.ipynb (minutes: real models)
    python notebooks/build_notebooks.py --execute 01_quickstart.ipynb   # one of them

tests/test_docs.py checks that each executed copy holds the current source's cells, run without error.
"""

import sys
from pathlib import Path

import nbformat as nbf


def nb(cells):
    n = nbf.v4.new_notebook()
    n.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    n.cells = [
        nbf.v4.new_markdown_cell(c[3:], id=f"c{i:02d}") if c.startswith("md:") else nbf.v4.new_code_cell(c, id=f"c{i:02d}")
        for i, c in enumerate(cells)
    ]  # fixed cell ids: rebuilding changes nothing that did not change
    return n


quick = [
    """md:# interp quickstart: where does the organism's refusal live?

The organism (`interp.load_model("organism")`) is SmolLM2-135M-Instruct with a safety LoRA trained on layers 10-16 only, so the answer is known. Runs offline on a laptop CPU in about a minute.""",
    """import interp
from interp.organism import held_out

model = interp.load_model("organism")
model""",
    """split = held_out()                      # prompts the safety tune never saw
harmful, harmless = split["harmful"][:24], split["harmless"][:24]
print(model.generate(model.encode([harmful[0], harmless[0]]), max_new_tokens=24))""",
    """md:## Capture the residual stream (last token, every layer)""",
    """acts = interp.capture(model, harmful + harmless, labels=["harmful"] * 24 + ["harmless"] * 24, positions="last")
acts["last"].shape   # [prompts, layers, d_model]""",
    """md:## A probe per layer

Probes read that a request is harmful; this is easy from the first layers on, which is why probes alone do not place the refusal.""",
    """probe = interp.locate.probe_layers(acts)
print("best layer", probe.best_layer, "accuracy", round(max(probe.scores), 3))
probe.figure()""",
    """md:## Where is refusal written? Patch attention and MLP outputs from harmful into harmless runs""",
    """maps = interp.locate.patch_components(model, harmful[:8], harmless[:8], sites=("attn", "mlp"), positions=[-3, -2, -1])
planted = list(range(10, 17))
interp.locate.figure([maps["attn"].profile(), maps["mlp"].profile()], shade=planted,
                     title="component patching (shaded: the planted LoRA window)")""",
    """scores = [a + m for a, m in zip(maps["attn"].profile().scores, maps["mlp"].profile().scores, strict=True)]
inside = sum(s for layer, s in enumerate(scores) if layer in planted) / sum(max(s, 0) for s in scores)
print(f"share of the (positive) component patching effect inside layers 10-16: {inside:.2f}")""",
]

cross = [
    """md:# Text vs image: does the organism VLM's safety see an image request?

`organism-vl` = EfficientNet-Lite0 (frozen) + a projector trained with a captioning loss (LLaVA stage 1) + the safety-tuned organism. TGA's finding is that such alignment does not carry safety to images. We measure it on held-out renderings.""",
    """import interp
from interp.organism import evaluate_refusal
from interp.organism.pairs import cross_modal_pairs

vlm = interp.load_model("organism-vl")
pairs = cross_modal_pairs(renderings=1)
harm = pairs.select("harmful")
print(harm.text[0], "|", harm.image[0])
harm.images[0]""",
    """# a batch is all text or all image prompts (processors need every prompt of a batch to carry images)
answers = vlm.generate(vlm.encode([harm.text[0]]), max_new_tokens=24)
answers += vlm.generate(vlm.encode([harm.image[0]], images=[harm.images[0]]), max_new_tokens=24)
for a in answers:
    print(repr(a))""",
    """text = interp.capture(vlm, pairs.text, labels=pairs.labels)
image = interp.capture(vlm, pairs.image, images=pairs.images, labels=pairs.labels)
cos = interp.locate.cross_modal_cosine(text, image)
transfer = interp.locate.probe_transfer(text, image)
interp.locate.figure([cos, transfer], shade=list(range(10, 17)), title="text vs image: cosine and probe transfer")""",
    """md:## Restoration: patch the text form's states into the image run""",
    """pm = interp.locate.patch_residual(vlm, harm.text, harm.image, corrupt_images=harm.images, positions=[-3, -2, -1])
print("refusal log-odds: text", round(pm.clean_metric, 2), "image", round(pm.corrupt_metric, 2))
pm.figure()""",
    """rates = {form: evaluate_refusal(vlm, prompts, images=imgs)["substring"]
         for form, prompts, imgs in [("text", harm.text, None), ("image", harm.image, harm.images)]}
rates""",
]
out = Path(__file__).parent
nbf.write(nb(quick), out / "01_quickstart.ipynb")
nbf.write(nb(cross), out / "02_cross_modal.ipynb")

steer_nb = [
    """md:# Steering: make the organism VLM refuse harmful image requests as it refuses their text form

Locate (the safety window), build a text-guided correction (CMRM-style shift and retrieval-guided pull), generate before/after, save the correction as an artifact.""",
    """import interp
from interp.organism.pairs import cross_modal_pairs
from interp.steer import RetrievalGuided, ShiftToText, SteeringArtifact

vlm = interp.load_model("organism-vl")
calib = cross_modal_pairs(renderings=1, first_seed=100)      # renderings never used in training or evaluation
test = cross_modal_pairs(renderings=1).select("harmful")        # held-out renderings""",
    """md:## 1. Where: the layers `interp locate`'s rule finds (from its patching maps alone: `find_layers`)""",
    """from interp.organism import held_out

split = held_out()
found = interp.locate.find_layers(vlm, split["harmful"][:8], split["harmless"][:8], last_positions=2)
print(found.layers, "(safety layers)" if found.named else "(candidate layers: the rule is not reliable on the organism suite)")
window = found.layers or list(range(10, 17))  # the planted window where the rule finds none""",
    """md:## 2. Build the corrections""",
    """shift = ShiftToText.fit(vlm, calib.image, calib.images, calib.text, layers=window[:1], positions="last")  # one layer: later layers already carry it
rg = RetrievalGuided(layers=window, alpha=1.0)""",
    """md:## 3. Before / after on held-out harmful image requests""",
    """prompts, images = test.image[:6], test.images[:6]
before = interp.steer.generate(vlm, prompts, images=images, max_new_tokens=20)
after_shift = interp.steer.generate(vlm, prompts, images=images, interventions=[shift], max_new_tokens=20)
after_rg, info = interp.steer.generate(vlm, prompts, images=images, interventions=[rg], max_new_tokens=20, return_info=True)
for p, o, b, a, c in zip(test.objects[:6], before, after_shift, after_rg, info[0]["captions"], strict=True):
    print(f"{p:8} | before: {o[:50]!r}\\n         | shift:  {b[:50]!r}\\n         | retrieval (caption {c[:25]!r}): {a[:50]!r}")""",
    """md:## 4. Save and reload the correction (safetensors + JSON, refuses other models)""",
    """import pathlib
import tempfile

path = SteeringArtifact.create(vlm, [shift], method="cmrm_shift").save(pathlib.Path(tempfile.mkdtemp()) / "shift.safetensors")
loaded = interp.steer.load(path, vlm)
loaded.method, [type(i).__name__ for i in loaded.interventions]""",
]
nbf.write(nb(steer_nb), out / "03_steering.ipynb")

if "--execute" in sys.argv:
    import os

    from nbclient import NotebookClient

    # figures as plotly's JSON for Jupyter and as HTML for the static site (plotly.js from its CDN)
    os.environ["PLOTLY_RENDERER"] = "plotly_mimetype+notebook_connected"
    docs = out.parent / "docs" / "notebooks"
    docs.mkdir(parents=True, exist_ok=True)
    names = [a for a in sys.argv[1:] if a.endswith(".ipynb")]  # some of them, or all
    for name in names or ("01_quickstart.ipynb", "02_cross_modal.ipynb", "03_steering.ipynb"):
        book = nbf.read(out / name, as_version=4)
        NotebookClient(book, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(out)}}).execute()
        nbf.write(book, docs / name)
        print(f"executed {name} -> {docs / name}")
