"""The pretraining flags: grouped by component, choices from the registries, parsed without TensorFlow."""

import subprocess
import sys

from conftest import REPO_ROOT

GROUPS = ("data", "augmentation", "model", "framework", "branch", "optimisation", "run", "distribute", "service")


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


def test_bad_branch_options_fail_before_tensorflow_naming_the_flag():
    # The checks the branch constructors make (mixmask_tf.checks), run by validate_flags without TensorFlow.
    code = ("import sys\n"
               "from absl import flags\n"
               "import trainers.pretrain as pretrain\n"
               "from trainers.flag_groups import UserError\n"
               "cases = [(['--branch=mscn', '--mscn_ratio=1.5'], '--mscn_ratio: ratio must lie in [0, 1)'),\n"
               "         (['--branch=mscn', '--mscn_focal_prob=2'], '--mscn_focal_prob: focal_prob must be a probability'),\n"
               "         (['--branch=mscn', '--mscn_extra_views=-1'], '--mscn_extra_views: extra_views must be an integer >= 0'),\n"
               "         (['--branch=mscn', '--highpass_sigma=-1'], 'the high-pass sigma must be a positive number'),\n"
               "         (['--branch=saliency', '--saliency_alpha=0'], '--saliency_alpha: alpha'),\n"
               "         (['--branch=saliency', '--saliency_negative_fg_cap=0'], '--saliency_negative_fg_cap: negative_fg_cap must lie in (0, 1]'),\n"
               "         (['--branch=saliency', '--saliency_query_ratio=0.5,0.1'], '--saliency_query_ratio: query_ratio'),\n"
               "         (['--branch=saliency', '--saliency_model=vgg'], '--saliency_model: localisation must be'),\n"
               "         (['--branch=mixmask', '--grid_size=1'], '--grid_size: grid_size must be an integer >= 2'),\n"
               "         (['--branch=erase', '--mask_ratio=1.0'], '--mask_ratio: ratio must be in the open interval (0, 1)'),\n"
               "         (['--branch=mixmask_unmix', '--unmix_beta=0'], '--unmix_beta: beta must be a finite number > 0'),\n"
               "         (['--branch=unmix', '--unmix_prob=1.5'], '--unmix_prob: global_prob must be a number in [0, 1]')]\n"
               "for argv, message in cases:\n"
               "    flags.FLAGS.unparse_flags()\n"
               "    flags.FLAGS(['pretrain', '--flagfile=configs/smoke.cfg', '--model_dir=/nonexistent/m', *argv])\n"
               "    try:\n"
               "        pretrain.validate_flags()\n"
               "    except UserError as e:\n"
               "        assert message in str(e), (argv, str(e))\n"
               "    else:\n"
               "        raise AssertionError(f'{argv}: no error')\n"
               "for branch in ('none', 'mixmask', 'unmix', 'mixmask_unmix', 'erase', 'mscn', 'saliency'):\n"
               "    flags.FLAGS.unparse_flags()\n"
               "    flags.FLAGS(['pretrain', '--flagfile=configs/smoke.cfg', '--model_dir=/nonexistent/m', f'--branch={branch}'])\n"
               "    pretrain.validate_flags()\n"
               "print(len(cases), 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.stdout.split() == ["12", "False", "False"], out.stderr[-2000:]


def test_augment_on_auto_picks_the_device_for_accelerators_and_the_host_on_a_cpu():
    out = _run("import types\n"
               "from absl import flags\n"
               "import trainers.pretrain\n"
               "from trainers.flag_groups import augmentation\n"
               "flags.FLAGS(['pretrain'])\n"
               "def strategy(*devices):\n"
               "    return types.SimpleNamespace(extended=types.SimpleNamespace(worker_devices=devices))\n"
               "gpus = strategy('/job:localhost/replica:0/task:0/device:GPU:0', '/job:localhost/replica:0/task:0/device:GPU:1')\n"
               "tpu = strategy('/job:worker/replica:0/task:0/device:TPU:0')\n"
               "cpu = strategy('/job:localhost/replica:0/task:0/device:CPU:0')\n"
               "print(flags.FLAGS.augment_on, [augmentation.augment_on(s) for s in (gpus, tpu, cpu)])\n"
               "flags.FLAGS.augment_on = 'host'\n"
               "print(augmentation.augment_on(gpus))\n"
               "flags.FLAGS.augment_on = 'device'\n"
               "print(augmentation.augment_on(cpu))\n"
               "flags.FLAGS.augment_on = 'auto'\n"
               "import tensorflow as tf\n"
               "print(augmentation.augment_on(tf.distribute.get_strategy()))\n")  # the default strategy, this CPU
    assert out.stdout.splitlines() == ["auto ['device', 'device', 'host']", "host", "device", "host"]
