"""lit_gpt/studies/recipe.py: reading a recipe, filling its placeholders, and the one-line errors for a bad recipe."""

import pytest

from lit_gpt.studies.recipe import fill_value, load_recipe
from lit_gpt.utils import UserError

RECIPE = """\
question: Does it help?
settings: {rows: 1000, max_seq_length: 256}
build:
  - mix_datasets.py --inputs {data}/a --counts {rows} --destination_path {data}/b
  - >-
    prepare_json.py --columns '{{"score": "score_ifd"}}' --max_seq_length {max_seq_length}
compare:
  checkpoint_dir: ckpt
  data_dirs: ["{data}/a", "{data}/b"]
  max_iters: "{rows}"
"""


def write(tmp_path, text=RECIPE):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_placeholders_are_filled_from_settings_overrides_and_fixed_values(tmp_path):
    recipe = load_recipe(write(tmp_path))
    values = recipe.values({"data": "d", "checkpoint_dir": "ckpt", "shared": "s"}, {"rows": 8})
    assert values["rows"] == 8 and values["max_seq_length"] == 256
    steps = recipe.steps(values)
    assert [s.script for s in steps] == ["mix_datasets.py", "prepare_json.py"]
    assert steps[0].args == ["--inputs", "d/a", "--counts", "8", "--destination_path", "d/b"]
    assert steps[1].args[1] == '{"score": "score_ifd"}'  # {{ }} is a literal brace, as in str.format
    assert steps[1].command() == ("""python scripts/prepare_json.py --columns '{"score": "score_ifd"}' """
                                  "--max_seq_length 256")
    flags = recipe.compare_flags(values)
    assert flags["data_dirs"] == ["d/a", "d/b"] and flags["max_iters"] == 8  # a lone placeholder keeps its type


def test_gpu_settings_give_the_full_size(tmp_path):
    recipe = load_recipe(write(tmp_path, RECIPE + "gpu_settings:\n  settings: {rows: 9000}\n"
                                                  "  compare: {ifeval_prompts: -1, max_iters: 300}\n"))
    assert recipe.settings["rows"] == 1000 and "ifeval_prompts" not in recipe.compare  # the CPU size by default
    gpu = recipe.for_gpu()
    assert gpu.settings == {"rows": 9000, "max_seq_length": 256}
    assert gpu.compare["ifeval_prompts"] == -1 and gpu.compare["max_iters"] == 300
    assert gpu.compare["data_dirs"] == recipe.compare["data_dirs"]
    with pytest.raises(UserError, match=r"gpu_settings.settings \['row'\] are not in `settings`"):
        load_recipe(write(tmp_path, RECIPE + "gpu_settings: {settings: {row: 1}}\n"))
    with pytest.raises(UserError, match="`gpu_settings` must be a mapping"):
        load_recipe(write(tmp_path, RECIPE + "gpu_settings: {flags: {}}\n"))


def test_fill_value_nests_and_names_an_unknown_placeholder():
    assert fill_value({"a": ["{x}/y", 3]}, {"x": "p"}, "here") == {"a": ["p/y", 3]}
    with pytest.raises(UserError, match=r"here\.a: unknown placeholder\(s\) \{z\}; known: \{x\}"):
        fill_value({"a": "{z}"}, {"x": "p"}, "here")


def test_an_unknown_setting_is_refused_with_the_known_ones(tmp_path):
    recipe = load_recipe(write(tmp_path))
    with pytest.raises(UserError, match=r"--settings \['row'\]: not settings of .* \(it has: max_seq_length, rows\)"):
        recipe.values({}, {"row": 8})


@pytest.mark.parametrize("text, message", [
    ("question: q\nbuilds: []\n", r"unknown key\(s\) \['builds'\]"),
    ("settings: {}\n", "`question`"),
    ("question: q\nbuild: mix_datasets.py\n", "`build` must be a list"),
    ("question: q\nbuild: [ls -l]\n", "build step 1 'ls -l' must start with a script of scripts/"),
    ("question: [unclosed\n", "not valid YAML"),
])
def test_a_bad_recipe_is_one_line_naming_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UserError, match=message) as error:
        load_recipe(path).steps({})
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_missing_recipe_points_to_the_recipes(tmp_path):
    with pytest.raises(UserError, match="scripts/studies/"):
        load_recipe(tmp_path / "nope.yaml")
