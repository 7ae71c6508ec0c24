"""The README's own-model example runs as written: train, analyze, figures, compare, the engine on the result."""

from pathlib import Path

from tests.test_user_guide import run_blocks

ROOT = Path(__file__).resolve().parent.parent


def test_readme_own_model_example_runs(tmp_path):
    text = (ROOT / "README.md").read_text()
    part = text[text.index("Your own model and data, through the Python API"):text.index("## What it implements")]
    page = tmp_path / "example.md"
    page.write_text(part)
    run_blocks(page, tmp_path)
    assert (tmp_path / "mine.landscape.h5").exists() and (tmp_path / "mine-figs" / "index.html").exists()
