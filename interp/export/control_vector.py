"""llama.cpp control vectors: additive steering as the GGUF file ``llama-cli --control-vector`` reads.

    >>> interp.export.save_control_vector(model, [AddDirection(refusal, [12, 13], 4.0)], "refusal.gguf")
    $ llama-completion -m smollm2.gguf --control-vector refusal.gguf -p "..."

The format (llama.cpp ``common_control_vector_load``): ``general.architecture = "controlvector"``,
``controlvector.model_hint`` (the model's architecture), ``controlvector.layer_count``, and one F32
tensor ``direction.<l>`` of ``n_embd`` values per steered layer. llama.cpp adds ``direction.<l>`` (times
the ``--control-vector-scaled`` strength) to the output of decoder layer ``l`` at every position, which
is interp's layer ``l`` of the residual stream. Layer 0 cannot be steered there (llama.cpp rejects
``direction.0``).

Only constant additions at all positions translate: :class:`~interp.steer.AddDirection` and
:class:`~interp.steer.ShiftToText` with ``positions="all"``. Ablation, clamping, conditional and
per-input steering are not additions; each gets a clear error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from interp.errors import CorruptFileError, InputError
from interp.steer.folding import additions_by_layer
from interp.steer.interventions import AddDirection, ShiftToText

ARCH = "controlvector"


def control_vector(model, interventions) -> dict[int, Tensor]:
    """Per-layer vectors ``{layer: [D]}`` (in the residual stream's units) of additive interventions."""
    if not interventions:
        raise InputError("a control vector needs at least one additive intervention.")
    for item in interventions:
        if not isinstance(item, (AddDirection, ShiftToText)):
            raise InputError(
                f"{type(item).__name__} is not a constant addition, and a llama.cpp control vector can only "
                "add. Fix: export AddDirection or ShiftToText, or serve this one with hooks (interp serve)."
            )
        if item.positions != "all":
            raise InputError(
                f"{type(item).__name__} acts on positions {item.positions!r}; llama.cpp adds control vectors "
                "at every position. Fix: positions='all'."
            )
    out = additions_by_layer(model, interventions)
    if 0 in out:
        raise InputError(
            "llama.cpp cannot steer the output of layer 0 (it rejects direction.0). Fix: steer layers >= 1."
        )
    return out


def save_control_vector(model, interventions, path: str | Path) -> Path:
    """Write the GGUF control-vector file; returns its path (``.gguf`` added when missing)."""
    import gguf

    vectors = control_vector(model, interventions)
    path = Path(path)
    if path.suffix != ".gguf":
        path = path.with_suffix(".gguf")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch=ARCH)
    writer.add_string(f"{ARCH}.model_hint", model.adapter.family)
    writer.add_int32(f"{ARCH}.layer_count", len(vectors))
    writer.add_string("interp.model_name", model.name)
    writer.add_string("interp.weights_digest", model.fingerprint.weights_digest)
    for layer, v in vectors.items():
        writer.add_tensor(f"direction.{layer}", v.cpu().numpy().astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)
    return path


def read_control_vector(path: str | Path) -> dict[int, Tensor]:
    """The ``{layer: [D]}`` vectors of a control-vector GGUF (checks its architecture and tensors)."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:
        raise CorruptFileError(f"{path} is not a readable GGUF file ({type(e).__name__}: {e}).") from e
    field = reader.fields.get("general.architecture")
    arch = bytes(field.parts[field.data[0]]).decode() if field is not None else None
    if arch != ARCH:
        raise CorruptFileError(f"{path} is a GGUF of architecture {arch!r}, not a control vector.")
    out = {}
    for t in reader.tensors:
        kind, _, idx = t.name.partition(".")
        if kind != "direction" or not idx.isdigit():
            raise CorruptFileError(
                f"{path}: unexpected tensor {t.name!r} (control vectors hold direction.<l>)."
            )
        out[int(idx)] = torch.from_numpy(np.array(t.data, dtype=np.float32).reshape(-1))
    return dict(sorted(out.items()))
