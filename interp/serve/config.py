"""Server settings and the limits that keep a public endpoint safe.

>>> ServeConfig(model="organism-vl", artifact_dir="runs/artifacts", default_steering="refusal:0.5")
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ServeConfig:
    """``artifact_dir``: the only place artifacts are read from (requests name them, never give paths).
    ``default_steering``: ``"name:strength,..."`` applied when a request has no ``steering`` field.
    ``api_key``: when set, every request needs ``Authorization: Bearer <api_key>``.
    ``fold_ablations``: fold the full ablations of a batch whose requests all ask for the same
    steering into the weights (text models; no per-token cost; an edited copy of the embedding and of
    each attention output and MLP down projection stays in memory from the first such batch on)."""

    model: str = "organism-vl"
    artifact_dir: str | None = None
    default_steering: str = ""
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 16 * 2**20
    max_images: int = 4
    max_image_bytes: int = 8 * 2**20
    max_image_pixels: int = 4096 * 4096
    max_tokens: int = 512
    default_max_tokens: int = 128
    max_pending: int = 64  # requests queued or running; more get 429
    max_batch: int = 16
    batch_window_s: float = 0.01  # how long the batcher waits for more requests to join a batch
    max_strength: float = 100.0
    fold_ablations: bool = True
