from pathlib import Path

import pytest
from helpers.recipes import REPO, write_recipe

from edgepipe.errors import EdgepipeError
from edgepipe.recipe import load_recipe

SHIPPED = sorted((REPO / "recipes").glob("*.yaml"))


def test_required_recipes_ship():
    names = {p.stem for p in SHIPPED}
    assert {"mnist-lenet5", "mnist-resnet", "mnist-mobilenetv2", "seqmnist-lstm", "seqmnist-gru", "digits-mlp"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_recipes_validate(path: Path, tmp_path: Path):
    """Every shipped recipe passes the checks `edgepipe pipeline` runs before its first stage (a torchvision:
    backbone recipe once failed them: the pre-check knew only the zoo and import paths)."""
    from edgepipe.stages.pipeline import check_recipe

    recipe = load_recipe(path)
    assert recipe.name == path.stem
    if recipe.dataset.path and not (REPO / recipe.dataset.path).is_dir():  # a folder the README says to generate
        from edgepipe.data.sample_folder import write_sample_folder

        folder = write_sample_folder(tmp_path / "shapes", images=8, sizes=(32, 48))
        recipe = recipe.model_copy(update={"dataset": recipe.dataset.model_copy(update={"path": str(folder)})})
    check_recipe(recipe)


@pytest.mark.parametrize(("name", "says"), [("torchvision:resnet19", "not a torchvision classification model"),
                                           ("timm:resnet_nope", "timm has no model")])
def test_an_unknown_backbone_is_refused_before_any_stage(tmp_path, name, says):
    from edgepipe.stages.pipeline import check_recipe

    pytest.importorskip(name.partition(":")[0])
    recipe = load_recipe(write_recipe(tmp_path / "r.yaml", model={"name": name}))
    with pytest.raises(EdgepipeError, match=says) as info:
        check_recipe(recipe)
    assert "\n" not in str(info.value)


def test_unknown_key_names_key_file_and_allowed(tmp_path):
    path = write_recipe(tmp_path / "r.yaml", train={"learning_rate": 0.1})
    with pytest.raises(EdgepipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert "train.learning_rate" in message and str(path) in message
    assert "lr" in message and "optimizer" in message  # the allowed keys are listed
    assert "\n" not in message


def test_unknown_top_level_section(tmp_path):
    path = write_recipe(tmp_path / "r.yaml", trian={"epochs": 1})
    with pytest.raises(EdgepipeError, match=r"unknown key 'trian'.*train"):
        load_recipe(path)


def test_bad_value_and_bad_optimizer(tmp_path):
    with pytest.raises(EdgepipeError, match=r"train.optimizer"):
        load_recipe(write_recipe(tmp_path / "a.yaml", train={"optimizer": "rmsprop"}))
    with pytest.raises(EdgepipeError, match=r"train.lr"):
        load_recipe(write_recipe(tmp_path / "b.yaml", train={"lr": -1}))


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(EdgepipeError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(EdgepipeError, match="not valid YAML"):
        load_recipe(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(EdgepipeError, match="must be a YAML mapping"):
        load_recipe(listy)


def test_unquoted_2_4_in_yaml_means_2_4_and_2_4_takes_one_step(tmp_path):
    path = tmp_path / "r.yaml"
    write_recipe(path, prune={"method": "PLACEHOLDER"})
    path.write_text(path.read_text().replace("PLACEHOLDER", "2:4"))  # unquoted: YAML 1.1 reads 124
    assert load_recipe(path).prune.method == "2:4"
    with pytest.raises(EdgepipeError, match="prune.steps.*one step"):
        load_recipe(write_recipe(tmp_path / "s.yaml", prune={"method": "2:4", "steps": 2}))
