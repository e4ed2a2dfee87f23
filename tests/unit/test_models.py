import pytest
import torch

from edgepipe.errors import EdgepipeError
from edgepipe.models import ZOO, build_model, classifier_of, initialize

SHAPES = {"lstm": (28, 28), "gru": (28, 28), "mlp": (1, 8, 8)}


CLASSIFIERS = sorted(set(ZOO) - {"conv-autoencoder"})


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
