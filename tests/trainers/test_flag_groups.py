"""The pretraining flags: grouped by component, choices from the registries, parsed without TensorFlow."""

import subprocess
import sys

from conftest import REPO_ROOT

GROUPS = ("data", "augmentation", "model", "framework", "branch", "optimisation", "run", "distribute")


def _run(code):
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)


def test_parsing_the_flags_imports_no_tensorflow_and_choices_are_the_registries():
    out = _run("import sys\n"
               "from absl import flags\n"
               "import trainers.pretrain\n"
               "from mixmask_tf import registry\n"
               "flags.FLAGS(['pretrain', '--framework=byol', '--branch=erase', '--augment=simclr', '--backbone=resnet50'])\n"
               "F = flags.FLAGS\n"
               "assert sorted(F['framework'].parser.enum_values) == sorted(registry.FRAMEWORKS)\n"
               "assert sorted(F['branch'].parser.enum_values) == sorted(registry.BRANCHES)\n"
               "assert sorted(F['augment'].parser.enum_values) == sorted(registry.AUGMENT_PRESETS)\n"
               "assert sorted(F['backbone'].parser.enum_values) == sorted(registry.BACKBONES)\n"
               "print(F.framework, F.branch, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert out.stdout.split() == ["byol", "erase", "False", "False"]


def test_helpfull_lists_each_group():
    out = subprocess.run([sys.executable, "-m", "trainers.pretrain", "--helpfull"], cwd=REPO_ROOT,
                         capture_output=True, text=True)
    headings = [line.strip() for line in out.stdout.splitlines() if line.strip().startswith("trainers.")]
    assert headings == [f"trainers.flag_groups.{group}:" for group in sorted(GROUPS)]
    for flag in ("--dataset", "--augment", "--backbone", "--framework", "--branch", "--optimizer", "--model_dir"):
        assert flag in out.stdout


def test_every_branch_option_has_a_flag():
    _run("from absl import flags\n"
         "import trainers.pretrain\n"
         "from trainers.flag_groups import branch\n"
         "from mixmask_tf import branches, registry\n"
         "flags.FLAGS(['pretrain'])\n"
         "for name in registry.BRANCHES:\n"
         "    flags.FLAGS.branch = name\n"
         "    options = set(branches.branch_options(name)) - set(branch.DATA_OPTIONS)\n"
         "    assert options <= set(branch.option_values()), name\n"
         "    built = branch.build_branch()\n"
         "    assert built.name == name\n"
         "flags.FLAGS.branch = 'mixmask_unmix'\n"
         "assert branch.build_branch().get_config()['permutation'] == 'random'\n"
         "flags.FLAGS.same_permutation = True\n"
         "assert branch.build_branch().get_config()['permutation'] == 'reverse'\n")


def test_cpu_tuning_only_without_an_accelerator(tmp_path, monkeypatch):
    import trainers

    monkeypatch.delenv("TPU_NAME", raising=False)
    monkeypatch.delenv("TPU_ACCELERATOR_TYPE", raising=False)
    assert not trainers.accelerator_present(str(tmp_path))
    (tmp_path / "nvidia0").write_text("")
    assert trainers.accelerator_present(str(tmp_path))
    (tmp_path / "nvidia0").unlink()
    (tmp_path / "accel0").write_text("")
    assert trainers.accelerator_present(str(tmp_path))
    (tmp_path / "accel0").unlink()
    monkeypatch.setenv("TPU_NAME", "my-tpu")
    assert trainers.accelerator_present(str(tmp_path))


def test_distribute_flag_errors():
    _run("from absl import flags\n"
         "import trainers.pretrain\n"
         "from trainers.flag_groups import UserError, distribute\n"
         "for argv, message in [(['--strategy=one_device', '--cpu_devices=2'], '--cpu_devices applies to'),\n"
         "                      (['--tpu=my-tpu'], '--tpu needs --strategy=tpu'),\n"
         "                      ]:\n"
         "    flags.FLAGS.unparse_flags()\n"
         "    flags.FLAGS(['pretrain', *argv])\n"
         "    try:\n"
         "        distribute.validate()\n"
         "    except UserError as e:\n"
         "        assert message in str(e), (argv, e)\n"
         "    else:\n"
         "        raise AssertionError(argv)\n")
