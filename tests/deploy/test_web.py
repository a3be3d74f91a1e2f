"""The browser page (``export --format web``) in a real browser: headless Chromium from Debian's packages loads it from
a plain static server, classifies real images with onnxruntime-web, and posts its answers back; they are compared
with ``squeezenet predict`` (PyTorch) on the same files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import require_shared
from squeezenet.data.images import expand_image_paths

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ORT_WEB = os.environ.get("SQUEEZENET_ORT_WEB", str(Path(__file__).resolve().parents[2] / "node_modules" /
                                                   "onnxruntime-web" / "dist"))


class _PageServer(SimpleHTTPRequestHandler):
    """A static server (as any would serve the folder) that also takes the page's POST of its answers."""

    answers: dict = {}
    done = threading.Event()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).answers.update(json.loads(body))
        self.send_response(204)
        self.end_headers()
        type(self).done.set()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium; .ci/run installs it)")
@pytest.mark.skipif(not Path(ORT_WEB).is_dir(), reason=f"no onnxruntime-web at {ORT_WEB} (npm install onnxruntime-web)")
def test_the_page_classifies_real_images_in_chromium_as_pytorch_does(tmp_path) -> None:
    from squeezenet.data.images import load_rgb_image
    from squeezenet.deploy.web import export_web
    from squeezenet.inference import predict
    from squeezenet.weights import load_weights

    net = require_shared("deep-compression", "compressed_SqueezeNet.net")
    samples = require_shared("imagenet-samples")
    site = tmp_path / "site"
    checked = expand_image_paths([samples])[:4]
    report = export_web(load_weights(net), site, check_images=[load_rgb_image(p) for p in checked], ort_web=ORT_WEB,
                        brotli_quality=1).to_dict()  # (sizes at quality 11 take half a minute; the CLI reports those)
    assert report["top1_agreement"] == 1.0 and report["total_brotli"] < report["total_bytes"]
    assert {"index.html", "classify.js", "model.onnx", "ort-wasm-simd-threaded.wasm"} <= set(report["files"])

    paths = expand_image_paths([samples])[4:20]  # held out from the export's check
    for path in paths:
        shutil.copyfile(path, site / path.name)
    handler = type("Handler", (_PageServer,), {"answers": {}, "done": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html?check={','.join(p.name for p in paths)}"
    browser = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                f"--user-data-dir={tmp_path / 'profile'}", url],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert handler.done.wait(180), "the page posted no answers within 3 minutes"
    finally:
        browser.kill()
        browser.wait()
        server.shutdown()
    ours = {p.name: pred.top[0][0] for p, pred in zip(paths, predict(load_weights(net), paths, topk=1))}
    same = sum(handler.answers.get(name) == index for name, index in ours.items())
    assert same >= len(paths) - 1, (same, handler.answers)  # the browser decodes the JPEGs itself
