"""The documentation: a short README, and a site that builds strictly (broken links, missing
snippets and bad API references fail it) from pages whose results are generated from the JSON."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_is_short_and_links_the_docs():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    for link in [line.split("](")[1].split(")")[0] for line in text.splitlines() if "](docs/" in line]:
        assert (ROOT / link).exists(), link


def test_the_site_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "index.html").exists()
    # the results pages carry the generated tables, not copies
    site = tmp_path / "site" / "results"
    assert "Steering the organism VLM (generated from" in (site / "steering" / "index.html").read_text()
    assert "Localization on the organism suite" in (site / "locate-suite" / "index.html").read_text()
    notebook = (tmp_path / "site" / "notebooks" / "03_steering" / "index.html").read_text()
    assert "find_layers" in notebook and "candidate layers" in notebook  # its code and its outputs
    quick = (tmp_path / "site" / "notebooks" / "01_quickstart" / "index.html").read_text()
    assert "Plotly.newPlot" in quick  # the figures render on the page
    shutil.rmtree(tmp_path / "site")


def test_the_generated_pages_are_current():
    # a page generated from the JSON goes stale when a result is re-run and the page is not
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tables

    assert (ROOT / "docs" / "results" / "benchmarks.md").read_text() == tables.page()


def _generators() -> dict:
    """Each script that writes a block into a docs page -> a function giving the block it writes now."""
    import json

    for folder in ("analyses", "analyses/organism", "analyses/export"):
        if str(ROOT / folder) not in sys.path:
            sys.path.insert(0, str(ROOT / folder))
    import export_tables
    import organism_tables
    import steering_tables
    import suite_tables

    def steering():
        return steering_tables.readme_block(json.loads((ROOT / "figures/steering/summary.json").read_text()))

    def suite():
        return suite_tables.readme_block(json.loads((ROOT / "figures/locate/suite.json").read_text()))

    return {
        "analyses/organism/organism_tables.py": organism_tables.page_block,
        "analyses/export/export_tables.py bake": export_tables.bake_block,
        "analyses/export/export_tables.py control-vector": export_tables.control_vector_block,
        "analyses/steering_tables.py": steering,
        "analyses/organism/locate_suite.py readme": suite,
    }


def test_every_generated_block_in_the_docs_is_current():
    # every block a page marks as generated has a script, and holds what that script writes now
    generators = _generators()
    from docblock import END, start

    seen = set()
    for page in sorted((ROOT / "docs").rglob("*.md")):
        text = page.read_text()
        for opening in text.split("<!-- generated: ")[1:]:
            source = opening.split(" -->", 1)[0]
            assert source in generators, f"{page}: no generator known for the block of {source!r}"
            block = generators[source]()
            assert block in text, f"{page}: the block of {source} is stale; run it again"
            assert block.startswith(start(source)) and block.endswith(END)
            seen.add(source)
    assert seen == set(generators), set(generators) - seen


def test_the_rendered_notebooks_are_the_current_ones_executed():
    # docs/notebooks/ holds notebooks/*.ipynb executed (build_notebooks.py --execute): the same cells,
    # every code cell run, no error; a changed notebook goes red here until it is executed again
    import nbformat

    for source in sorted((ROOT / "notebooks").glob("*.ipynb")):
        executed = ROOT / "docs" / "notebooks" / source.name
        assert executed.exists(), f"{executed} is missing: run python notebooks/build_notebooks.py --execute"
        src, run = nbformat.read(source, as_version=4), nbformat.read(executed, as_version=4)
        assert [(c.cell_type, c.source) for c in src.cells] == [(c.cell_type, c.source) for c in run.cells], (
            f"{executed.name} is stale: run python notebooks/build_notebooks.py --execute"
        )
        code = [c for c in run.cells if c.cell_type == "code"]
        assert all(c.execution_count is not None for c in code), executed.name
        assert not [o for c in code for o in c.outputs if o.output_type == "error"], executed.name


def test_the_site_home_is_the_readme():
    readme = (ROOT / "README.md").read_text()
    home = (ROOT / "docs" / "index.md").read_text()
    intro = (
        "The user guide and the results live in `docs/` (a MkDocs site: `mkdocs serve`, or read the Markdown\n"
        "directly; `mkdocs build --strict` runs in the tests):"
    )
    assert home == readme.replace("](docs/", "](").replace(intro, "The user guide and the results:")
