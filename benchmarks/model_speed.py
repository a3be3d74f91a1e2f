"""Our model definitions against torchvision's (the anchor), side by side in one process.

Same weights, same inputs, same thread count; inference (batch 1 and 32) and a training step
(forward + backward, batch 32). The machines here are noisy: each cell is the median of --repeats runs,
and the anchor and ours are interleaved so that drift affects both alike.

    python benchmarks/model_speed.py [--repeats 15] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torchvision

from squeezenet import create_model


def _time(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def bench(name: str, batch: int, train: bool, repeats: int) -> dict:
    anchor = getattr(torchvision.models, name)()
    ours = create_model(name)
    ours.load_state_dict(anchor.state_dict())
    x = torch.randn(batch, 3, 224, 224)
    models = {"torchvision": anchor, "squeezenet": ours}
    for m in models.values():
        m.train(train)

    def step(m):
        if train:
            m.zero_grad(set_to_none=True)
            m(x).sum().backward()
        else:
            with torch.inference_mode():
                m(x)

    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(repeats):  # interleave: each round times both once
        for key, m in models.items():
            times[key] += _time(lambda m=m: step(m), 1)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"model": name, "batch": batch, "mode": "train step" if train else "inference",
            "torchvision_ms": round(med["torchvision"], 2), "ours_ms": round(med["squeezenet"], 2),
            "ratio": round(med["squeezenet"] / med["torchvision"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [bench(name, batch, train, args.repeats)
            for name in ("squeezenet1_0", "squeezenet1_1")
            for batch, train in ((1, False), (32, False), (32, True))]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"median of {args.repeats} runs, {args.threads} threads, 224x224 (ratio = ours / torchvision)")
    for col in ("model", "batch", "mode", "torchvision ms", "ours ms", "ratio"):
        table.add_column(col, justify="left" if col in ("model", "mode") else "right")
    for r in rows:
        table.add_row(r["model"], str(r["batch"]), r["mode"], f"{r['torchvision_ms']:.2f}", f"{r['ours_ms']:.2f}",
                      f"{r['ratio']:.3f}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
