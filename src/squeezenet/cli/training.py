"""Verbs that train: ``train``, ``recipes``, ``demo`` (the ``[train]`` extra)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from .args import add_data_root, add_json, add_set, positive_int, verb


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="'cifar10' (under $SQUEEZENET_DATA, downloaded if absent) or a folder with "
                                  "train/ and val/ or test/ (one sub-folder per class); detectors: a YOLO folder "
                                  "(images/, labels/, classes.txt; every fifth image validates), a COCO folder "
                                  "(images/, annotations.json), or train/ and val/ folders of either; segmenters: "
                                  "a YOLO folder with polygon labels, or images/ with masks/ PNGs and classes.txt "
                                  "(the background included)")
    p.add_argument("-o", "--output", metavar="RUN_DIR", help="new run directory")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--recipe", help="a named recipe (see `squeezenet recipes`) or a YAML file (default: cifar10; "
                                    "detect for a detector --model, segment for a segmenter)")
    p.add_argument("--model", help="override the recipe's model (see `squeezenet models`)")
    p.add_argument("--backbone-weights", metavar="WEIGHTS", dest="backbone_weights",
                   help="detectors and segmenters: ImageNet weights for the SqueezeNet body (a file such as the Deep Compression "
                        ".net or torchvision's .pth, or a named weight set); default: a random body")
    p.add_argument("--classes", type=_class_list, metavar="NAME[,NAME...]",
                   help="detectors and segmenters: train on these classes of the data only (--classes person: person "
                        "against background); other objects are dropped, their pixels become background")
    p.add_argument("--epochs", type=positive_int, help="override the number of epochs")
    p.add_argument("--batch-size", type=positive_int, help="override the global batch size")
    p.add_argument("--lr", type=float, help="override the peak learning rate")
    p.add_argument("--time-budget", type=float, metavar="SECONDS", dest="time_budget_s",
                   help="end training (the schedule annealed to its end) once it has taken this long; 0: no budget, "
                        "train every epoch (default: the recipe's; cifar10's is 540 s)")
    add_set(p, "override any recipe field, repeatable: --set model_options.batch_norm=false --set data.workers=8 "
               "--set label_smoothing=0")
    add_data_root(p)
    p.add_argument("--accelerator", default="auto", help="auto, cpu, gpu (default auto)")
    p.add_argument("--devices", default="auto", help="devices per node (default auto; torchrun sets it)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-progress", action="store_true", help="one line per epoch instead of a progress bar")
    add_json(p, "print the final metrics as JSON")


def _class_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one class")
    return names


def _recipes_arguments(p: argparse.ArgumentParser) -> None:
    pass


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", metavar="RUN_DIR", help="run directory (default runs/demo-TIMESTAMP)")
    p.add_argument("--epochs", type=positive_int, help="override the recipe's epochs")
    p.add_argument("--data-root", help="where cifar10/ lives (default $SQUEEZENET_DATA)")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a killed demo: finished steps are kept, training and compression continue from "
                        "their last epoch")


@verb("train", _train_arguments, extra="train")
def cmd_train(args: argparse.Namespace) -> int:
    """Train a model (CIFAR-10, ImageFolder, ImageNet) with a recipe.

    Train with Lightning on whatever hardware is present (CPU, one or more GPUs; bf16 on GPU). For several GPUs
    or nodes, launch the same command with torchrun. A checkpoint is written every epoch; --resume RUN_DIR
    continues exactly. RUN_DIR gets best.safetensors, metrics.json, curves.png and CSV/TensorBoard logs.
    """
    from ..common.dist import is_first_process
    from ..errors import SqueezeNetError
    from ..models import model_task
    from ..train import Recipe, apply_overrides, load_recipe, load_run, train

    sets: dict[str, Any] = dict(args.options)
    flags = {key: value for key, value in (("model", args.model), ("epochs", args.epochs), ("batch_size", args.batch_size),
                                           ("optimizer.lr", args.lr), ("time_budget_s", args.time_budget_s),
                                           ("backbone_weights", args.backbone_weights), ("data.classes", args.classes))
             if value is not None}
    if args.resume:
        run = load_run(args.resume)
        where = f"{args.resume}/run.json"
        # every --set is checked on its own first: a flag for the same field would otherwise hide a bad value
        Recipe.from_dict(apply_overrides(run["recipe"], sets), where).validate()
        recipe = Recipe.from_dict(apply_overrides(run["recipe"], {**sets, **flags}), where).validate()
        data, run_dir, data_root = run["data"], args.resume, args.data_root or run.get("data_root") or None
    else:
        if not args.output or not args.data:
            raise SqueezeNetError("train needs --data and -o RUN_DIR (or --resume RUN_DIR)")
        task = model_task(args.model) if args.model else "classify"
        name = args.recipe or {"detect": "detect", "segment": "segment"}.get(task, "cifar10")
        load_recipe(name, sets)
        recipe = load_recipe(name, {**sets, **flags})
        data, run_dir, data_root = args.data, args.output, args.data_root
    metrics = train(recipe, data, run_dir, data_root=data_root, resume=bool(args.resume), accelerator=args.accelerator,
                    devices=args.devices, compile=args.compile, progress_bar=False if args.no_progress else None).metrics
    if is_first_process():
        scores = (f"mAP@.5 {metrics['map50']:.4f}   mAP {metrics['map']:.4f}" if "map50" in metrics else
                  f"mIoU {metrics['miou']:.4f}   pixel accuracy {metrics['pixel_acc']:.4f}" if "miou" in metrics else
                  f"top-1 {metrics['top1']:.4f}   top-5 {metrics['top5']:.4f}")
        print(json.dumps(metrics, indent=2) if args.json else
              f"{scores}   epochs {metrics['epochs']}   {metrics['fit_time_s']:.0f} s   weights {run_dir}/best.safetensors")
    return 0



@verb("recipes", _recipes_arguments, extra="train")
def cmd_recipes(args: argparse.Namespace) -> int:
    """List the named training recipes.

    List the training recipes shipped with the package.
    """
    from ..train import list_recipes, load_recipe

    for name in list_recipes():
        print(f"{name:12s} {load_recipe(name).description}")
    return 0


@verb("demo", _demo_arguments, extra="train")
def cmd_demo(args: argparse.Namespace) -> int:
    """Train, compress, evaluate and summarise a small SqueezeNet on CIFAR-10.

    The main job, end to end: train the cifar10 recipe on CIFAR-10 (from $SQUEEZENET_DATA, or downloaded),
    evaluate the exported weights on the test set, Deep-Compress them into model.sqz (pruning while fine-tuning,
    4-bit weight sharing, entropy coding), evaluate that file too and print both with their sizes and ratios to
    fp32 and to AlexNet's 240 MB. About 20 minutes on a 2-core CPU.
    """
    from ..demo import print_demo, run_demo
    from ..errors import SqueezeNetError

    if args.resume and (args.output or args.epochs):
        raise SqueezeNetError("demo --resume RUN_DIR continues that run as it was started: drop -o and --epochs")
    run_dir = args.resume or args.output or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
    print_demo(run_demo(run_dir, epochs=args.epochs, data_root=args.data_root, resume=bool(args.resume)))
    return 0
