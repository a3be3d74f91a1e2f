// Classifies images in the browser with the exported model (`squeezenet export --format web`). The model takes the
// decoded pixels (uint8, height x width x 3, RGB) and resizes, crops and normalises them itself, so this script only
// decodes the image and reads the answer.
"use strict";
ort.env.wasm.numThreads = 1;   // threads need cross-origin isolation, which a plain static server does not give
ort.env.wasm.wasmPaths = "./"; // the runtime beside this page, never a CDN

const ready = (async () => {
  const meta = await (await fetch("model.json")).json();
  const session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
  return { meta, session };
})();

async function pixelsOf(blob) {
  // no colour management: the decoded values, as PIL (and so `squeezenet predict`) reads them
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  const rgba = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  const rgb = new Uint8Array(bitmap.width * bitmap.height * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) {
    rgb[j] = rgba[i]; rgb[j + 1] = rgba[i + 1]; rgb[j + 2] = rgba[i + 2];
  }
  return new ort.Tensor("uint8", rgb, [bitmap.height, bitmap.width, 3]);
}

async function classify(blob, k = 5) {
  const { meta, session } = await ready;
  const out = await session.run({ pixels: await pixelsOf(blob) });
  const logits = Array.from(out.logits.data);
  const top = Math.max(...logits);
  const exp = logits.map((v) => Math.exp(v - top));
  const sum = exp.reduce((a, b) => a + b, 0);
  return exp.map((v, i) => [i, meta.classes[i], v / sum]).sort((a, b) => b[2] - a[2]).slice(0, k);
}

function show(top) {
  document.getElementById("top").innerHTML = top
    .map(([, name, p]) => `<tr><td>${name}</td><td class="p">${(100 * p).toFixed(1)}%</td></tr>`).join("");
}

async function onFile(file) {
  const preview = document.getElementById("preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  document.getElementById("status").textContent = "classifying...";
  try {
    show(await classify(file));
    document.getElementById("status").textContent = "";
  } catch (err) {
    document.getElementById("status").textContent = `could not classify this file: ${err.message || err}`;
  }
}

document.getElementById("file").addEventListener("change", (e) => e.target.files[0] && onFile(e.target.files[0]));
const drop = document.getElementById("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files[0]) onFile(e.dataTransfer.files[0]);
});
ready.then(() => { document.getElementById("status").textContent = "ready: pick an image"; },
           (err) => { document.getElementById("status").textContent = `the model did not load: ${err.message || err}`; });

// ?check=a.jpg,b.jpg: classify those files (beside the page) and POST the top-1 answers to ./result, for tests
const check = new URLSearchParams(location.search).get("check");
if (check) {
  (async () => {
    const answers = {};
    for (const name of check.split(",")) {
      try {
        answers[name] = (await classify(await (await fetch(name)).blob(), 1))[0][0];
      } catch (err) {
        answers[name] = `error: ${err.message || err}`;
      }
    }
    await fetch("result", { method: "POST", body: JSON.stringify(answers) });
  })();
}
