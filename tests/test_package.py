"""The top-level package: its public names resolve, and importing it stays cheap."""

import subprocess
import sys


def test_public_names_resolve_to_their_modules():
    import squeezenet
    from squeezenet.deploy import Classifier
    from squeezenet.weights import load_weights

    assert squeezenet.Classifier is Classifier and squeezenet.load_weights is load_weights
    for name in squeezenet.__all__:
        assert getattr(squeezenet, name) is not None, name
    assert sorted(dir(squeezenet)) == sorted(squeezenet.__all__)


def test_import_does_not_load_torch():
    code = "import sys, squeezenet; print('torch' in sys.modules); squeezenet.create_model; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


def test_the_sites_home_page_is_the_readme():
    """docs/index.md is generated from README.md (`make docs`); a README edited without it would leave the site
    stale."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("readme_to_index", root / "tools" / "readme_to_index.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.index_text((root / "README.md").read_text())
    assert (root / "docs" / "index.md").read_text() == expected, "run `make docs` (or tools/readme_to_index.py)"
    assert expected.count("](docs/") == 0 and len((root / "README.md").read_text().splitlines()) < 150
