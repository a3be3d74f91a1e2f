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
