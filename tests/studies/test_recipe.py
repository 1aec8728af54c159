"""lit_gpt/studies/recipe.py: reading a recipe, filling its placeholders, and the one-line errors for a bad recipe;
a recipe runs only the dataset tools, with their own flags, writing only under its data root."""

import json
import re

import pytest

from lit_gpt.studies.recipe import BuildStep, fill, fill_value, load_recipe, recorded_settings
from lit_gpt.utils import UserError

RECIPE = """\
question: Does it help?
settings: {rows: 1000, max_seq_length: 256}
build:
  - mix_datasets.py --inputs {data}/a --counts {rows} --destination_path {data}/b
  - >-
    prepare_json.py --columns '{{"score": "score_ifd"}}' --max_seq_length {max_seq_length} --destination_path {data}/c
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
                                  "--max_seq_length 256 --destination_path d/c")
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
    ("question: q\ncompare: {out_dir: /etc}\n", "compare.out_dir: a recipe does not choose where results are written"),
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


def steps_of(tmp_path, *build, data="data"):
    text = "question: q\nbuild:\n" + "".join(f"  - {json.dumps(line)}\n" for line in build)
    return load_recipe(write(tmp_path, text)).steps({"data": str(tmp_path / data), "shared": "s"})


@pytest.mark.parametrize("line", ["compare_datasets.py --recipe scripts/studies/1_quality_vs_quantity.yaml",
                                  "upload.py --repo_id me/x", "benchmark.py --litgpt_python /bin/sh",
                                  "dev/benchmark.py --litgpt_python /bin/sh", "scripts/mix_datasets.py",
                                  "/tmp/prepare_evil.py --destination_path {data}/x",
                                  "prepare_/../../../tmp/evil.py --destination_path {data}/x"])
def test_a_recipe_runs_only_the_dataset_tools_itself_excluded(tmp_path, line):
    with pytest.raises(UserError, match="must start with a script of scripts/ that recipes run: prepare_\\*.py, "
                                        "score_dataset.py, filter_dataset.py, mix_datasets.py"):
        steps_of(tmp_path, line)


def test_every_step_writes_under_the_data_root(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "escape").symlink_to(tmp_path)
    ok = steps_of(tmp_path, "filter_dataset.py --scores {shared}/s.json --output {data}/kept.json",
                  "mix_datasets.py --inputs {shared}/a --destination_path={data}/m")
    assert [s.script for s in ok] == ["filter_dataset.py", "mix_datasets.py"]
    for line, message in (("prepare_json.py --data_path {shared}/x.json", "give prepare_json.py its --destination_path "
                                                                           "under {data}"),
                          ("mix_datasets.py --destination_path {data}/../../elsewhere", "lies outside the data root"),
                          ("score_dataset.py --output {data}/escape/x.json", "lies outside the data root"),
                          ("mix_datasets.py --destination_path {data}/m --destination_path /tmp/m",
                           "--destination_path /tmp/m lies outside")):
        with pytest.raises(UserError, match=f"build step 1: .*{re.escape(message)}"):
            steps_of(tmp_path, line)


@pytest.mark.parametrize("text, shown", [("{data:>10}", "{data:>10}"), ("{data.__class__}", "{data.__class__}"),
                                         ("{data!r}", "{data!r}"), ("{0}", "{0}"), ("{}", "{}"),
                                         ("{data[0]}", "{data[0]}"), ("{data:{data}}", "{data:{data}}")])
def test_a_placeholder_is_a_plain_name(text, shown):
    with pytest.raises(UserError, match=f"^here: placeholder {re.escape(shown)} is not a plain name; write e.g. "
                                        r"\{data\}"):
        fill(f"x {text} y", {"data": "d"}, "here")
    with pytest.raises(UserError, match="^here: .* in 'x { y'; write a literal brace"):
        fill("x { y", {"data": "d"}, "here")


def test_a_step_gives_only_its_tools_own_flags(tmp_path):
    step = BuildStep("mix_datasets.py", ["--inputs", "a", "--destination_path", "d"])
    accepted = {"--inputs", "--destination_path", "--config", "--print_config", "--help", "-h"}
    step.check_flags(accepted, "here")
    for args in (["--config", "evil.yaml"], ["--config=evil.yaml"], ["-h"], ["--print_config"],
                 ["--dest", "x"]):  # argparse would read an abbreviation as --destination_path
        with pytest.raises(UserError, match=f"^here: {re.escape(args[0].split('=')[0])} is not a flag a recipe may "
                                            r"give mix_datasets.py \(its flags: --destination_path, --inputs\)$"):
            BuildStep("mix_datasets.py", args).check_flags(accepted, "here")


def test_a_steps_secret_is_masked_in_its_command_line_and_the_recorded_settings(tmp_path):
    token = "hf_" + "Secret" * 6
    recipe = load_recipe(write(tmp_path, "question: Q?\nsettings: {token: x}\nbuild:\n"
                                         "  - prepare_lima.py --access_token {token} --destination_path {data}/a\n"
                                         "  - prepare_dolly.py --hf_token=abcdef --destination_path {data}/b\n"))
    values = recipe.values({"data": "d"}, {"token": token})
    steps = recipe.steps(values)
    assert steps[0].args[1] == token  # the tool gets the token itself
    assert [s.command() for s in steps] == ["python scripts/prepare_lima.py --access_token *** --destination_path d/a",
                                            "python scripts/prepare_dolly.py --hf_token=*** --destination_path d/b"]
    assert recorded_settings(values, steps) == {"token": "***", "data": "d"}
