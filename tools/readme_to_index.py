"""docs/index.md, the site's home page, is the README with its links made relative to docs/ (`make docs` runs this;
tests/test_package.py checks the two agree)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def index_text(readme: str) -> str:
    text = readme.replace("](docs/", "](").replace("# squeezenet\n", "# squeezenet-toolkit\n", 1)
    return text.replace("[`docs/ARCHITECTURE.md`](ARCHITECTURE.md)", "[architecture](ARCHITECTURE.md)")


if __name__ == "__main__":
    (ROOT / "docs" / "index.md").write_text(index_text((ROOT / "README.md").read_text()))
