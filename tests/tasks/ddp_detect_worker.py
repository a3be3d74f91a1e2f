"""Run under torchrun by test_detection.py: train a tiny detector for an epoch and save this rank's final weights."""

import os
import sys

import torch

from squeezenet.train import load_recipe, train

out_dir, run_dir, data = sys.argv[1], sys.argv[2], sys.argv[3]
recipe = load_recipe("detect", {
    "epochs": 2, "batch_size": 4, "time_budget_s": None, "optimizer.name": "sgd", "optimizer.lr": 0.05,
    "schedule.name": "cosine",
    # no batch norm (per-rank statistics would differ) and no dropout (per-rank random masks)
    "model_options": {"body": "v1.1", "batch_norm": False, "dropout": 0.0},
    "data.image_size": 64, "data.augment": "flip",
})
result = train(recipe, data, run_dir, progress_bar=False)
torch.save(result.model.state_dict(), os.path.join(out_dir, f"rank{os.environ.get('RANK', '0')}.pt"))
