"""The notebooks run top to bottom on the offline models (slow: real weights)."""

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


def execute(name: str) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert not errors, errors


@pytest.mark.slow
def test_quickstart_runs():
    execute("01_quickstart.ipynb")


@pytest.mark.slow
def test_cross_modal_runs():
    from interp.organism import PROJECTOR

    if not PROJECTOR.exists():
        pytest.skip("the organism projector is not trained yet (analyses/organism/align_projector.py)")
    execute("02_cross_modal.ipynb")


@pytest.mark.slow
def test_steering_runs():
    from interp.organism import PROJECTOR

    if not PROJECTOR.exists():
        pytest.skip("the organism projector is not trained yet (analyses/organism/align_projector.py)")
    execute("03_steering.ipynb")
