"""The model contract (ModelMeta), the shared dataclass validator, and create_model with weights."""

import json
from pathlib import Path

import pytest
import torch
import torchvision

from conftest import require_shared
from squeezenet.common.imagenet import imagenet_names, imagenet_wnids
from squeezenet.common.schema import from_dict
from squeezenet.errors import SqueezeNetError
from squeezenet.models import (
    CIFAR,
    InferenceModel,
    ModelMeta,
    Network,
    SqueezeNetConfig,
    create_model,
    model_from_config,
)
from squeezenet.train.recipe import Recipe
from squeezenet.weights import PRETRAINED, load_weights, save_weights


def test_every_built_model_carries_a_complete_meta():
    for name, kwargs in (("squeezenet1_1", {}), ("squeezenet1_1_cifar", {}), ("alexnet", {"num_classes": 7})):
        model = create_model(name, **kwargs)
        assert isinstance(model, Network) and isinstance(model, InferenceModel)
        meta = model.meta
        assert meta.config is model.config and len(meta.classes) == model.num_classes
    assert create_model("squeezenet1_1").meta.classes[:2] == ("tench", "goldfish")
    assert create_model("squeezenet1_1_cifar").meta.preprocessing == CIFAR


def test_meta_refuses_inconsistent_class_names_and_survives_json():
    model = create_model("squeezenet1_1_cifar")
    with pytest.raises(SqueezeNetError, match="9 class names for a 10-class model"):
        model.meta.replace(classes=[str(i) for i in range(9)])
    meta = model.meta.replace(classes=[f"c{i}" for i in range(10)], source="here")
    again = ModelMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again == meta and isinstance(again.config, SqueezeNetConfig)
    with pytest.raises(SqueezeNetError, match="metadata version 9"):
        ModelMeta.from_dict({**meta.to_dict(), "version": 9})


def test_reset_classifier_resets_the_class_names():
    model = create_model("squeezenet1_1")
    model.reset_classifier(3)
    assert model.meta.classes == ("class 0", "class 1", "class 2") and model.config.num_classes == 3


def test_config_version_is_stored_and_newer_ones_refused():
    d = create_model("squeezenet1_0").config.to_dict()
    assert d["version"] == 1
    older = {k: v for k, v in d.items() if k != "version"}  # files written before the field existed
    assert model_from_config(older).config == create_model("squeezenet1_0").config
    with pytest.raises(SqueezeNetError, match="newer squeezenet"):
        model_from_config({**d, "version": 2})


@pytest.mark.parametrize("changes, words", [
    ({"epochs": 2.5}, "epochs must be a whole number"),
    ({"epochs": True}, "epochs must be a whole number"),
    ({"optimizer": {"lr": "fast"}}, "optimizer.lr must be a finite number"),
    ({"optimizer": {"lr": float("inf")}}, "optimizer.lr must be a finite number"),
    ({"optimizer": {"name": "adam"}}, "optimizer.name must be one of sgd, adamw"),
    ({"data": {"mean": [0.5, 0.5]}}, "data.mean must have 3 entries"),
    ({"data": {"limit_train": "all"}}, "data.limit_train must be"),
    ({"schedule": 3}, "schedule must be a mapping"),
    ({"bogus": 1}, "unknown field(s) bogus"),
])
def test_one_validator_names_the_dotted_field(changes, words):
    with pytest.raises(SqueezeNetError) as exc:
        from_dict(Recipe, changes, "recipe r.yaml")
    assert str(exc.value).startswith("recipe r.yaml: ") and words in str(exc.value)


def test_validator_converts_what_json_and_yaml_give():
    recipe = from_dict(Recipe, {"optimizer": {"lr": 1}, "data": {"mean": [0, 0, 0], "limit_val": None}}, "r")
    assert recipe.optimizer.lr == 1.0 and isinstance(recipe.optimizer.lr, float)
    assert recipe.data.mean == (0.0, 0.0, 0.0) and recipe.data.limit_val is None


def test_packaged_imagenet_classes_match_an_independent_list():
    reference = require_shared("imagenet_classes.tsv")
    rows = [line.split("\t") for line in reference.read_text().splitlines()[1:] if line]
    assert imagenet_wnids() == tuple(r[1] for r in rows)
    assert imagenet_names() == tuple(torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1.meta["categories"])


# --- create_model with weights (timm's pretrained=True, torchvision's weights=) -------------------------------

@pytest.fixture
def tv_hub(tmp_path, monkeypatch):
    """torchvision's squeezenet1_1 weights placed in an empty torch hub cache (no download)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.squeezenet1_1().eval()
    path = PRETRAINED["squeezenet1_1.tv_in1k"].cache_path()
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    return reference


def test_create_model_pretrained_loads_the_default_weights(tv_hub):
    import squeezenet

    model = squeezenet.create_model("squeezenet1_1", pretrained=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv_hub(x), rtol=0, atol=1e-6)
    assert model.meta.source == "squeezenet1_1.tv_in1k" and model.meta.classes[0] == "tench"

    tuned = squeezenet.create_model("squeezenet1_1", weights="squeezenet1_1.tv_in1k", num_classes=5, dropout=0.2)
    assert tuned.num_classes == 5 and tuned.config.dropout == 0.2 and len(tuned.meta.classes) == 5
    assert torch.equal(tuned.features[0].weight, model.features[0].weight)  # the backbone is the pretrained one
    backbone = squeezenet.create_model("squeezenet1_1", pretrained=True, features_only=True, out_indices=[-1])
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)[0], tv_hub.features(x), rtol=0, atol=1e-6)


def test_create_model_refuses_weights_of_another_network(tv_hub, tmp_path):
    import squeezenet

    with pytest.raises(SqueezeNetError, match="another network than squeezenet1_0"):
        squeezenet.create_model("squeezenet1_0", weights="squeezenet1_1.tv_in1k")
    with pytest.raises(SqueezeNetError, match="batch_norm would change the layers"):
        squeezenet.create_model("squeezenet1_1", pretrained=True, batch_norm=True)
    with pytest.raises(SqueezeNetError, match="no published weights for squeezenet_design"):
        squeezenet.create_model("squeezenet_design", pretrained=True)
    path = save_weights(create_model("squeezenet1_1_cifar"), tmp_path / "c.safetensors")
    assert squeezenet.create_model("squeezenet1_1_cifar", weights=path).meta.preprocessing == CIFAR
    assert load_weights(path).meta.source is None


def test_torch_hub_entry_points_load_locally(tv_hub):
    repo = Path(__file__).resolve().parents[2]
    model = torch.hub.load(str(repo), "squeezenet1_1", source="local", pretrained=True)
    assert model.meta.source == "squeezenet1_1.tv_in1k"
    fresh = torch.hub.load(str(repo), "squeezenet1_0_cifar", source="local", num_classes=4)
    assert fresh.num_classes == 4
