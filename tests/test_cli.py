from interp.cli import main


def test_families(capsys):
    assert main(["families"]) == 0
    out = capsys.readouterr().out
    assert "mllama" in out and "cross_attention" in out and "qwen2_vl" in out
