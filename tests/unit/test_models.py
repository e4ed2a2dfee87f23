import pytest
import torch

from edgepipe.errors import EdgepipeError
from edgepipe.models import ZOO, build_model, classifier_of, initialize

SHAPES = {"lstm": (28, 28), "gru": (28, 28), "mlp": (1, 8, 8)}


CLASSIFIERS = sorted(set(ZOO) - {"conv-autoencoder", "centernet"})  # centernet: tests/unit/test_detector.py


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_every_zoo_classifier_builds_runs_and_has_a_classifier(name):
    shape = SHAPES.get(name, (1, 28, 28))
    model = build_model({"name": name, "input_shape": shape, "num_classes": 7}).eval()
    assert model(torch.zeros(3, *shape)).shape == (3, 7)
    assert isinstance(classifier_of(model), torch.nn.Linear)


def test_the_autoencoder_rebuilds_its_input_shape():
    model = build_model({"name": "conv-autoencoder", "input_shape": (3, 16, 12), "num_classes": 2}).eval()
    assert model(torch.zeros(2, 3, 16, 12)).shape == (2, 3, 16, 12)
    with pytest.raises(EdgepipeError, match="divisible by 4"):
        build_model({"name": "conv-autoencoder", "input_shape": (1, 10, 8), "num_classes": 2})


def test_import_path_model_gets_num_classes():
    model = build_model({"name": "helpers.user_models:tiny_cnn", "params": {"width": 4},
                         "input_shape": (1, 12, 12), "num_classes": 5})
    assert model(torch.zeros(2, 1, 12, 12)).shape == (2, 5)


@pytest.mark.parametrize("name, match", [
    ("transformer", "unknown model 'transformer'"),
    ("no_such_pkg.mod:fn", "cannot import module"),
    ("helpers.user_models:missing", "has no attribute"),
])
def test_bad_model_names(name, match):
    with pytest.raises(EdgepipeError, match=match):
        build_model({"name": name, "input_shape": (1, 8, 8), "num_classes": 2})


def test_bad_params_are_user_errors():
    with pytest.raises(EdgepipeError, match="bad params"):
        build_model({"name": "resnet", "params": {"wdith": 8}, "input_shape": (1, 8, 8), "num_classes": 2})


def test_kaiming_and_xavier_init_differ_from_default():
    torch.manual_seed(0)
    kaiming = build_model({"name": "mlp", "input_shape": (1, 8, 8), "num_classes": 3})
    initialize(kaiming, "kaiming")
    torch.manual_seed(0)
    xavier = build_model({"name": "mlp", "input_shape": (1, 8, 8), "num_classes": 3})
    initialize(xavier, "xavier")
    first_k = kaiming.features[1].weight
    first_x = xavier.features[1].weight
    assert not torch.allclose(first_k, first_x)
    # Kaiming normal (fan_out, relu) has std sqrt(2/fan_out); Xavier uniform has std sqrt(2/(fan_in+fan_out)).
    assert first_k.std().item() == pytest.approx((2 / 256) ** 0.5, rel=0.1)
    assert first_x.std().item() == pytest.approx((2 / (64 + 256)) ** 0.5, rel=0.1)


def test_torchvision_and_timm_backbones_build_by_name_for_the_dataset_classes():
    import torch

    from edgepipe.models import build_model, classifier_of

    for name in ("torchvision:resnet18", "torchvision:mobilenet_v3_small", "timm:mobilenetv3_small_050"):
        model = build_model({"name": name, "params": {}, "input_shape": [3, 32, 32], "num_classes": 5}).eval()
        with torch.inference_mode():
            assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5), name
        assert classifier_of(model) is not None, name
    vit = build_model({"name": "timm:vit_tiny_patch16_224", "params": {"depth": 1},
                       "input_shape": [3, 64, 64], "num_classes": 3})  # the image size follows the dataset
    assert vit(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


@pytest.mark.parametrize(("name", "message"), [
    ("torchvision:resnet9000", "not a torchvision classification model"),
    ("timm:not_a_model_at_all", "timm has no model"),
])
def test_an_unknown_backbone_is_one_line(name, message):
    from edgepipe.models import build_model

    with pytest.raises(EdgepipeError, match=message) as info:
        build_model({"name": name, "params": {}, "input_shape": [3, 32, 32], "num_classes": 2})
    assert "\n" not in str(info.value)


def test_pretrained_weights_load_by_name_and_the_new_head_is_reported(tmp_path):
    import safetensors.torch
    import torch

    from edgepipe.models import build_model
    from edgepipe.models.backbones import describe_load, load_pretrained

    spec = {"name": "torchvision:resnet18", "params": {}, "input_shape": [3, 32, 32]}
    source = build_model({**spec, "num_classes": 10})
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "r18.pth")
    safetensors.torch.save_file(source.state_dict(), str(tmp_path / "r18.safetensors"))
    for file in ("r18.pth", "r18.safetensors"):
        target = build_model({**spec, "num_classes": 4})
        report = load_pretrained(target, tmp_path / file, spec["name"])
        assert report["reshaped"] == ["fc.bias", "fc.weight"] and not report["missing"] and not report["unexpected"]
        assert torch.equal(target.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
        assert "classifier for these classes (initialized fresh): fc.bias, fc.weight" in describe_load(report)
    same_classes = build_model({**spec, "num_classes": 10})  # even a head of the same shape starts fresh
    assert load_pretrained(same_classes, tmp_path / "r18.pth", spec["name"])["reshaped"] == ["fc.bias", "fc.weight"]
    assert not torch.equal(same_classes.fc.weight, source.fc.weight)
    # near zero, so a frozen backbone's first logits are small (a Kaiming head starts at loss ~4.6 on 4 classes)
    assert abs(same_classes.fc.weight.std().item() - 0.01) < 0.002 and not same_classes.fc.bias.any()


def test_weights_that_are_absent_pickle_code_or_belong_elsewhere_are_refused(tmp_path):
    import torch

    from edgepipe.models import build_model
    from edgepipe.models.backbones import load_pretrained

    model = build_model({"name": "torchvision:resnet18", "params": {}, "input_shape": [3, 32, 32], "num_classes": 2})
    with pytest.raises(EdgepipeError, match=r"never downloads.*get_model\('resnet18', weights='DEFAULT'\)"):
        load_pretrained(model, tmp_path / "resnet18.pth", "torchvision:resnet18")
    torch.save({"model": {"x": torch.zeros(1)}, "code": print}, tmp_path / "pickled.pth")  # a pickled function
    with pytest.raises(EdgepipeError, match="a full pickled model .* which edgepipe never unpickles"):
        load_pretrained(model, tmp_path / "pickled.pth", "torchvision:resnet18")
    torch.save({"other.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(EdgepipeError, match="none of its 1 tensors matches"):
        load_pretrained(model, tmp_path / "other.pth", "torchvision:resnet18")


def test_a_registry_backbone_in_a_manifest_needs_no_trust():
    from edgepipe.trust import is_import_path

    assert not is_import_path("torchvision:resnet18") and not is_import_path("timm:resnet18")
    assert is_import_path("os:system") and is_import_path("torchvision.models:resnet18")
