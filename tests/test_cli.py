import pytest

from interp.cli import main


def test_families(capsys):
    assert main(["families"]) == 0
    out = capsys.readouterr().out
    assert "mllama" in out and "cross_attention" in out and "qwen2_vl" in out


@pytest.mark.slow
def test_export_commands(tmp_path, smollm):
    import torch

    from interp.export import read_control_vector
    from interp.steer import AblateDirection, AddDirection, SteeringArtifact

    d = torch.randn(smollm.d_model, generator=torch.Generator().manual_seed(0))
    add = SteeringArtifact.create(smollm, [AddDirection(d, [3, 4], 2.0)], method="add").save(tmp_path / "add")
    abl = SteeringArtifact.create(smollm, [AblateDirection(d)], method="ablate").save(tmp_path / "abl")

    def export(kind, artifact, out):
        return main(
            ["export", kind, "--model", "default", "--artifact", str(artifact), "--out", str(tmp_path / out)]
        )

    assert export("control-vector", add, "cv.gguf") == 0
    assert sorted(read_control_vector(tmp_path / "cv.gguf")) == [3, 4]
    assert export("bake", abl, "baked") == 0
    assert (tmp_path / "baked" / "config.json").exists() and (
        tmp_path / "baked" / "interp_bake.json"
    ).exists()
    # what cannot be exported is an error message and exit status 2, not a traceback
    assert export("control-vector", abl, "x.gguf") == 2
