"""Size against fidelity for the published Deep Compression SqueezeNet: every method, paired with the release.

Compresses ``compressed_SqueezeNet.net`` several ways -- the lossless ``.sqz``, side data on a grid for a
byte budget without images, post-training k-means (Deep Compression without repair), and the byte budget
with reconstruction on the calibration images -- then measures each file against the release on the same
labelled images (top-1, top-5, top-1 agreement, KL). Calibration uses ``imagenet-calib`` only; measurement
uses ``imagenet-samples``. Prints a table and draws size vs agreement and size vs top-1 with the release,
the lossless file and the paper's two points (0.66 MB 8-bit and 0.47 MB 6-bit, 57.5% top-1 on the full
validation set: another image set, drawn as a reference, not a paired point).

    python benchmarks/frontier.py [--shared ../shared/data] [--budgets 470000,400000,340000,300000] [-o docs]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from squeezenet.compress import Method, PostTraining, Reconstruct, SideDataOnly, compress_model  # noqa: E402
from squeezenet.inference import compare  # noqa: E402
from squeezenet.models import prunable_layers  # noqa: E402
from squeezenet.weights import convert_weights, load_weights, save_weights  # noqa: E402

RELEASE_BYTES = 675_763
PAPER = [(660_000, "paper 8-bit (0.66 MB)"), (470_000, "paper 6-bit (0.47 MB)")]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run(shared: Path, budgets: list[int], work: Path) -> list[dict]:
    net = shared / "deep-compression" / "compressed_SqueezeNet.net"
    calib, samples = shared / "imagenet-calib", shared / "imagenet-samples"
    reference = load_weights(net)
    kept = sum(int((m.weight != 0).sum()) for m in prunable_layers(reference).values())
    rows: list[dict] = []

    def measure(method: str, path: Path, seconds: float) -> None:
        r = compare(load_weights(path), reference, samples, progress=False)
        size = path.stat().st_size
        rows.append({"method": method, "bytes": size, "bits_per_nonzero": 8 * size / kept, "top1": r.top1,
                     "top5": r.top5, "agreement": r.agreement, "kl": r.kl, "top1_diff": r.top1_diff,
                     "top1_diff_low": r.top1_diff_low, "top1_diff_high": r.top1_diff_high, "seconds": seconds,
                     "reference_top1": r.reference_top1, "reference_top5": r.reference_top5, "n": r.n})
        print(f"{method:44s} {size:>9,} B  agreement {r.agreement:.3f}  KL {r.kl:.4f}  top-1 {r.top1:.3f}  "
              f"({seconds:.0f} s)", flush=True)

    def timed(method: str, path: Path, make) -> None:
        start = time.perf_counter()
        make(path)
        measure(method, path, time.perf_counter() - start)

    timed("lossless .sqz (convert)", work / "lossless.sqz", lambda p: convert_weights(net, p))
    for budget in (520_000,):
        timed(f"no images, --max-bytes {budget:,}", work / f"nodata-{budget}.sqz",
              lambda p, b=budget: _compress(net, p, SideDataOnly(max_bytes=b)))
    for bits in (8, 6):
        timed(f"k-means {bits}-bit, no repair", work / f"kmeans{bits}.sqz",
              lambda p, b=bits: _compress(net, p, PostTraining(bits=b)))
    for budget in budgets:
        timed(f"--calibration, --max-bytes {budget:,}", work / f"budget-{budget}.sqz",
              lambda p, b=budget: _compress(net, p, Reconstruct(calibration=calib, max_bytes=b)))
    return rows


def _compress(net: Path, path: Path, method: Method) -> None:
    model, _ = compress_model(load_weights(net), method)
    save_weights(model, path, max_bytes=getattr(method, "max_bytes", None))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_a, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2))
    ref_top1 = rows[0]["reference_top1"]
    groups = {"lossless": "black", "no images": "tab:green", "k-means": "tab:red", "--calibration": "tab:blue"}
    for key, color in groups.items():
        pts = sorted((r for r in rows if r["method"].startswith(key)), key=lambda r: r["bytes"])
        if not pts:
            continue
        xs = [r["bytes"] / 1000 for r in pts]
        ax_a.plot(xs, [r["agreement"] for r in pts], "o-" if len(pts) > 1 else "o", color=color, label=key)
        ax_t.plot(xs, [r["top1"] for r in pts], "o-" if len(pts) > 1 else "o", color=color, label=key)
        for r in pts:
            lo, hi = r["top1"] - r["top1_diff"] + r["top1_diff_low"], r["top1"] - r["top1_diff"] + r["top1_diff_high"]
            ax_t.plot([r["bytes"] / 1000] * 2, [lo, hi], color=color, alpha=0.35)
    for ax in (ax_a, ax_t):
        ax.axvline(RELEASE_BYTES / 1000, color="gray", ls=":", lw=1)
        ax.text(RELEASE_BYTES / 1000, ax.get_ylim()[0], " release .net", rotation=90, va="bottom", fontsize=8)
        for x, label in PAPER:
            ax.axvline(x / 1000, color="tab:purple", ls="--", lw=0.8, alpha=0.6)
            ax.text(x / 1000, ax.get_ylim()[0], " " + label, rotation=90, va="bottom", fontsize=8, color="tab:purple")
        ax.set_xlabel("file size (KB)")
        ax.grid(alpha=0.3)
    ax_a.axhline(0.95, color="gray", lw=0.6)
    ax_a.axhline(0.98, color="gray", lw=0.6)
    ax_a.set_ylabel("top-1 agreement with the release")
    ax_t.axhline(ref_top1, color="gray", lw=0.8)
    ax_t.axhline(0.575, color="tab:purple", lw=0.8, ls="--")
    ax_t.set_ylabel(f"top-1 on {rows[0]['n']} sample images (bars: paired 95%)")
    ax_a.legend(fontsize=8, loc="lower right")
    fig.suptitle("published Deep Compression SqueezeNet: size vs fidelity (paired with the release)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--budgets", default="470000,400000,340000,300000")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as work:
        rows = run(args.shared, [int(b) for b in args.budgets.split(",") if b.strip()], Path(work))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "frontier.json").write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=2) + "\n")
    plot(rows, args.output / "frontier.png")
    print()
    print("| method | bytes | bits/non-zero | top-1 | top-5 | agreement | KL | top-1 change (95%) | time |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['bytes']:,} | {r['bits_per_nonzero']:.2f} | {r['top1']:.3f} | {r['top5']:.3f} | "
              f"{r['agreement']:.3f} | {r['kl']:.4f} | {100 * r['top1_diff']:+.1f} [{100 * r['top1_diff_low']:+.1f}, "
              f"{100 * r['top1_diff_high']:+.1f}] | {r['seconds']:.0f} s |")
    print(f"\nreference (release) top-1 {rows[0]['reference_top1']:.3f}, top-5 {rows[0]['reference_top5']:.3f}; "
          f"plot: {args.output / 'frontier.png'}")


if __name__ == "__main__":
    main()
