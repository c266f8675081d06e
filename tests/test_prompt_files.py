"""interp.data.prompt_files: JSON Lines and Parquet prompt files, with image paths; images given as paths."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import interp
from interp.data.prompt_files import read_prompt_file
from interp.errors import InputError


@pytest.fixture
def files(tmp_path):
    Image.fromarray((np.random.RandomState(0).rand(40, 48, 3) * 255).astype("uint8")).save(tmp_path / "a.png")
    rows = [
        {"prompt": "What is this?", "id": "r0", "label": "harmless", "image": "a.png"},
        {"prompt": "Tell me a story", "id": "r1", "label": "harmless", "image": None},
    ]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    return tmp_path


@pytest.mark.parametrize("name", ["p.jsonl", "p.parquet"])
def test_rows_ids_labels_and_image_paths(files, name):
    rows = read_prompt_file(files / name, images_column="image")
    assert rows.prompts == ["What is this?", "Tell me a story"] and rows.ids == ["r0", "r1"]
    assert rows.labels == ["harmless", "harmless"]
    assert rows.images == [str((files / "a.png").resolve()), None]


def test_an_image_path_captures_as_the_image_it_names(files, llava):
    rows = read_prompt_file(files / "p.jsonl", images_column="image")
    from_paths = interp.capture(llava, rows.prompts[:1], images=rows.images[:1])
    from_pil = interp.capture(llava, rows.prompts[:1], images=[Image.open(files / "a.png").convert("RGB")])
    assert torch.equal(from_paths["last"], from_pil["last"])


def test_bad_files_say_what_is_wrong(files):
    with pytest.raises(InputError, match="no prompt file"):
        read_prompt_file(files / "none.jsonl")
    (files / "bad.jsonl").write_text('{"prompt": "x"}\nnot json\n')
    with pytest.raises(InputError, match="line 2, is not JSON"):
        read_prompt_file(files / "bad.jsonl")
    with pytest.raises(InputError, match="--prompt-column"):
        read_prompt_file(files / "p.jsonl", prompt_column="text")
    with pytest.raises(InputError, match="has no column 'picture'"):
        read_prompt_file(files / "p.jsonl", images_column="picture")
    (files / "gone.jsonl").write_text(json.dumps({"prompt": "x", "image": "gone.png"}) + "\n")
    with pytest.raises(InputError, match="not found"):
        read_prompt_file(files / "gone.jsonl", images_column="image")


def test_interp_capture_writes_the_shards_of_a_prompt_file(files, capsys):
    from interp.cli import main

    rows = [{"prompt": f"prompt number {i}", "label": "x"} for i in range(5)]
    (files / "text.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = files / "acts"
    argv = ["capture", "--model", "default", "--prompts", str(files / "text.jsonl"), "--layers", "0,5"]
    assert main([*argv, "--out", str(out), "--shard-size", "2"]) == 0
    shards = interp.ActivationShards.open(out)
    acts = shards.load()
    assert len(shards.shard_paths) == 3 and acts.layers == [0, 5] and acts.labels == ["x"] * 5
    assert "5 prompts from" in capsys.readouterr().err
