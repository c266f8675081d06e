"""Ray workers that each hold one copy of a model, for the jobs interp splits across them.

    >>> with interp.RayPool("organism-vl", workers=2) as pool:               # models load once, here
    ...     r = interp.evaluate.refusal(vlm, prompts, images, [shift], engine=pool)   # rows split
    ...     shards = interp.capture(vlm, prompts, out_dir="runs/acts", engine=pool)

Each worker is a Ray actor that loads the model from its spec (:class:`interp.ModelSpec`: a name
and ``load_model`` arguments, or a factory; weights are never pickled) when the pool starts. A
worker that cannot load it fails the pool at start with its error, and workers that loaded different
models (different fingerprints) are refused. A task whose worker dies is run again on the restarted
worker (``max_retries``); an :class:`~interp.errors.InputError` a task raises is the caller's error,
raised as it is. The workers are killed when the pool closes, whatever happened inside.

``engine="ray"`` in :func:`interp.capture` and :func:`interp.evaluate.refusal` starts a pool for the
one call; a pool passed as ``engine`` is kept across calls, so the models load once.

Needs ``pip install "interp[ray]"``. Ray is started with ``ray.init()`` where it is not running yet
(set ``RAY_ADDRESS`` to join a cluster).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from interp.errors import InputError
from interp.spec import ModelSpec


class WorkerFailed(InputError):
    """A task failed on a Ray worker after every retry (not the input's fault)."""


class ModelWorker:
    """The Ray actor's class: loads the model at start (and again if Ray restarts the actor), then
    runs the functions it is given on it."""

    def __init__(self, spec: ModelSpec, threads: int | None = None):
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        self.model = spec.load()

    def info(self) -> dict:
        import torch

        return {
            "fingerprint": self.model.fingerprint.to_dict(),
            "n_layers": self.model.n_layers,
            "threads": torch.get_num_threads(),
        }

    def call(self, fn: Callable, args: tuple, kwargs: dict):
        """``fn(model, *args, **kwargs)``; ``fn`` is an importable function (it travels by name)."""
        return fn(self.model, *args, **kwargs)


class RayPool:
    """``workers`` Ray actors, each holding the model of ``spec`` (see the module docstring).

    ``spec``: a :class:`~interp.ModelSpec`, a ``load_model`` name, a factory, or a model loaded by
    :func:`interp.load_model` (its spec is reused). ``gpus_per_worker`` / ``cpus_per_worker``: each
    actor's Ray resources. ``max_retries``: how often a dead worker is restarted and its task rerun.
    ``threads``: torch threads per worker (None: Ray's default, one per CPU the actor holds;
    ``pool.info["threads"]`` says what they run). On a CPU, results equal an in-process run's bit for
    bit only at the same thread count: matrix kernels split their sums by thread (SmolLM2's states
    differ by up to about 1e-3 between 1 and 2 threads on an AVX-512 machine).
    """

    def __init__(
        self,
        spec,
        workers: int = 2,
        gpus_per_worker: float = 0,
        cpus_per_worker: float = 1,
        max_retries: int = 3,
        threads: int | None = None,
    ):
        if workers < 1:
            raise InputError(f"workers={workers}; it must be at least 1.")
        self.spec = ModelSpec.of(spec)
        self.workers, self.max_retries, self.threads = workers, max_retries, threads
        self.gpus_per_worker, self.cpus_per_worker = gpus_per_worker, cpus_per_worker
        self.actors: list = []
        self.info: dict | None = None
        self.startup_s = 0.0

    def __enter__(self) -> RayPool:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> RayPool:
        """Start the actors and wait until every one has loaded the model (idempotent)."""
        if self.actors:
            return self
        ray = _ray()
        t0 = time.perf_counter()
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)
        actor = ray.remote(
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker,
            max_restarts=self.max_retries,
            max_task_retries=self.max_retries,
        )(ModelWorker)
        self.actors = [actor.remote(self.spec, self.threads) for _ in range(self.workers)]
        try:
            try:
                infos = ray.get([w.info.remote() for w in self.actors])
            except Exception as e:  # a worker that cannot load the model: fail now, with its error
                raise InputError(
                    f"a Ray worker could not load the model {self.spec.describe()}: {_cause(e)}. Nothing was "
                    "run. Fix: check that the name, path or factory loads in a plain `interp.load_model` on "
                    "the worker's machine."
                ) from e
            if len({str(i["fingerprint"]) for i in infos}) != 1:
                raise InputError(
                    "the Ray workers loaded different models (their fingerprints differ); give one spec."
                )
        except BaseException:
            self.close()
            raise
        self.info = infos[0]
        self.startup_s = time.perf_counter() - t0
        return self

    def close(self) -> None:
        """Kill the actors (a later :meth:`start` makes new ones)."""
        if self.actors:
            ray = _ray()
            for w in self.actors:
                ray.kill(w)
        self.actors = []

    def run(
        self,
        fn: Callable,
        tasks: Iterable[tuple[str, tuple, dict]],
        on_done: Callable[[int, object], None] | None = None,
    ) -> list:
        """Run ``fn(model, *args, **kwargs)`` for each ``(label, args, kwargs)`` on the free workers and
        return the results in task order. ``fn`` must be importable (a module-level function).
        ``on_done(i, result)`` is called in the driver as each task finishes (in finishing order), e.g.
        to record progress. A task that still fails after ``max_retries`` restarts raises
        :class:`WorkerFailed`, naming its label.

            >>> pool.run(interp.evaluate.refusal_rows, [("first half", (prompts[:8],), {}), ...])
        """
        if not self.actors:
            raise InputError("the RayPool is not started. Fix: use it as `with RayPool(...) as pool:`.")
        ray = _ray()
        queue = list(enumerate(tasks))
        results: list = [None] * len(queue)
        pending, free = {}, list(self.actors)
        while queue or pending:
            while queue and free:
                worker, (i, (label, args, kwargs)) = free.pop(), queue.pop(0)
                pending[worker.call.remote(fn, args, kwargs)] = (worker, i, label)
            ready, _ = ray.wait(list(pending), num_returns=1)
            worker, i, label = pending.pop(ready[0])
            try:
                results[i] = ray.get(ready[0])
            except Exception as e:
                if isinstance(getattr(e, "cause", None), InputError):  # the input's fault, not the worker's
                    raise e.cause from None
                raise WorkerFailed(
                    f"{label} failed on a Ray worker after {self.max_retries} retries: {_cause(e)}."
                ) from e
            if on_done is not None:
                on_done(i, results[i])
            free.append(worker)
        return results


ENGINES = ("local", "ray")


def check_engine(engine) -> None:
    """Refuse anything but one of ``ENGINES`` or a :class:`RayPool` as an ``engine`` argument."""
    if engine not in ENGINES and not isinstance(engine, RayPool):
        raise InputError(f"unknown engine {engine!r}; use 'local', 'ray' or an interp.RayPool.")


def pool_for(engine, model, workers: int, gpus_per_worker: float, cpus_per_worker: float, max_retries: int):
    """The pool a call with ``engine="ray"`` or ``engine=<RayPool>`` runs on, and whether the call owns
    it (starts and closes it) or borrows the caller's (checked to hold the call's model)."""
    if not isinstance(engine, RayPool):
        return RayPool(model, workers, gpus_per_worker, cpus_per_worker, max_retries).start(), True
    engine.start()
    fingerprint = getattr(model, "fingerprint", None)
    if fingerprint is not None:
        same = str(fingerprint.to_dict()) == str(engine.info["fingerprint"])
    else:
        same = ModelSpec.of(model).describe() == engine.spec.describe()
    if not same:
        raise InputError(
            f"the RayPool holds {engine.spec.describe()}, which is not the model of this call. "
            "Fix: start a pool for this model, or pass the model the pool was started with."
        )
    return engine, False


def _ray():
    try:
        import ray
    except ImportError as e:
        raise InputError(
            "engine='ray' needs Ray, which is not installed. Fix: pip install 'interp[ray]', or use "
            "engine='local'."
        ) from e
    return ray


def _cause(e: Exception) -> str:
    cause = getattr(e, "cause", None) or e
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[-1].rstrip('.') if text else ''}"
