"""The long version of test_rerun.py::test_random_interruptions_lose_nothing (not collected by pytest).

    .venv/bin/python tests/trainers/long_interruptions.py TRIALS INTERRUPTIONS [ROOT]

TRIALS independent runs of configs/smoke.cfg at --epochs=4 (a config the suite does not interrupt;
TensorBoard and plots on), each stopped INTERRUPTIONS times at random moments (SIGKILL or SIGTERM)
and rerun until it exits 0, each compared with one uninterrupted run: the same weights, per-epoch
metrics, results and one export. Prints every attempt and the counts of signals and phases.
"""
import collections, importlib.util, json, os, shutil, subprocess, sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]
os.chdir(REPO)
import numpy as np  # noqa: E402

spec = importlib.util.spec_from_file_location("tr", os.path.join(REPO, "tests", "trainers", "test_rerun.py"))
tr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tr)
T, K, EP = int(sys.argv[1]), int(sys.argv[2]), 4
root = sys.argv[3] if len(sys.argv) > 3 else "/tmp/long_interruptions"
shutil.rmtree(root, ignore_errors=True)
os.makedirs(root + "/ref")
base = ["--flagfile=configs/smoke.cfg"]
ref = subprocess.run([sys.executable, "-m", "trainers.pretrain", *base, f"--epochs={EP}", f"--model_dir={root}/ref/run"],
                     capture_output=True, text=True)
assert ref.returncode == 0, ref.stderr[-2000:]
want_rows = tr._rows(f"{root}/ref/run"); want = json.load(open(f"{root}/ref/run/results.json"))
phases, signals, codes = collections.Counter(), collections.Counter(), collections.Counter()
for trial in range(T):
    d = f"{root}/trial{trial}"; os.makedirs(d)
    attempts = tr.interrupt_until_done([*base, f"--model_dir={d}/run"], EP, interruptions=K, seed=100 + trial, max_delay=1.5)
    for a in attempts: print(trial, a, flush=True)
    phases.update(a[4] for a in attempts if a[0]); signals.update(a[0] for a in attempts if a[0]); codes.update(a[3] for a in attempts)
    assert attempts[-1][3] == 0
    tr._assert_same_state(f"{root}/ref/run", f"{d}/run")
    rows = tr._rows(f"{d}/run")
    assert [r["epoch"] for r in rows] == list(range(1, EP + 1)), rows
    for g, w in zip(rows, want_rows):
        keys = ("knn_top1", "learning_rate") if "resumed_at_step" in g else ("loss", "loss_clean", "loss_mix", "knn_top1", "learning_rate")
        for k in keys:
            np.testing.assert_allclose(g[k], w[k], rtol=1e-5, err_msg=f"{g['epoch']} {k}")
    assert os.listdir(f"{d}/run/export") == ["1"]
    r = json.load(open(f"{d}/run/results.json"))
    assert r["knn_top1"] == want["knn_top1"] and r["steps_completed"] == want["steps_completed"], (r, want)
    print(f"trial {trial}: same weights, metrics, results and one export as the uninterrupted run", flush=True)
print("interruptions:", sum(signals.values()), dict(signals))
print("phases of the interrupted attempts:", dict(phases))
print("exit statuses of all attempts:", dict(codes))
print(f"LONG INTERRUPTION RUN: OK ({T} trials x {K} interruption attempts)")
