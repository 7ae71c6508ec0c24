"""The README's tour runs as written: train, info, analyze, figures, compare (a newcomer's first commands)."""

from pathlib import Path

from tests.test_user_guide import run_blocks

ROOT = Path(__file__).resolve().parent.parent


def test_readme_tour_runs(tmp_path):
    text = (ROOT / "README.md").read_text()
    part = text[text.index("## A tour"):text.index("## Documentation")]
    page = tmp_path / "tour.md"
    page.write_text(part)
    run_blocks(page, tmp_path)
    assert (tmp_path / "run.landscape.h5").exists() and (tmp_path / "figs" / "index.html").exists()
    assert (tmp_path / "cmp" / "compare.csv").exists()


def test_readme_is_short_and_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 150
    for link in [part.split(")")[0] for part in text.split("](")[1:]]:
        if not link.startswith("http"):
            assert (ROOT / link.split("#")[0]).exists(), link
