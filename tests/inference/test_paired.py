"""Paired evaluation: the statistics against hand-computed values, and compare() against a direct computation."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from squeezenet.cli import main
from squeezenet.errors import SqueezeNetError
from squeezenet.inference import compare, paired_difference
from squeezenet.models import create_model
from squeezenet.weights import load_weights, save_weights


def test_paired_difference_matches_a_hand_computed_case():
    # 250 images, 5 only the candidate gets right, 3 only the reference: d = 2/250
    d, low, high, p = paired_difference(5, 3, 250)
    assert d == pytest.approx(0.008)
    # Agresti-Min: b' = 5.5, c' = 3.5, n' = 252; se = sqrt(9 - 4/252) / 252
    se = math.sqrt(9 - 4 / 252) / 252
    assert low == pytest.approx(2 / 252 - 1.959964 * se, abs=1e-6) and high == pytest.approx(2 / 252 + 1.959964 * se, abs=1e-6)
    assert (round(100 * low, 2), round(100 * high, 2)) == (-1.54, 3.12)
    assert p == pytest.approx(2 * (1 + 8 + 28 + 56) / 256)  # exact binomial, 8 discordant pairs, k = 3
    assert paired_difference(0, 0, 10)[3] == 1.0 and paired_difference(0, 0, 10)[0] == 0.0
    assert paired_difference(0, 12, 12)[2] < 0  # a clear loss: the whole interval below zero
    with pytest.raises(SqueezeNetError, match="do not fit"):
        paired_difference(7, 7, 10)


@pytest.fixture
def three_class_folder(tmp_path):
    g = np.random.default_rng(0)
    for cls in ("a", "b", "c"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(g.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "data" / cls / f"{i}.png")
    (tmp_path / "data" / "a" / "broken.png").write_bytes(b"not a png")
    return tmp_path / "data"


def _pair(tmp_path):
    torch.manual_seed(0)
    ref = create_model("squeezenet1_1_cifar", num_classes=3).eval()
    ref.meta = ref.meta.replace(classes=["a", "b", "c"])
    cand = create_model("squeezenet1_1_cifar", num_classes=3).eval()
    cand.load_state_dict(ref.state_dict())
    with torch.no_grad():
        cand.get_classifier().weight.add_(0.05 * torch.randn_like(cand.get_classifier().weight))
    cand.meta = ref.meta
    return save_weights(ref, tmp_path / "ref.safetensors"), save_weights(cand, tmp_path / "cand.safetensors")


def test_compare_matches_a_direct_computation(tmp_path, three_class_folder):
    ref_path, cand_path = _pair(tmp_path)
    ref, cand = load_weights(ref_path), load_weights(cand_path)
    result = compare(cand, ref, three_class_folder, batch_size=4, progress=False)
    assert result.n == 18 and result.skipped == 1 and "broken.png" in result.skipped_files[0]

    files = sorted((p, "abc".index(p.parent.name)) for p in three_class_folder.rglob("*.png") if p.name != "broken.png")
    t = ref.meta.preprocessing.transforms()
    x = torch.stack([t(torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)) for p, _ in files])
    y = torch.tensor([label for _, label in files])
    with torch.no_grad():
        pr, pc = ref(x).double().softmax(1), cand(x).double().softmax(1)
    kl = torch.nn.functional.kl_div(pc.log(), pr, reduction="batchmean")  # KL(reference || candidate)
    assert result.kl == pytest.approx(float(kl), rel=1e-6)
    assert result.agreement == pytest.approx(float((pr.argmax(1) == pc.argmax(1)).double().mean()))
    assert result.reference_top1 == pytest.approx(float((pr.argmax(1) == y).double().mean()))
    assert result.top1 == pytest.approx(float((pc.argmax(1) == y).double().mean()))
    b = int(((pc.argmax(1) == y) & (pr.argmax(1) != y)).sum())
    c = int(((pr.argmax(1) == y) & (pc.argmax(1) != y)).sum())
    assert (result.only_candidate_right, result.only_reference_right) == (b, c)

    same = compare(ref, ref, three_class_folder, progress=False)
    assert same.agreement == 1.0 and same.kl == pytest.approx(0.0, abs=1e-12) and same.top1_diff == 0.0


def test_eval_reference_cli_reports_every_statistic(tmp_path, three_class_folder, capsys):
    ref_path, cand_path = _pair(tmp_path)
    assert main(["eval", "-w", str(cand_path), "-d", str(three_class_folder), "--reference", str(ref_path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"top1", "top5", "reference_top1", "reference_top5", "agreement", "kl", "top1_diff", "top1_diff_low",
            "top1_diff_high", "mcnemar_p", "n", "skipped"} <= set(d)
    assert main(["eval", "-w", str(cand_path), "-d", str(three_class_folder), "--reference", str(ref_path)]) == 0
    out = capsys.readouterr().out
    assert "agreement" in out and "95% interval" in out and "McNemar" in out
    other = save_weights(create_model("squeezenet1_1_cifar", num_classes=4), tmp_path / "four.safetensors")
    assert main(["eval", "-w", str(other), "-d", str(three_class_folder), "--reference", str(ref_path)]) == 1
    assert "not the same task" in capsys.readouterr().err


def test_compress_eval_pairs_the_file_with_its_input(tmp_path, three_class_folder, capsys):
    ref_path, _ = _pair(tmp_path)
    out = tmp_path / "c.sqz"
    assert main(["compress", "-w", str(ref_path), "-o", str(out), "--density", "0.5", "--bits", "4",
                 "--eval", str(three_class_folder), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    expected = compare(load_weights(out), load_weights(ref_path), three_class_folder, progress=False)
    assert d["paired"]["agreement"] == expected.agreement and d["paired"]["kl"] == pytest.approx(expected.kl)
    assert d["before"]["top1"] == expected.reference_top1 and d["after"]["top1"] == expected.top1
