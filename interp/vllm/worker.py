"""interp's steering inside a vLLM worker: per request, on vLLM's flat token batches.

    >>> steerer = Steerer.install(runner, artifacts)        # runner: the worker's model runner, after load
    >>> # each request names its steering in SamplingParams.extra_args["interp_steering"]:
    >>> SamplingParams(extra_args={"interp_steering": [{"artifact": "refusal_add", "strength": 0.5}]})

Every forward is planned once, before it runs (a pre-hook on the model): each scheduled token is
mapped to its request (the runner's request order and ``query_start_loc``) and to its absolute
position in that request's sequence, and each request's steering is read from its sampling
parameters. Requests that ask for the same steering share its edits; every edit gets the mask of the
tokens it touches (its requests, its positions, decided against the request's prompt length:
:mod:`interp.vllm.tokens`). Hooks on the decoder layers (and, for ablations of every writer, on the
embedding, attention and MLP outputs) then apply :class:`interp.edits.Edit` exactly as interp's HF
hooks do, on a ``[1, tokens, D]`` view. A forward with no steered request is not touched.

vLLM's Llama-style decoder layers return ``(hidden, residual)``, the block output and the stream
before it, added together only by the next layer's fused add-and-norm; the residual stream after
layer ``i`` is their sum. A steered layer returns ``(0, edited sum)``, which the next layer (or the
final norm) adds back exactly.

Conditional steering (a CAST gate) is decided per request in the step that holds the token the gate
reads (the prompt's last token), at the gate's layer, on that layer's unedited output, exactly as
interp's hooks decide it in the prefill; the decision is kept for the request's later decode steps.
Its edits must touch only that token and the ones after it (positions ``last`` / ``generated``, as
CAST steers the answer): a chunked prefill runs the earlier prompt tokens in earlier steps, before the
decision exists, so a gated edit of them is listed as unservable with the reason. So is
retrieval-guided steering (it needs a caption generation per request).

Image requests: image-token positions come from vLLM's placeholder ranges (``mm_features``), and an
``image`` position selects no token of a text request (interp's hooks refuse a text row there; a
server takes mixed traffic). Token-embedding edits run on the first decoder layer's input, at text
tokens only (see :meth:`Steerer._embed_hook`).

Prefix caching: a steering whose edit of a token does not depend on where the prompt ends
(:func:`prefix_stable`: positions ``all``, ``image`` or a fixed index, no gate, every request alike)
computes a prefix the same way in every request, so requests with that steering may share it (their
``cache_salt`` is the steering's). Any other steering (``last``, ``generated``, ``prompt``, a gate,
image requests only) may leave a prompt's blocks edited in a way a longer prompt would not; such
requests get a salt of their own (:func:`interp.vllm.cache_salt`), so their blocks are never reused.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from interp.edits import Edit, Gate, check_gate_layer
from interp.errors import InputError, InterpError
from interp.layers import resolve_layers
from interp.positions import Position
from interp.vllm.names import KEY
from interp.vllm.tokens import StepTokens, token_requests

log = logging.getLogger("interp.vllm")
Steering = tuple[tuple[str, float], ...]


@dataclass
class Artifacts:
    """The steering artifacts a vLLM engine may apply, by name: their edits at strength 1, and the
    ones that cannot run inside vLLM with the reason."""

    edits: dict[str, list[Edit]] = field(default_factory=dict)
    unservable: dict[str, str] = field(default_factory=dict)
    max_strength: float = 100.0

    @classmethod
    def from_dir(
        cls, directory, n_layers: int | None = None, d_model: int | None = None, fingerprint=None
    ) -> Artifacts:
        """Every ``*.safetensors`` artifact of ``directory``. ``fingerprint``: the served model's
        (:func:`interp.vllm.fingerprint.checkpoint_fingerprint`); an artifact made for another model
        is refused with the reason. Without it, ``n_layers`` and ``d_model`` are checked if given
        (neither: each artifact is read as made, to check requests before they are sent)."""
        from interp.serve.store import artifact_files
        from interp.steer.artifact import load

        out = cls()
        for path in artifact_files(directory):
            art = load(path, None)
            if fingerprint is not None:
                fingerprint.check(art.fingerprint, f"steering artifact {path.name}")
            elif n_layers is not None and (art.fingerprint.n_layers, art.fingerprint.d_model) != (
                n_layers,
                d_model,
            ):
                raise InputError(
                    f"steering artifact {path.name} was made for a model with {art.fingerprint.n_layers} layers "
                    f"of width {art.fingerprint.d_model}; this one has {n_layers} of width {d_model}."
                )
            try:
                out.edits[path.stem] = edits_of(
                    art.interventions, n_layers or art.fingerprint.n_layers, _kind(art.fingerprint.model_type)
                )
            except InterpError as e:  # refused for vLLM (a wrong layer too): listed, with the reason
                out.unservable[path.stem] = str(e)
                log.warning("not serving artifact %s in vLLM: %s", path.name, e)
        return out

    def resolve(self, items) -> Steering:
        """A request's steering list, checked: ``[{"artifact": name, "strength": number}, ...]`` (or a
        JSON string of it, as ``vllm_xargs`` carries it)."""
        if isinstance(items, str):
            try:
                items = json.loads(items)
            except json.JSONDecodeError as e:
                raise InputError(f"{KEY} is not JSON ({e}).") from None
        from interp.serve.errors import APIError
        from interp.serve.store import resolve_steering

        try:
            return resolve_steering(items, self.edits, self.unservable, self.max_strength, where=" by vLLM")
        except APIError as e:  # the same checks as interp serve; the middleware gives the status again
            raise InputError(e.message) from None

    def scaled(self, steering: Steering) -> list[Edit]:
        return [e.scaled(s) for name, s in steering for e in self.edits[name]]

    def shares_prefixes(self, steering: Steering) -> bool:
        """Whether requests with ``steering`` may share cached prompt prefixes (:func:`prefix_stable`)."""
        return all(name in self.edits and prefix_stable(self.edits[name]) for name, _ in steering)


def edits_of(interventions, n_layers: int, kind: str = "text") -> list[Edit]:
    """The hook edits of an artifact's interventions, with their layers resolved; refused (with the
    reason) where they cannot run per request inside vLLM. ``kind``: the model's (``text`` or
    ``image``), as interp's adapter has it: a full ablation in a vision-language model also ablates
    each layer's output, where image features enter the stream."""
    from interp.steer.interventions import RetrievalMarker

    out = []
    for item in interventions:
        if isinstance(item, RetrievalMarker):
            raise InputError(
                f"{type(item).__name__} writes a caption per image request before it steers; vLLM runs no "
                "such step. Fix: serve it with `interp serve` (the HF engine)."
            )
        for e in item.edits(_Shape(n_layers, kind)):
            if e.gate is not None:
                _check_gate(e, n_layers)
            if e.op not in ("add", "ablate", "set", "affine"):
                raise InputError(f"a {e.op} edit has no vLLM form yet. Fix: serve it with `interp serve`.")
            out.append(replace(e, layers=resolve_layers(e.layers, n_layers)))
    return out


AFTER_THE_GATE = ("last", "generated")


def _check_gate(edit: Edit, n_layers: int) -> None:
    """A gated edit runs inside vLLM when every token it edits comes at or after the token its gate
    reads, in a layer at or after the gate's (see the module docstring)."""
    gate = edit.gate
    early = [p.name for p in edit.positions if p.kind not in AFTER_THE_GATE]
    if gate.position.kind != "last" or early:
        raise InputError(
            f"conditional steering whose gate reads {gate.position.name!r} and edits {early or 'it'}: vLLM's "
            "chunked prefill may run those prompt tokens in an earlier step than the one where the gate decides "
            "(on the prompt's last token). Fix: give the gated interventions positions 'last' and/or "
            "'generated' (CAST steers the answer), or serve it with `interp serve`."
        )
    check_gate_layer(edit, n_layers)


def prefix_stable(edits: list[Edit]) -> bool:
    """Whether ``edits`` change each token the same way in every prompt that starts with it: no gate,
    every request alike, and positions that do not depend on where the prompt ends (``all``,
    ``image``, an index from the start). Only then may requests with this steering share cached
    prompt prefixes."""
    return all(
        e.gate is None
        and not e.image_rows_only
        and all(p.kind in ("all", "image") or (p.kind == "index" and p.index >= 0) for p in e.positions)
        for e in edits
    )


@dataclass
class _Shape:
    """What an intervention's ``edits`` reads of a model: its depth and its kind."""

    n_layers: int
    kind: str = "text"

    @property
    def adapter(self):
        return self


def _kind(family: str) -> str:
    """``text`` or ``image`` for the family an artifact was made on (interp's adapter registry)."""
    from interp.models.adapters import ADAPTERS

    adapter = ADAPTERS.get(family)
    if adapter is None or adapter.kind not in ("text", "image"):
        raise InputError(
            f"artifacts made on a {family!r} model have no vLLM form (interp steers text and image-text "
            "decoders inside vLLM). Fix: serve it with `interp serve`."
        )
    return adapter.kind


class Steerer:
    """Hooks on one vLLM model that apply each request's steering (see the module docstring)."""

    def __init__(self, runner, artifacts: Artifacts, layers: nn.ModuleList):
        self.runner, self.artifacts, self.layers = runner, artifacts, layers
        self.plan: dict[tuple[int, str], list[tuple[Edit, torch.Tensor]]] = {}
        self.gates: dict[int, list[tuple[Gate, torch.Tensor]]] = {}  # layer -> (gate, its read tokens)
        self.decided: dict[tuple[str, int], bool] = {}  # (req_id, id(gate)) -> fired, kept across steps
        self._req_ids: list[str] = []
        self._request: torch.Tensor | None = None  # this step's token -> request index
        self._fired: dict[int, torch.Tensor] = {}  # id(gate) -> bool per token, this step
        self._steering: dict[str, Steering] = {}  # req_id -> its resolved steering
        self._edits: dict[Steering, list[Edit]] = {}
        self._prepared: dict[int, tuple] = {}
        self.handles: list = []
        self.errors: dict[str, str] = {}  # req_id -> why its steering was refused

    @classmethod
    def install(cls, runner, artifacts: Artifacts) -> Steerer:
        model = runner.get_model() if hasattr(runner, "get_model") else runner.model
        layers, _ = decoder_layers(model)
        s = cls(runner, artifacts, layers)
        s.handles.append(model.register_forward_pre_hook(s._plan_step, with_kwargs=True))
        for i, layer in enumerate(layers):
            s.handles.append(layer.register_forward_hook(s._resid_hook(i)))
            for site, name in (("attn", "self_attn"), ("mlp", "mlp")):
                sub = getattr(layer, name, None)
                if sub is not None:
                    s.handles.append(sub.register_forward_hook(s._site_hook(i, site)))
        s.handles.append(layers[0].register_forward_pre_hook(s._embed_hook))
        return s

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    # --- planning -------------------------------------------------------------------------------
    def request_steering(self, req_id: str, state) -> Steering:
        if req_id not in self._steering:
            params = getattr(state, "sampling_params", None)
            extra = (getattr(params, "extra_args", None) or {}) if params is not None else {}
            steering: Steering = ()
            if KEY in extra:
                try:
                    steering = self.artifacts.resolve(extra[KEY])
                except InputError as e:  # the front end checks first; a direct caller is told in the log
                    self.errors[req_id] = str(e)
                    log.error("request %s: steering refused, generated unsteered: %s", req_id, e)
            self._steering[req_id] = steering
        return self._steering[req_id]

    def _plan_step(self, module, args, kwargs):
        self.plan, self.gates, self._fired = {}, {}, {}
        runner = self.runner
        batch = runner.input_batch
        num_reqs = batch.num_reqs
        if num_reqs == 0:
            return
        req_ids = list(batch.req_ids[:num_reqs])
        states = [runner.requests.get(r) for r in req_ids]
        steering = [
            self.request_steering(r, st) if st is not None else ()
            for r, st in zip(req_ids, states, strict=True)
        ]
        self._forget(set(req_ids))
        if not any(steering):
            return
        positions = kwargs.get("positions", args[1] if len(args) > 1 else None)
        query_start_loc = np.asarray(runner.query_start_loc.np[: num_reqs + 1])
        n_tokens = int(positions.shape[-1])
        request = token_requests(query_start_loc, n_tokens)
        if positions.ndim == 1:
            position = positions.detach().to("cpu", torch.long)
        else:  # M-RoPE positions: the text position from the request's computed tokens
            computed = torch.as_tensor(np.asarray(batch.num_computed_tokens_cpu[:num_reqs]), dtype=torch.long)
            offset = (
                torch.arange(n_tokens)
                - torch.as_tensor(query_start_loc[:-1], dtype=torch.long)[request.clamp(min=0)]
            )
            position = computed[request.clamp(min=0)] + offset
        facts = StepTokens(
            request,
            position,
            torch.tensor([st.num_prompt_tokens for st in states], dtype=torch.long),
            [_image_positions(st) for st in states],
        )
        device = positions.device
        self._req_ids, self._request = req_ids, request.to(device)
        for key in set(steering) - {()}:
            rows = torch.tensor([s == key for s in steering], dtype=torch.bool)
            if key not in self._edits:
                self._edits[key] = self.artifacts.scaled(key)
            on = facts.of_requests(rows)
            masks: dict[tuple, torch.Tensor] = {}
            for e in self._edits[key]:
                mk = (tuple(p.name for p in e.positions), e.image_rows_only, e.site == "embed")
                if mk not in masks:
                    m = on & _union(facts, e.positions)
                    if e.image_rows_only:
                        m = m & facts.of_requests(facts.image_requests())
                    if e.site == "embed":  # image features replace these embeddings (see _embed_hook)
                        m = m & ~facts.image_tokens()
                    masks[mk] = m.to(device)
                if e.gate is not None:
                    self._read(e.gate, on & facts.mask(e.gate.position), device)
                for layer in e.layers:
                    self.plan.setdefault((layer, e.site), []).append((e, masks[mk]))

    def _read(self, gate: Gate, tokens: torch.Tensor, device) -> None:
        """Have ``gate`` decide, at its layer, for the requests whose read token is in ``tokens``."""
        layer = gate.layer % len(self.layers)
        known = self.gates.setdefault(layer, [])
        for k, (g, t) in enumerate(known):
            if g is gate:
                known[k] = (g, t | tokens.to(device))
                return
        known.append((gate, tokens.to(device)))

    def _decide(self, index: int, stream: torch.Tensor) -> None:
        """The gates read at layer ``index`` decide, on its unedited output, for the requests whose
        read token this step holds; the decision is kept for the request's later steps."""
        for gate, tokens in self.gates.get(index, ()):
            rows = tokens[: stream.shape[0]].nonzero().flatten()
            if rows.numel() == 0:
                continue
            fired, _ = gate.fires(stream[rows])
            for t, f in zip(rows.tolist(), fired.tolist(), strict=True):
                self.decided[(self._req_ids[int(self._request[t])], id(gate))] = bool(f)
            self._fired.pop(id(gate), None)

    def _gate_tokens(self, gate: Gate, n: int, device) -> torch.Tensor:
        """bool [n]: the tokens of this step whose request's gate fired."""
        got = self._fired.get(id(gate))
        if got is None:  # a request whose gate has not decided is not steered by it
            fired = [self.decided.get((r, id(gate)), False) for r in self._req_ids]
            per_request = torch.tensor(fired, dtype=torch.bool).to(device)
            got = self._fired[id(gate)] = per_request[self._request.clamp(min=0)] & (self._request >= 0)
        return got[:n]

    def _forget(self, running: set[str]) -> None:
        """Drop what is kept for requests no longer running (bounded by the batch size)."""
        if len(self._steering) > 4 * max(len(running), 64):
            for r in [r for r in self._steering if r not in running]:
                self._steering.pop(r, None)
                self.errors.pop(r, None)
            self.decided = {k: v for k, v in self.decided.items() if k[0] in running}

    # --- applying -------------------------------------------------------------------------------
    def _apply(self, h: torch.Tensor, items) -> torch.Tensor:
        x = h.unsqueeze(0)
        for e, mask in items:
            key = id(e)
            got = self._prepared.get(key)
            if got is None or got[0].device != h.device or got[0].dtype != h.dtype:
                got = self._prepared[key] = e.prepare(x)
            m = mask[: x.shape[1]]
            if e.gate is not None:
                m = m & self._gate_tokens(e.gate, x.shape[1], m.device)
            x = e.apply(x, m.unsqueeze(0), got)
        return x.squeeze(0)

    def _resid_hook(self, index: int):
        def hook(module, args, output):
            items = self.plan.get((index, "resid"))
            if not items and index not in self.gates:
                return None
            if not (isinstance(output, tuple) and len(output) == 2):
                raise InputError(
                    f"vLLM decoder layer {index} ({type(module).__name__}) does not return (hidden, residual); "
                    "interp steers Llama-style vLLM models only. Fix: serve this model with `interp serve`."
                )
            hidden, residual = output
            stream = hidden if residual is None else hidden + residual
            self._decide(index, stream)
            if not items:
                return None
            return torch.zeros_like(hidden), self._apply(stream, items)

        return hook

    def _embed_hook(self, module, args):
        """Token-embedding edits, on the first decoder layer's input: the embeddings of the step's
        tokens, with image features already in place of image tokens' (a vision-language model's
        runner embeds before the model's forward, so a hook on the embedding would run before this
        step's plan). Image tokens are left out of the mask, as in interp's HF hooks, where the
        image features overwrite the edited embeddings."""
        items = self.plan.get((0, "embed"))
        if not items:
            return None
        positions, hidden, *rest = args
        return (positions, self._apply(hidden, items), *rest)

    def _site_hook(self, index: int, site: str):
        def hook(module, args, output):
            items = self.plan.get((index, site))
            if not items:
                return None
            if isinstance(output, tuple):
                return (self._apply(output[0], items), *output[1:])
            return self._apply(output, items)

        return hook


def _union(facts: StepTokens, positions: list[Position]) -> torch.Tensor:
    m = torch.zeros_like(facts.request, dtype=torch.bool)
    for p in positions:
        m = m | facts.mask(p)
    return m


def _image_positions(state) -> torch.Tensor | None:
    """bool [prompt_len]: the request's image-token positions (None: no multimodal input)."""
    features = getattr(state, "mm_features", None) or []
    if not features:
        return None
    out = torch.zeros(state.num_prompt_tokens, dtype=torch.bool)
    for f in features:
        if getattr(f, "modality", "image") != "image":
            continue
        r = f.mm_position
        span = torch.ones(r.length, dtype=torch.bool) if r.is_embed is None else r.is_embed.bool().cpu()
        out[r.offset : r.offset + r.length] = span
    return out


def decoder_layers(model: nn.Module) -> tuple[nn.ModuleList, nn.Module]:
    """The text decoder's layer list and token embedding of a vLLM model (Llama-style families and
    the language model inside a vision-language one)."""
    for prefix in (
        "model",
        "language_model.model",
        "model.language_model",
        "model.text_model",
        "language_model",
    ):
        try:
            root = model.get_submodule(prefix)
        except AttributeError:
            continue
        layers, embed = getattr(root, "layers", None), getattr(root, "embed_tokens", None)
        if isinstance(layers, nn.ModuleList) and embed is not None:
            return layers, embed
    raise InputError(
        f"cannot find the decoder layers of {type(model).__name__} (looked for model.layers and "
        "language_model.model.layers). Fix: serve this model with `interp serve`."
    )
