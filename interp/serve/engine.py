"""The batching engine: one thread owns the model; requests that arrive together share a ``generate``,
each row with its own steering.

    >>> engine = Engine(model, store, ServeConfig()); engine.start()
    >>> job = engine.submit(chat_request, asyncio.get_running_loop())
    >>> result = await job.result()          # or: async for kind, value in job.events(): ...

Isolation: the steering of a request becomes hook edits restricted to its own batch rows
(:attr:`interp.hooks.Edit.rows`; conditional steering decides per row too), so one request's steering
never touches another's tokens. A batch whose requests all ask for the same steering needs no row
masks: its edits act on every row, and on a text model its full ablations are folded into the weights
(:func:`interp.steer.folding.folded_ablation`; ``ServeConfig.fold_ablations``), where they cost nothing per
token. The server keeps a fold in place while consecutive batches ask for it, restores the model's
own weights when a batch asks for something else and when it stops, and keeps the edited copies of
the latest fold to swap back in later (one copy at a time). A batch that fails is retried one request at a time, so a bad
request fails alone. Greedy decoding only.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections import deque
from contextlib import ExitStack
from dataclasses import dataclass, field

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from interp.errors import InterpError
from interp.inputs import tokenize
from interp.serve.config import ServeConfig
from interp.serve.errors import APIError
from interp.serve.messages import ChatRequest
from interp.serve.store import ArtifactStore
from interp.steer.folding import ablated_weights, swapped_weights

log = logging.getLogger("interp.serve")
_ids = itertools.count()


@dataclass
class Result:
    text: str
    finish_reason: str  # "stop" (end of turn) or "length" (max_tokens)
    prompt_tokens: int
    completion_tokens: int
    batch_size: int  # how many requests shared the forward passes


@dataclass(eq=False)
class Job:
    request: ChatRequest
    loop: asyncio.AbstractEventLoop
    id: int = field(default_factory=lambda: next(_ids))
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    @property
    def key(self) -> bool:  # batches hold text-only or image requests, never both
        return bool(self.request.images)

    def emit(self, kind: str, value) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))

    async def events(self):
        """``("delta", text)`` while decoding (streaming requests), then ``("done", Result)``; raises the
        request's error instead of ``done`` when it failed."""
        while True:
            kind, value = await self.queue.get()
            if kind == "error":
                raise value
            yield kind, value
            if kind == "done":
                return

    async def result(self) -> Result:
        async for kind, value in self.events():
            if kind == "done":
                return value
        raise RuntimeError("job ended without a result")


class _Rows(BaseStreamer, StoppingCriteria):
    """Streamer + stopping criterion for a batch: collects each row's tokens up to its own
    ``max_tokens`` or end of turn, streams text deltas to streaming requests, and stops a row when done."""

    def __init__(self, jobs: list[Job], tokenizer, eos: set[int]):
        self.jobs, self.tokenizer, self.eos = jobs, tokenizer, eos
        self.tokens: list[list[int]] = [[] for _ in jobs]
        self.sent = [""] * len(jobs)
        self.done = [False] * len(jobs)
        self.stopped = [False] * len(jobs)  # ended by end of turn
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate passes the prompt first
            self.prompt_seen = True
            return
        for i, tok in enumerate(value.view(-1).tolist()):
            if self.done[i]:
                continue
            if tok in self.eos:
                self.done[i] = self.stopped[i] = True
                continue
            self.tokens[i].append(tok)
            self.done[i] = len(self.tokens[i]) >= self.jobs[i].request.max_tokens
            if self.jobs[i].request.stream:
                self.flush(i)

    def flush(self, i: int, final: bool = False) -> None:
        text = self.tokenizer.decode(self.tokens[i], skip_special_tokens=True)
        if text.endswith("\ufffd") and not final:  # half of a multi-byte character: wait for the rest
            return
        if len(text) > len(self.sent[i]) and text.startswith(self.sent[i]):
            self.jobs[i].emit("delta", text[len(self.sent[i]) :])
            self.sent[i] = text

    def end(self) -> None:
        pass

    def __call__(self, input_ids, scores, **kwargs) -> torch.Tensor:  # StoppingCriteria
        return torch.tensor(self.done, device=input_ids.device)


class Engine:
    def __init__(self, model, store: ArtifactStore, config: ServeConfig):
        self.model, self.store, self.config = model, store, config
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self._fold: tuple[tuple, ExitStack] | None = None  # (its key, what restores the weights)
        self._folded_weights: tuple[tuple, list] | None = None  # (key, edited copies) of the latest fold
        self.fold_error: str | None = None  # why folding failed (out of memory); hooks from then on
        tok = model.tokenizer
        eos = model.model.generation_config.eos_token_id if model.model.generation_config else None
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        self.eos = {int(e) for e in eos + [tok.eos_token_id] if e is not None}

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="interp-engine", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=60)
            self._thread = None

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, request: ChatRequest, loop: asyncio.AbstractEventLoop) -> Job:
        with self._lock:
            if self._pending >= self.config.max_pending:
                raise APIError(
                    429,
                    f"the server is at its limit of {self.config.max_pending} queued requests; retry shortly.",
                    type_="rate_limit_error",
                )
            self._pending += 1
        job = Job(request, loop)
        self._queue.put(job)
        return job

    # --- the model thread -----------------------------------------------------------------------
    def _loop(self) -> None:
        carry: deque[Job] = deque()
        while True:
            first = carry.popleft() if carry else self._queue.get()
            if first is None:
                self.unfold()
                return
            batch, deadline = [first], time.monotonic() + self.config.batch_window_s
            for job in list(carry):  # waiting requests of the same kind join first
                if len(batch) < self.config.max_batch and job.key == first.key:
                    carry.remove(job)
                    batch.append(job)
            while len(batch) < self.config.max_batch:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)
                    break
                (batch if job.key == first.key else carry).append(job)
            self._serve(batch)

    def _serve(self, batch: list[Job]) -> None:
        try:
            results = self.run(batch, keep_fold=True)
        except Exception as e:  # noqa: BLE001 - a failed batch is retried per request; errors go to clients
            if len(batch) > 1:
                for job in batch:
                    self._serve([job])
                return
            self._finish(batch[0], error=_client_error(e))
            return
        for job, result in zip(batch, results, strict=True):
            self._finish(job, result=result)

    def _finish(self, job: Job, result: Result | None = None, error: Exception | None = None) -> None:
        with self._lock:
            self._pending -= 1
        if error is not None:
            job.emit("error", error)
        else:
            job.emit("done", result)

    def fold(self, folds: tuple) -> None:
        """Have exactly the ablations ``folds`` (``((direction, strength), ...)``, from
        :meth:`ArtifactStore.uniform`) folded into the model's weights: an earlier fold with other
        ablations is undone first; the same one is kept. The edited weights of the latest fold are
        kept after it is undone, so folding it again (after a batch that needed the model's own
        weights) only swaps them back in."""

        key = tuple((id(d), s) for d, s in folds)
        if self._fold is not None and self._fold[0] == key:
            return
        self.unfold()
        if not folds:
            return
        if self._folded_weights is None or self._folded_weights[0] != key:
            self._folded_weights = None  # one edited copy at a time: free the old before making the new
            directions, strengths = [d for d, _ in folds], [s for _, s in folds]
            self._folded_weights = (key, ablated_weights(self.model, directions, strengths))
        stack = ExitStack()
        stack.enter_context(swapped_weights(self.model, self._folded_weights[1]))
        self._fold = (key, stack)

    def _try_fold(self, folds: tuple) -> bool:
        """:meth:`fold`, or, where the edited copies do not fit in memory, the model's own weights, a
        warning, and hooks for this and every later batch (``fold_error`` says why; ``/health`` too)."""
        try:
            self.fold(folds)
        except (RuntimeError, MemoryError) as e:  # torch.OutOfMemoryError is a RuntimeError
            self.unfold()
            self._folded_weights = None
            self.fold_error = f"{type(e).__name__}: {e}"
            log.warning(
                "folding an ablation into the weights failed (%s); ablations are hooked from now on. "
                "Fix: more memory, or --no-fold to skip the attempt.",
                self.fold_error,
            )
            return False
        return True

    def unfold(self) -> None:
        """Give the model its own weights back (nothing when no fold is in place)."""
        if self._fold is not None:
            _, stack = self._fold
            self._fold = None
            stack.close()

    def run(self, batch: list[Job], keep_fold: bool = False) -> list[Result]:
        """Generate for a batch of requests (each row steered by its own request) and return results.
        ``keep_fold``: leave a folded ablation in the weights for the next batch (the serving loop
        does; :meth:`unfold` restores them); by default the model has its own weights on return."""
        try:
            return self._run(batch)
        finally:
            if not keep_fold:
                self.unfold()

    def _run(self, batch: list[Job]) -> list[Result]:
        model = self.model
        images = [job.request.images for job in batch] if batch[0].key else None
        enc = tokenize(model, [job.request.text for job in batch], images)
        edits, groups = [], {}
        for i, job in enumerate(batch):
            groups.setdefault(job.request.steering, []).append(i)
        questions = [job.request.question for job in batch]
        folds = ()
        for steering, idx in groups.items():
            if not steering:
                continue
            rows = torch.zeros(len(batch), dtype=torch.bool)
            rows[idx] = True
            if len(groups) == 1:  # every row asks for the same: no row masks, full ablations folded
                fold = self.config.fold_ablations and self.fold_error is None
                folds, uniform = self.store.uniform(steering, fold)
                if folds and not self._try_fold(folds):
                    folds, uniform = self.store.uniform(steering, fold=False)
                edits += uniform
            else:
                edits += self.store.edits(steering, rows)
            if images is not None:  # retrieval-guided steering acts on image requests, per image
                first = [imgs[0] for imgs in images]
                edits += self.store.retrieval_edits(steering, model, questions, first, rows)
        if not folds:
            self.unfold()
        rows = _Rows(batch, model.tokenizer, self.eos)
        with model.hooks(edits=edits), torch.inference_mode():
            model.model.generate(
                **enc.inputs,
                max_new_tokens=max(job.request.max_tokens for job in batch),
                do_sample=False,
                pad_token_id=model.tokenizer.pad_token_id,
                streamer=rows,
                stopping_criteria=[rows],
            )
        self.batches += 1
        prompt_lengths = enc.attention_mask.sum(1).tolist()
        out = []
        for i, job in enumerate(batch):
            if job.request.stream:
                rows.flush(i, final=True)
            out.append(
                Result(
                    model.tokenizer.decode(rows.tokens[i], skip_special_tokens=True),
                    "stop" if rows.stopped[i] else "length",
                    int(prompt_lengths[i]),
                    len(rows.tokens[i]),
                    len(batch),
                )
            )
        return out


def _client_error(e: Exception) -> APIError:
    if isinstance(e, APIError):
        return e
    if isinstance(e, InterpError):
        return APIError(400, str(e))
    log.exception("generation failed")
    return APIError(500, f"generation failed ({type(e).__name__}: {e}).", type_="server_error")
