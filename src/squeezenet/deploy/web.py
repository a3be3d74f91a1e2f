"""A static web page that classifies images entirely in the browser: ``export --format web -o site/``.

The folder holds the page (``index.html``, ``classify.js``), the model with its preprocessing inside
(:mod:`.pixels`: the page hands it the decoded pixels, so the browser's image decoder is the only thing between the
user's file and PyTorch's answers), the class names (``model.json``), and onnxruntime-web's WebAssembly runtime,
copied from its npm package (``npm install onnxruntime-web``; nothing is fetched from a CDN, so the page works
offline and from any static server). The runtime runs single-threaded: threads need cross-origin isolation headers
that a plain static server does not send.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..common.io import atomic_path
from ..errors import SqueezeNetError
from ..models import Network
from .pixels import export_pixels_onnx

#: what the page needs from onnxruntime-web's ``dist/`` folder (the WebAssembly build, no WebGPU)
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs")
ORT_WEB_ENV = "SQUEEZENET_ORT_WEB"


@dataclass
class WebExport:
    """What the page downloads: each file's bytes and brotli-compressed bytes (what a server sends)."""

    files: dict[str, tuple[int, int | None]]
    check: dict[str, float]

    def to_dict(self) -> dict:
        return {"files": {k: {"bytes": b, "brotli": c} for k, (b, c) in self.files.items()},
                "total_bytes": sum(b for b, _ in self.files.values()),
                "total_brotli": sum(c or b for b, c in self.files.values()), **self.check}


def find_ort_web(given: str | Path | None = None) -> Path:
    """onnxruntime-web's ``dist/`` folder: ``given``, ``$SQUEEZENET_ORT_WEB``, or ``node_modules`` below the
    current folder."""
    candidates = [Path(given)] if given else []
    if os.environ.get(ORT_WEB_ENV):
        candidates.append(Path(os.environ[ORT_WEB_ENV]))
    candidates.append(Path("node_modules") / "onnxruntime-web" / "dist")
    for folder in candidates:
        if folder.is_dir() and (folder / "dist").is_dir() and not (folder / RUNTIME_FILES[0]).is_file():
            folder = folder / "dist"
        if all((folder / f).is_file() for f in RUNTIME_FILES):
            return folder
    where = str(candidates[0]) if given else "node_modules/onnxruntime-web/dist"
    raise SqueezeNetError(f"{where}: no onnxruntime-web runtime ({', '.join(RUNTIME_FILES)}); run `npm install "
                          f"onnxruntime-web` and pass --ort-web node_modules/onnxruntime-web/dist (or set {ORT_WEB_ENV})")


def export_web(model: Network, folder: str | Path, *, check_images: list[torch.Tensor],
               ort_web: str | Path | None = None, brotli_quality: int = 11) -> WebExport:
    """Write the page for ``model`` into ``folder`` (created; files in it with the same names are replaced). The
    sizes reported are brotli at ``brotli_quality`` (11, what servers precompress static files with, takes half a
    minute on the 15 MB runtime; lower is faster and a little larger)."""
    runtime = find_ort_web(ort_web)
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise SqueezeNetError(f"{out}: a web export is a folder; this is a file")
    out.mkdir(parents=True, exist_ok=True)
    check = export_pixels_onnx(model, out / "model.onnx", check_images=check_images)
    meta = {"classes": list(model.meta.classes), "source": model.meta.source or "", "input": "pixels",
            "output": "logits"}
    with atomic_path(out / "model.json") as tmp:
        tmp.write_text(json.dumps(meta))
    for name in RUNTIME_FILES:
        with atomic_path(out / name) as tmp:
            shutil.copyfile(runtime / name, tmp)
    page = Path(__file__).with_name("web_page")
    for name in ("index.html", "classify.js"):
        with atomic_path(out / name) as tmp:
            shutil.copyfile(page / name, tmp)
    return WebExport({name: _sizes(out / name, brotli_quality) for name in ("index.html", "classify.js", "model.json",
                                                                            "model.onnx", *RUNTIME_FILES)}, check)


def _sizes(path: Path, quality: int) -> tuple[int, int | None]:
    data = path.read_bytes()
    try:
        import brotli
    except ImportError:  # (brotli comes with the [deploy] extra)
        return len(data), None
    return len(data), len(brotli.compress(data, quality=quality))
