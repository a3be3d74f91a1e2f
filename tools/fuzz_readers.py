"""A fuzz campaign against every weights reader: mutated .sqz, .net, .safetensors, .pth and .onnx files.

Each file is loaded the way users load files (``Classifier.load`` then ``predict`` on one image, so that metadata
which only bites at run time is exercised too) in a worker process under a memory limit and a time limit, and
the outcome is counted: ``loaded``, ``refused`` (a :class:`~squeezenet.errors.SqueezeNetError` or ``OSError``,
the one-line CLI errors), ``UNTYPED`` (any other exception: a bug), ``HANG`` (past the time limit), ``MEMORY``
(peak RSS above the limit). Mutations are structure-aware where a format has structure: JSON edits of a
``.sqz`` header with the zlib stream, length and sha256 recomputed; safetensors header and metadata edits; ``.pth``
pickles re-saved with hostile metadata or tensors; ONNX metadata, class lists and graph names; raw flips,
truncations, insertions and splices everywhere.

    python tools/fuzz_readers.py --files 10000            # the campaign: prints the outcome table
    python tools/fuzz_readers.py --files 500 --keep DIR   # keep the files that were not loaded or refused

The suite's ``tests/test_fuzz.py`` runs the same mutators for about a minute.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import os
import random
import re
import resource
import select
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

FORMATS = (".sqz", ".net", ".safetensors", ".pth", ".onnx")
OPTIONAL_FORMATS = (".pte",)  # ExecuTorch programs: only with --formats (the export takes ~20 s)
RAW_BYTES = 16 << 20  # raw JSON spliced into one file: a duplicated deep-nesting leaf once made a 264 MB header
MESSAGE_CHARS = 300  # what the CLI prints of an error: a message longer than this is cut
HOSTILE: list[Any] = [
    None, True, False, 0, -1, 1, 2, 3, 7, 255, 256, 1000, 2**31 - 1, 2**31, 2**53, 2**63, 2**64 + 1, -(2**63), 10**8,
    10**12, 10**400, 0.5, -0.0, 1e-300, 1e308, float("nan"), float("inf"), -float("inf"), "", "x", "float32", "int64",
    "float64", "bool", "uint8", "shared", "raw", "imagenet-1k", "squeezenet", "alexnet", "none", "simple", "BGR",
    "\u0000", "A" * 5000, [], [0], [1, 2], [2**40, 2**40], [-1], [True], ["a"], [[]], {}, {"a": 1}, {"arch": "squeezenet"},
]


def _nested(depth: int) -> Any:
    return json.loads("[" * depth + "]" * depth) if depth < 900 else "[" * depth + "]" * depth


def hostile_value(rng: random.Random) -> Any:
    """A value that is likely wrong wherever it lands: extreme numbers, wrong types, deep nesting."""
    roll = rng.random()
    if roll < 0.04:
        return _RawJSON("[" * rng.choice([1000, 5000, 100_000]) + "]" * rng.choice([0, 1000, 5000, 100_000]))
    if roll < 0.08:
        return [copy.deepcopy(rng.choice(HOSTILE)) for _ in range(rng.choice([0, 1, 3, 999, 1001, 100_001]))]
    return copy.deepcopy(rng.choice(HOSTILE))  # a copy: later edits of the file must not change HOSTILE (cycles)


class _RawJSON(str):
    """Text spliced into JSON as is (unbalanced or very deep nesting the json module cannot write)."""


def dumps(value: Any) -> str:
    """JSON text of ``value``; :class:`_RawJSON` leaves go in verbatim, NaN/Infinity as Python writes them."""
    marks: dict[str, str] = {}

    def swap(v: Any) -> Any:
        if isinstance(v, _RawJSON):
            key = f"@@raw{len(marks)}@@"
            marks[key] = str(v)
            return key
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        if isinstance(v, list):
            return [swap(x) for x in v]
        return v

    text = json.dumps(swap(value))
    budget = [RAW_BYTES]

    def splice(match: re.Match) -> str:  # one linear pass; past the budget a raw leaf becomes null
        raw = marks[match.group(1)]
        budget[0] -= len(raw)
        return raw if budget[0] >= 0 else "null"

    return re.sub(r'"(@@raw\d+@@)"', splice, text)


def mutate_json(value: Any, rng: random.Random, edits: int = 0) -> Any:
    """``value`` (parsed JSON) with 1-3 nodes replaced, deleted or duplicated."""
    for _ in range(edits or rng.choice([1, 1, 1, 2, 3])):
        nodes = _nodes(value)
        if not nodes:
            return hostile_value(rng)
        parent, key = rng.choice(nodes)
        action = rng.random()
        if action < 0.75:
            parent[key] = hostile_value(rng)
        elif action < 0.85:
            del parent[key]
        elif isinstance(parent, dict):
            parent[rng.choice(["extra", "version", "arch", key + "_"])] = hostile_value(rng)
        else:
            parent.append(parent[key])
    return value


def _nodes(value: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every node under ``value``."""
    found: list[tuple[Any, Any]] = []
    stack = [value]
    while stack:
        v = stack.pop()
        keys = list(v) if isinstance(v, dict) else range(len(v)) if isinstance(v, list) else ()
        for k in keys:
            found.append((v, k))
            stack.append(v[k])
    return found


def mutate_bytes(blob: bytes, rng: random.Random) -> bytes:
    """Flips, truncation, insertion, deletion or a repeated chunk."""
    data = bytearray(blob)
    kind = rng.choice(["flip", "flip", "truncate", "insert", "delete", "repeat", "zero"])
    if not data:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
    if kind == "flip":
        for _ in range(rng.choice([1, 2, 4, 16])):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randrange(1, 256)
    elif kind == "truncate":
        data = data[:rng.randrange(len(data))]
    elif kind == "insert":
        i = rng.randrange(len(data) + 1)
        data[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 100])))
    elif kind == "delete":
        i = rng.randrange(len(data))
        del data[i:i + rng.choice([1, 4, 100, 10_000])]
    elif kind == "repeat":
        i = rng.randrange(len(data))
        data[i:i] = data[i:i + rng.choice([8, 1000, 100_000])] * rng.choice([2, 50])
    else:
        i = rng.randrange(len(data))
        data[i:i + rng.choice([4, 64, 4096])] = bytes(min(len(data) - i, 4096))
    return bytes(data)


# --- structure-aware mutators, one per format ---------------------------------------------------------------

def mutate_sqz(blob: bytes, rng: random.Random) -> bytes:
    """Header JSON edits with everything that checks them (zlib, length, sha256) recomputed; else raw bytes
    with the checksum recomputed half the time (so the decoder behind the checksum is reached)."""
    magic_len = 8
    version, header_len = struct.unpack_from("<HI", blob, magic_len)
    start = magic_len + 6
    if rng.random() < 0.6:
        header = json.loads(zlib.decompress(blob[start:start + header_len]))
        header = mutate_json(header, rng)
        new = zlib.compress(dumps(header).encode())
        if rng.random() < 0.1:
            version = rng.choice([0, 1, 3, 65535])
        body = blob[:magic_len] + struct.pack("<HI", version, len(new)) + new + blob[start + header_len:-32]
    else:
        body = mutate_bytes(blob[:-32], rng)
        if rng.random() < 0.5:
            return body + blob[-32:]
    return body + hashlib.sha256(body).digest()


def mutate_safetensors(blob: bytes, rng: random.Random) -> bytes:
    """Edits of the JSON header (tensor entries and our metadata JSON inside ``__metadata__``)."""
    if rng.random() < 0.25:
        return mutate_bytes(blob, rng)
    n = struct.unpack_from("<Q", blob)[0]
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    if rng.random() < 0.5 and "squeezenet" in header.get("__metadata__", {}):
        meta = json.loads(header["__metadata__"]["squeezenet"])
        header["__metadata__"]["squeezenet"] = dumps(mutate_json(meta, rng))
    else:
        header = mutate_json(header, rng)
    text = dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def mutate_pth(blob: bytes, rng: random.Random) -> bytes:
    """Re-saved state_dicts with hostile metadata or tensors; foreign pickles; raw edits of the zip."""
    import torch

    roll = rng.random()
    if roll < 0.1:
        return rng.choice([b"hello world\n" * rng.randrange(1, 100), b"", b"PK\x03\x04", _evil_pickle(),
                           _pickled(rng.choice([[1, 2], {"a": 1}, "text", 3, None]))])
    if roll < 0.35:
        return mutate_bytes(blob, rng)
    state = torch.load(io.BytesIO(blob), weights_only=True)
    meta = json.loads(state._metadata["__squeezenet__"]["json"])
    if roll < 0.75:
        meta = mutate_json(meta, rng)
    else:
        key = rng.choice(list(state))
        state[key] = rng.choice([torch.zeros(0), torch.zeros(3, dtype=torch.int64), torch.zeros(2, 2),
                                 torch.zeros(state[key].shape, dtype=torch.float16), torch.tensor(float("nan"))])
    buffer = io.BytesIO()
    od = type(state)(state)
    od._metadata = {"__squeezenet__": {"json": dumps(meta)}}  # type: ignore[attr-defined]
    torch.save(od, buffer)
    return buffer.getvalue()


def _evil_pickle() -> bytes:
    return b"cos\nsystem\n(S'echo pwned > /tmp/squeezenet-fuzz-pwned'\ntR."


def _pickled(obj: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def mutate_onnx(blob: bytes, rng: random.Random) -> bytes:
    """Metadata edits (config, preprocessing, classes), graph edits (weights, attributes, operators, nodes, opset),
    renamed or re-shaped graph inputs and outputs, raw bytes."""
    import onnx

    if rng.random() < 0.25:
        return mutate_bytes(blob, rng)
    model = onnx.load_from_string(blob)
    roll = rng.random()
    props = {p.key: p for p in model.metadata_props}
    if roll < 0.6:
        prop = props[rng.choice(["config", "preprocessing", "classes", "precision", "format", "format_version"])]
        try:
            prop.value = dumps(mutate_json(json.loads(prop.value), rng))
        except ValueError:
            prop.value = dumps(hostile_value(rng))
    elif roll < 0.7:
        classes = json.loads(props["classes"].value)
        props["classes"].value = json.dumps(classes[:-1] if rng.random() < 0.5 else classes + ["extra"])
    elif roll < 0.75:
        _mutate_onnx_graph(model, rng)
    elif roll < 0.85:
        target = rng.choice([model.graph.input[0], model.graph.output[0]])
        if rng.random() < 0.5:
            target.name = rng.choice(["x", "", "images", "logits2"])
        else:
            dims = target.type.tensor_type.shape.dim
            dims[rng.randrange(len(dims))].dim_value = rng.choice([1, 3, 7, 1000, 2**31])
    else:
        del model.metadata_props[rng.randrange(len(model.metadata_props))]
    return model.SerializeToString()


def _mutate_onnx_graph(model: Any, rng: random.Random) -> None:
    """The graph itself: a weight's dims or bytes, a node's attribute, operator or inputs, a node removed, the opset."""
    graph = model.graph
    roll = rng.random()
    if roll < 0.3 and graph.initializer:
        init = rng.choice(list(graph.initializer))
        if init.dims and rng.random() < 0.5:
            init.dims[rng.randrange(len(init.dims))] = rng.choice([0, 1, 2, 1000, 2**31, 2**40])
        elif init.raw_data:
            init.raw_data = init.raw_data[:rng.randrange(len(init.raw_data))]
    elif roll < 0.55 and graph.node:
        node = rng.choice(list(graph.node))
        attrs = [a for a in node.attribute if a.ints or a.HasField("i") or a.HasField("f")]
        if attrs:
            attr = rng.choice(attrs)
            if attr.ints:
                attr.ints[rng.randrange(len(attr.ints))] = rng.choice([0, -1, 1000, 2**31 - 1])
            elif attr.HasField("i"):
                attr.i = rng.choice([-1, 0, 7, 2**31 - 1])
            else:
                attr.f = rng.choice([float("nan"), -1.0, 1e30])
        else:
            node.op_type = rng.choice(["Relu", "Identity", "Conv", "NoSuchOp", "Softmax"])
    elif roll < 0.7 and graph.node:
        node = rng.choice(list(graph.node))
        if node.input:
            node.input[rng.randrange(len(node.input))] = rng.choice([graph.input[0].name, "missing", ""])
    elif roll < 0.85 and graph.node:
        del graph.node[rng.randrange(len(graph.node))]
    else:
        model.opset_import[0].version = rng.choice([1, 7, 99, 10_000])


def mutate_net(blob: bytes, rng: random.Random) -> bytes:
    """Layer counts rewritten (the structure of a .net is its 26 counts), else raw bytes."""
    if rng.random() < 0.4:
        data = bytearray(blob)
        i = rng.randrange(26)
        struct.pack_into("<I", data, 4 * i, rng.choice([0, 1, 2**32 - 1, struct.unpack_from("<I", blob, 4 * i)[0] + 1]))
        return bytes(data)
    return mutate_bytes(blob, rng)


def mutate_pte(blob: bytes, rng: random.Random) -> bytes:
    """ExecuTorch flatbuffers: the metadata (a constant method's JSON string) edited in place, else raw bytes."""
    start = blob.find(b'{"format": ')
    if start >= 0 and rng.random() < 0.5:
        text = blob[start:start + 1_000_000].decode("utf-8", "replace")
        props, length = json.JSONDecoder().raw_decode(text)
        end = start + len(text[:length].encode())
        key = rng.choice(sorted(props))
        try:  # the config, preprocessing and classes values are JSON themselves
            props[key] = dumps(mutate_json(json.loads(props[key]), rng))
        except (ValueError, TypeError):
            props = mutate_json(props, rng)
        new = dumps(props).encode()
        if len(new) <= end - start:  # no longer than before: flatbuffer offsets stay valid, the content changes
            return blob[:start] + new.ljust(end - start) + blob[end:]
    return mutate_bytes(blob, rng)


MUTATORS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    ".sqz": mutate_sqz, ".net": mutate_net, ".safetensors": mutate_safetensors, ".pth": mutate_pth, ".onnx": mutate_onnx,
    ".pte": mutate_pte}


def make_seeds(folder: Path, shared: Path | None = None, formats: tuple[str, ...] = FORMATS) -> dict[str, bytes]:
    """One valid file per format: a weight-shared CIFAR SqueezeNet v1.1 (so the .sqz has shared records), and
    the published Deep Compression .net when ``shared`` (``../shared``) holds it."""
    import torch

    from squeezenet import create_model, save_weights

    torch.manual_seed(0)
    model = create_model("squeezenet1_1_cifar")
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:  # 16 shared values per tensor, a third of them zero: what compress writes
                levels = torch.linspace(-1, 1, 16) * p.abs().max()
                p.copy_(levels[torch.bucketize(p, levels).clamp(max=15)] * (torch.rand_like(p) > 0.33))
    seeds: dict[str, bytes] = {}
    for suffix in (".sqz", ".safetensors", ".pth"):
        path = save_weights(model, folder / f"seed{suffix}")
        seeds[suffix] = path.read_bytes()
    try:
        from squeezenet.deploy import export_onnx

        export_onnx(model, folder / "seed.onnx", check_images=torch.rand(2, 3, 32, 32))
        seeds[".onnx"] = (folder / "seed.onnx").read_bytes()
    except ImportError:
        pass
    if ".pte" in formats:
        from squeezenet.deploy.executorch import export_executorch

        export_executorch(model, folder / "seed.pte", check_images=torch.rand(2, 3, 32, 32))
        seeds[".pte"] = (folder / "seed.pte").read_bytes()
    net = (shared or Path()) / "data" / "deep-compression" / "compressed_SqueezeNet.net"
    if shared is not None and net.is_file():
        seeds[".net"] = net.read_bytes()
    return seeds


# --- probing one file -----------------------------------------------------------------------------------------

def probe(path: Path) -> tuple[str, str]:
    """Load ``path`` as users do and classify one image: (outcome, detail)."""
    import numpy as np

    from squeezenet import Classifier
    from squeezenet.errors import SqueezeNetError

    try:
        runtime = os.environ.get("SQZ_FUZZ_ONNX_RUNTIME", "onnxruntime") if path.suffix == ".onnx" else "auto"
        clf = Classifier.load(path, threads=1, runtime=runtime)
        image = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
        result = clf.predict([image], topk=3)[0]
        if result.error:
            return "refused", result.error
        if not all(np.isfinite(p) for _, _, p in result.top):
            return "UNTYPED", "non-finite probabilities"
        json.dumps([list(t) for t in result.top], allow_nan=False)
        return "loaded", ""
    except (SqueezeNetError, OSError) as exc:
        return "refused", " ".join(str(exc).split())
    except Exception as exc:  # noqa: BLE001 - the point of the campaign
        return "UNTYPED", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker(memory_limit_mb: int) -> None:
    """Read paths on stdin, answer one JSON line each: outcome, detail, peak RSS, seconds."""
    import torch

    torch.set_num_threads(1)
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever libraries print (native code included) goes to stderr, not into the answers
    soft = (memory_limit_mb + 2048) << 20  # address space: the RSS limit plus what torch maps at import
    resource.setrlimit(resource.RLIMIT_AS, (soft, soft))
    for line in sys.stdin:
        path = Path(line.strip())
        _reset_peak_rss()
        start = time.perf_counter()
        try:
            outcome, detail = probe(path)
        except MemoryError:
            outcome, detail = "MEMORY", "MemoryError"
        rss = _peak_rss_mb()
        if rss > memory_limit_mb:
            outcome = "MEMORY"
        print(json.dumps({"outcome": outcome, "detail": detail[:400], "len": len(detail), "rss": rss,
                          "s": time.perf_counter() - start}), file=answers, flush=True)


class Pool:
    """Worker processes fed one path at a time; a worker past the time limit is killed and replaced."""

    def __init__(self, workers: int, memory_mb: int, timeout: float):
        self.memory_mb, self.timeout = memory_mb, timeout
        self.procs: list[subprocess.Popen | None] = [None] * workers

    def _start(self) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
        return subprocess.Popen([sys.executable, __file__, "--worker", "--memory-mb", str(self.memory_mb)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=env)

    def run(self, paths: list[Path], report: Callable[[Path, dict], None]) -> None:
        pending = list(reversed(paths))
        busy: dict[int, tuple[Path, float]] = {}
        while pending or busy:
            for i, proc in enumerate(self.procs):
                if i not in busy and pending:
                    if proc is None or proc.poll() is not None:
                        proc = self.procs[i] = self._start()
                    path = pending.pop()
                    proc.stdin.write(f"{path}\n")  # type: ignore[union-attr]
                    proc.stdin.flush()  # type: ignore[union-attr]
                    busy[i] = (path, time.monotonic())
            streams = {self.procs[i].stdout: i for i in busy}  # type: ignore[union-attr]
            ready, _, _ = select.select(list(streams), [], [], 1.0)
            for stream in ready:
                i = streams[stream]
                line = stream.readline()
                path, _ = busy.pop(i)
                if line:
                    report(path, json.loads(line))
                else:  # the worker died (killed by the kernel, a crash in native code)
                    code = self.procs[i].wait()  # type: ignore[union-attr]
                    report(path, {"outcome": "CRASH", "detail": f"worker exit {code}", "len": 0, "rss": 0, "s": 0})
                    self.procs[i] = None
            now = time.monotonic()
            for i, (path, started) in list(busy.items()):
                if now - started > self.timeout:
                    self.procs[i].kill()  # type: ignore[union-attr]
                    self.procs[i].wait()  # type: ignore[union-attr]
                    self.procs[i] = None
                    busy.pop(i)
                    report(path, {"outcome": "HANG", "detail": f"over {self.timeout:.0f} s", "len": 0, "rss": 0,
                                  "s": now - started})

    def close(self) -> None:
        for proc in self.procs:
            if proc is not None:
                proc.kill()
                proc.wait()


def campaign(files: int, seed: int, folder: Path, workers: int, memory_mb: int, timeout: float,
             shared: Path | None, keep: Path | None, formats: tuple[str, ...] = FORMATS) -> dict[str, Counter]:
    rng = random.Random(seed)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 20_000))  # dumps() walks ~900-deep nested leaves
    seeds = make_seeds(folder, shared, formats)
    formats = tuple(sorted(set(seeds) & set(formats)))
    paths: list[Path] = []
    for n in range(files):
        suffix = formats[n % len(formats)]
        path = folder / f"f{n:06d}{suffix}"
        path.write_bytes(MUTATORS[suffix](seeds[suffix], rng))
        paths.append(path)
    table: dict[str, Counter] = defaultdict(Counter)
    worst: dict[str, float] = defaultdict(float)
    longest: dict[str, int] = defaultdict(int)
    longest_text: dict[str, str] = {}
    wordy: Counter = Counter()  # refusals longer than the CLI's one line (MESSAGE_CHARS)
    untyped: Counter = Counter()
    done = [0]
    started = time.monotonic()

    def report(path: Path, result: dict) -> None:
        suffix = path.suffix
        table[suffix][result["outcome"]] += 1
        worst[suffix] = max(worst[suffix], result["rss"])
        if result["outcome"] == "refused":
            if result["len"] > longest[suffix]:
                longest[suffix], longest_text[suffix] = result["len"], result["detail"]
            wordy[suffix] += result["len"] > MESSAGE_CHARS
        if result["outcome"] not in ("loaded", "refused"):
            untyped[f"{suffix} {result['outcome']} {result['detail'][:120]}"] += 1
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                (keep / path.name).write_bytes(path.read_bytes())
        done[0] += 1
        if done[0] % 500 == 0:
            print(f"  {done[0]:,}/{len(paths):,} files, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)

    pool = Pool(workers, memory_mb, timeout)
    try:
        pool.run(paths, report)
    finally:
        pool.close()
    outcomes = ["loaded", "refused", "UNTYPED", "HANG", "MEMORY", "CRASH"]
    print(f"\n{len(paths):,} mutated files, seed {seed}, {workers} workers, limits {memory_mb} MB RSS / {timeout:.0f} s, "
          f"{time.monotonic() - started:.0f} s")
    print(f"| format | {' | '.join(outcomes)} | peak RSS MB | longest message | messages > {MESSAGE_CHARS} chars |")
    print("|---" * (len(outcomes) + 4) + "|")
    for suffix in sorted(table):
        row = " | ".join(f"{table[suffix][o]:,}" for o in outcomes)
        print(f"| {suffix} | {row} | {worst[suffix]:.0f} | {longest[suffix]} | {wordy[suffix]} |")
    total = sum(table.values(), Counter())
    counts = " | ".join(f"{total[o]:,}" for o in outcomes)
    print(f"| all | {counts} | {max(worst.values()):.0f} | {max(longest.values(), default=0)} | {sum(wordy.values())} |")
    for suffix in sorted(longest_text):
        print(f"  longest {suffix} refusal: {longest_text[suffix][:160]!r}")
    for line, count in untyped.most_common(40):
        print(f"  {count:5d}  {line}")
    return dict(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="mutated files to try (spread over the formats)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-mb", type=int, default=2048, help="peak RSS a load may reach")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a load may take")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared",
                        help="../shared (for the published .net); skipped where absent")
    parser.add_argument("--keep", type=Path, help="copy files with a bad outcome here")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help=f"comma-separated, from {', '.join(FORMATS + OPTIONAL_FORMATS)} (.pte: not by default)")
    parser.add_argument("--onnx-runtime", choices=("onnxruntime", "openvino"), default="onnxruntime",
                        help="what runs the .onnx files (OpenVINO: the deploy-openvino extra)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.memory_mb)
        return 0
    formats = tuple(f.strip() for f in args.formats.split(","))
    if not set(formats) <= set(FORMATS + OPTIONAL_FORMATS):
        parser.error(f"--formats: choose from {', '.join(FORMATS + OPTIONAL_FORMATS)}")
    os.environ["SQZ_FUZZ_ONNX_RUNTIME"] = args.onnx_runtime  # the workers inherit it
    with tempfile.TemporaryDirectory(prefix="sqz-fuzz-") as tmp:
        table = campaign(args.files, args.seed, Path(tmp), args.workers, args.memory_mb, args.timeout,
                         args.shared if args.shared.is_dir() else None, args.keep, formats)
    bad = sum(c[o] for c in table.values() for o in ("UNTYPED", "HANG", "MEMORY", "CRASH"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
