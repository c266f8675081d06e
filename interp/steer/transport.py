"""Learned per-neuron affine transport of activations, fitted locally (Linear-AcT) or end to end (LinEAS).

    >>> t = LinearTransport.fit(vlm, image_prompts, images, text_prompts, layers=range(10, 16),
    ...                         mode="end_to_end")                 # image-form states -> text-form states
    >>> interp.steer.generate(vlm, prompts, images=imgs, interventions=[t])
    >>> LinearTransport.fit(..., mode="end_to_end", sparsity=0.05).active_neurons()   # group-sparse maps
    >>> LinearTransport.fit(..., mode="end_to_end", keep=0.1).active_neurons()        # 10% of neurons
    >>> SteeringArtifact.create(vlm, [t], method="transport").save("transport.safetensors")

Each steered layer ``l`` gets a map ``h <- scale_l * h + bias_l`` per neuron, applied at ``positions``
(by default the last prompt token, where the fit reads the states). ``alpha`` interpolates between no
change (0) and the full map (1). The source and target sets need not be paired: the maps match
distributions, not rows. TGA's idea at inference time, learned: source = states of image-form
requests, target = states of the equivalent text-form requests.

- ``mode="local"`` fits every layer on its own from the unsteered model's states: per neuron, the
  least-squares affine fit of the 1-D optimal transport map (sorted source values against the target's
  quantiles at the same levels), as Linear-AcT does. A layer's map ignores what the earlier layers'
  maps already moved.
- ``mode="end_to_end"`` (LinEAS, Rodriguez et al. 2025, as we read it) trains all layers' maps
  jointly: the maps are applied in the forward pass over the source requests, so each layer sees the
  effect of the ones before, and the loss is, summed over the steered layers, the mean over neurons
  of the 1-D Wasserstein-1 distance between the steered source values and the target values, each
  neuron's divided by the target's standard deviation (the residual stream's few very large neurons
  would otherwise decide the fit). The maps start at the identity. ``sparsity`` > 0 adds a group
  penalty, ``sparsity`` times the mean over neurons of the norm of each neuron's ``(scale - 1,
  bias / target std)`` across layers, applied as a proximal step after each Adam step (in Adam's
  metric), so neurons the loss does not need stay untouched (``active_neurons``). ``keep`` sets the
  share of neurons moved instead: the dense fit ranks them, and a second fit trains only the top ones.

A map fitted from image-form sources to text-form targets applies to image requests only
(``image_rows_only``, decided per row from the prompt's image tokens): on a text request it would move
states that already are text-form states (on the organism, at full strength, it cut text-harmful
refusal by more than half in a validation run that steered every request).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor

from interp.edits import Edit, finite
from interp.errors import InputError
from interp.layers import resolve_layers
from interp.positions import Position, parse_positions, reduce_prefill

MODES = ("local", "end_to_end")


@dataclass
class LinearTransport:
    """Per-layer, per-neuron affine maps ``scale * h + bias`` (see the module docstring)."""

    scales: dict[int, Tensor]
    biases: dict[int, Tensor]
    alpha: float = 1.0
    positions: str | list = "last"
    metadata: dict = field(default_factory=dict)
    image_rows_only: bool = False

    def __post_init__(self):
        if not self.scales or sorted(self.scales) != sorted(self.biases):
            raise InputError(
                "LinearTransport needs a scale and a bias for the same, non-empty set of layers."
            )
        self.scales = {int(k): torch.as_tensor(v).float() for k, v in self.scales.items()}
        self.biases = {int(k): torch.as_tensor(v).float() for k, v in self.biases.items()}
        for layer in self.scales:
            s, b = self.scales[layer], self.biases[layer]
            if s.ndim != 1 or s.shape != b.shape:
                raise InputError(f"layer {layer}: scale and bias must be [D] vectors of one size.")
            if not (torch.isfinite(s).all() and torch.isfinite(b).all()):
                raise InputError(f"the transport map at layer {layer} contains NaN or inf.")
        self.alpha = finite(self.alpha, "alpha")
        parse_positions(self.positions)

    @property
    def layers(self) -> list[int]:
        return sorted(self.scales)

    def edits(self, model) -> list[Edit]:
        return [
            Edit.affine(
                self.scales[layer],
                self.biases[layer],
                [layer],
                self.alpha,
                self.positions,
                image_rows_only=self.image_rows_only,
            )
            for layer in self.layers
        ]

    def active_neurons(self, tol: float = 1e-6) -> int:
        """Neurons whose map is not the identity at some steered layer."""
        moved = torch.stack(
            [((self.scales[k] - 1).abs() > tol) | (self.biases[k].abs() > tol) for k in self.layers]
        )
        return int(moved.any(0).sum())

    def spec(self) -> tuple[dict, dict]:
        tensors = {f"scale.{k}": self.scales[k] for k in self.layers}
        tensors.update({f"bias.{k}": self.biases[k] for k in self.layers})
        return (
            {
                "type": "LinearTransport",
                "alpha": self.alpha,
                "positions": self.positions,
                "layers": self.layers,
                "metadata": self.metadata,
                "image_rows_only": self.image_rows_only,
            },
            tensors,
        )

    @classmethod
    def fit(
        cls,
        model,
        source_prompts: list[str],
        source_images,
        target_prompts: list[str],
        layers,
        target_images=None,
        mode: str = "end_to_end",
        sparsity: float = 0.0,
        keep: float | None = None,
        position: str = "last",
        alpha: float = 1.0,
        steps: int = 60,
        lr: float = 0.05,
        batch_size: int = 16,
        seed: int = 0,
        image_rows_only: bool | None = None,
    ) -> LinearTransport:
        """Maps that carry the source requests' states at ``layers`` (read at ``position``) to the
        target requests' distribution there. ``source_images`` / ``target_images``: one image per
        prompt or None. ``steps``, ``lr``, ``batch_size``: the end-to-end optimisation (Adam, a
        random minibatch of source requests per step); ``seed`` fixes it. ``keep``: the share of
        neurons (0 < keep <= 1) allowed to move, end to end only: a dense fit ranks the neurons by
        the size of their maps (``||(scale - 1, bias / target std)||`` across layers), and a second
        fit trains only the top ``keep`` share (a set support, where ``sparsity`` sets a penalty whose
        support depends on the data). ``image_rows_only``: apply the maps only to requests with an
        image; by default True when the sources have images and the targets none (an image-to-text
        map has nothing to do on a text request)."""
        if mode not in MODES:
            raise InputError(f"mode={mode!r}; choose one of {MODES}.")
        if len(source_prompts) < 2 or len(target_prompts) < 2:
            raise InputError(
                f"a transport fit needs at least 2 source and 2 target requests, got {len(source_prompts)} and "
                f"{len(target_prompts)}."
            )
        sparsity = finite(sparsity, "sparsity")
        if sparsity < 0 or (sparsity > 0 and mode == "local"):
            raise InputError(
                f"sparsity={sparsity}: it is a group penalty of the end-to-end fit (mode='end_to_end'), >= 0."
            )
        if keep is not None:
            keep = finite(keep, "keep")
            if not 0 < keep <= 1 or mode == "local":
                raise InputError(
                    f"keep={keep}: the share of neurons an end-to-end fit (mode='end_to_end') may move, "
                    "in (0, 1]."
                )
        if image_rows_only is None:
            image_rows_only = source_images is not None and target_images is None
        pos = parse_positions(position)
        if len(pos) != 1 or pos[0].kind not in ("last", "index", "mean", "image_mean"):
            raise InputError(f"position={position!r}: the fit reads one state per request (e.g. 'last').")
        ids = resolve_layers(layers, model.n_layers)
        if mode == "end_to_end" and source_images is not None and any(im is None for im in source_images):
            raise InputError("an end-to-end fit's source requests must all have an image, or none.")
        t0 = time.perf_counter()
        target = _states(model, target_prompts, target_images, ids, position, batch_size)  # [N, L, D]
        if mode == "local":
            source = _states(model, source_prompts, source_images, ids, position, batch_size)
            scale, bias = _local_maps(source, target)
            history = []
        else:
            fit = (
                model,
                source_prompts,
                source_images,
                target,
                ids,
                pos[0],
                sparsity,
                steps,
                lr,
                batch_size,
                seed,
            )
            scale, bias, history = _end_to_end(*fit)
            if keep is not None and keep < 1:
                size = torch.cat([scale - 1, bias / target.std(0).clamp(min=1e-3)]).norm(dim=0)  # [D]
                free = torch.zeros(size.shape[0], dtype=torch.bool)
                free[size.topk(max(1, round(keep * size.shape[0]))).indices] = True
                scale, bias, history = _end_to_end(*fit, free=free)
        meta = {
            "mode": mode,
            "sparsity": sparsity,
            "keep": keep,
            "read_position": position,
            "source_requests": len(source_prompts),
            "target_requests": len(target_prompts),
            "fit_seconds": round(time.perf_counter() - t0, 2),
        }
        if history:
            meta.update(
                steps=steps,
                lr=lr,
                batch_size=batch_size,
                seed=seed,
                loss_first=history[0],
                loss_last=history[-1],
            )
        return cls(
            {layer: scale[j] for j, layer in enumerate(ids)},
            {layer: bias[j] for j, layer in enumerate(ids)},
            alpha,
            position,
            meta,
            bool(image_rows_only),
        )


def _states(model, prompts, images, layers, position, batch_size) -> Float[Tensor, "n l d"]:
    from interp.capture import capture

    return capture(model, prompts, images=images, positions=position, layers=layers, batch_size=batch_size)[
        position
    ].float()


def quantiles_at(values: Float[Tensor, "n ..."], n: int) -> Float[Tensor, "m ..."]:
    """The empirical quantiles of ``values`` (along dim 0) at the ``n`` levels (i + 0.5) / n, by
    linear interpolation between order statistics: how a sample of ``n`` is compared with a sample of
    another size."""
    v = values.sort(0).values
    m = v.shape[0]
    if m == n:
        return v
    at = ((torch.arange(n, dtype=torch.float64) + 0.5) / n * m - 0.5).clamp(0, m - 1)
    lo = at.floor().long()
    hi = (lo + 1).clamp(max=m - 1)
    w = (at - lo).to(v.dtype).view(-1, *([1] * (v.ndim - 1)))
    return v[lo] * (1 - w) + v[hi] * w


def _local_maps(source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per layer and neuron, the least-squares affine fit of sorted source values to the target's
    quantiles at the same levels (the 1-D optimal transport map, made affine)."""
    x = source.sort(0).values  # [N, L, D]
    y = quantiles_at(target, x.shape[0])
    xm, ym = x.mean(0), y.mean(0)
    var = ((x - xm) ** 2).mean(0)
    cov = ((x - xm) * (y - ym)).mean(0)
    scale = torch.where(var > 1e-12, cov / var.clamp(min=1e-12), torch.ones_like(var))
    return scale, ym - scale * xm


def _end_to_end(
    model, prompts, images, target, layers, pos: Position, sparsity, steps, lr, batch_size, seed, free=None
):
    """``free``: bool [D], the neurons that may move (None: all); the others stay at the identity
    (their gradients are zeroed, so Adam never moves them)."""
    n_l, d = target.shape[1], target.shape[2]
    target_std = target.std(0).clamp(min=1e-3)  # [L, D]
    gain = torch.zeros(n_l, d, requires_grad=True)  # scale - 1
    shift = torch.zeros(n_l, d, requires_grad=True)  # the bias in units of the target's spread
    opt = torch.optim.Adam([gain, shift], lr=lr)
    g = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(steps):
        rows = torch.randperm(len(prompts), generator=g)[: min(batch_size, len(prompts))].tolist()
        steered = _steered_states(
            model,
            [prompts[i] for i in rows],
            [images[i] for i in rows] if images is not None else None,
            layers,
            gain,
            shift * target_std,
            pos,
        )
        y = quantiles_at(target, steered.shape[0])  # [B, L, D]
        # per layer: the mean over neurons of W1(steered, target) / target std; summed over layers
        loss = ((steered.sort(0).values - y).abs() / target_std).mean((0, 2)).sum()
        gain.grad, shift.grad = torch.autograd.grad(loss, [gain, shift])
        if free is not None:
            gain.grad[:, ~free] = 0
            shift.grad[:, ~free] = 0
        opt.step()
        if sparsity > 0:
            _group_prox(opt, gain, shift, lr, sparsity, len(history) + 1)
        history.append(round(float(loss.detach()), 5))
        if not math.isfinite(history[-1]):
            raise InputError("the transport fit diverged (the loss is not finite). Fix: lower lr.")
    return (1 + gain).detach(), (shift * target_std).detach(), history


def _group_prox(opt, gain: Tensor, shift: Tensor, lr: float, sparsity: float, t: int) -> None:
    """The proximal step of ``sparsity * mean_j ||(gain[:, j], shift[:, j])||``, one group per neuron
    across layers, in Adam's metric: a group's step size is ``lr`` over its mean bias-corrected
    root second moment, so the penalty is weighed against the size of that neuron's gradients (with a
    plain ``lr`` every group moves alike under Adam, and the penalty keeps all neurons or none)."""
    beta2 = opt.param_groups[0]["betas"][1]
    eps = opt.param_groups[0]["eps"]
    with torch.no_grad():
        root = torch.cat([(opt.state[p]["exp_avg_sq"] / (1 - beta2**t)).sqrt() + eps for p in (gain, shift)])
        step = lr / root.mean(0)  # [D]
        norm = torch.cat([gain, shift]).norm(dim=0)
        # the penalty is a mean over neurons, as the loss is: sparsity means the same at any width
        shrink = (1 - step * (sparsity / gain.shape[1]) / norm.clamp(min=1e-12)).clamp(min=0)
        gain.mul_(shrink)
        shift.mul_(shrink)


def _steered_states(model, prompts, images, layers, gain, bias, pos: Position) -> Float[Tensor, "b l d"]:
    """The states at ``layers`` (read at ``pos``) with the maps applied at ``pos`` in the forward,
    differentiable in ``gain`` and ``bias``; the forward stops after the last steered layer."""
    edits = [Edit.affine(1 + gain[j], bias[j], [layer], 1.0, [pos]) for j, layer in enumerate(layers)]
    batch = model.encode(prompts, images=images)
    with (
        torch.enable_grad(),
        model.hooks([max(layers)], [pos], edits=edits, stop=True, keep_layers=layers) as run,
    ):
        model.model(**batch.inputs)
    return torch.stack([reduce_prefill(run.kept[layer], run.layout, pos)[0] for layer in layers], 1).float()
