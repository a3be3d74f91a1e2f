"""Run under torchrun by test_train_runs.py: train a few steps and save this rank's final weights."""

import os
import sys

import torch

from squeezenet.train import load_recipe, train

out_dir, run_dir, data_root = sys.argv[1], sys.argv[2], sys.argv[3]
budget = float(sys.argv[4]) if len(sys.argv) > 4 else None  # seconds; None: one epoch
recipe = load_recipe("cifar10", {
    "epochs": 1 if budget is None else 50, "batch_size": 64, "time_budget_s": budget, "optimizer.lr": 0.02,
    "model_options": {"batch_norm": False, "stem_pool": True, "dropout": 0.0},  # no BN: per-rank statistics would differ
    "data.limit_train": 256, "data.limit_val": 64,
})
result = train(recipe, "cifar10", run_dir, data_root=data_root, progress_bar=False)
torch.save(result.model.state_dict(), os.path.join(out_dir, f"rank{os.environ.get('RANK', '0')}.pt"))
