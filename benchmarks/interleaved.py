r"""mixmask-tf against the PyTorch reference, timed interleaved in one window, and the matmul ceiling.

    .venv/bin/python -m benchmarks.interleaved --backbones small_convnet,resnet18_cifar --pairs 3 \
        --steps small_convnet=10,resnet18_cifar=4 --warmup 3 --out /tmp/interleaved.json

Steps timed in separate windows on a shared machine are not comparable (its load changes by more
than the difference). This runs, per backbone, A B A B ... (`--pairs` pairs): A a fresh process of
`benchmarks.step_throughput` (mixmask-tf, TF venv), B a fresh process of `benchmarks.torch_reference`
(`torch.compile`, the torch venv `--torch_python`), each timing MoCo v2 plain and + MixMask with the
same settings (`SETTINGS`: batch 128, queue 4096, grid 4, small ConvNet width 32 on 28x28x1, CIFAR
ResNet-18 on 32x32x3, float32, no XLA, torch channels_last off and torch's own padding, the
scripts' `--steps` / `--warmup` protocol; the warm-up is at least `--min_warmup` 3 on both sides,
as `torch.compile` recompiles the step on its second call). It prints every pair (TF ms, torch
ms, torch / TF) and, per backbone and branch, the medians, checks from what each script wrote
that both ran those settings, and writes `--out` (JSON: every measurement, the exact commands,
the environment: CPU, nproc, versions, thread settings, load average).

Matmul ceiling (`--ceiling`, default before and after the pairs): `benchmarks.matmul_ceiling` in its
own process, tf.matmul (TF venv) then torch.mm (torch venv), n x n float32. Each step's share of it:
FLOPs of one step (`matmul_ceiling.step_flops`: counted from the Keras model, forward 1 + backward 2
for the query passes, forward 1 for the key pass: 4 forward-equivalents per image plain, 7 with
MixMask) / median step time / the best TF ceiling measured.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import matmul_ceiling

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TORCH_PYTHON = "/work/torchvenv/bin/python"
BACKBONES = ("small_convnet", "resnet18_cifar")
BRANCHES = ("none", "mixmask")
# Untimed steps at least: the compiled torch step compiles on its first call and recompiles on its
# second (TORCH_LOGS=recompiles: SGD's momentum buffers, created by the first call, fail a guard of
# the compiled `optimizer.step`; with MixMask also the cached reverse permutation), so with
# --warmup 1 one of 2 "timed" steps was a compilation (the small ConvNet's MixMask step read 52 s
# instead of ~0.3 s). From the third call on it runs compiled code. 3 is both scripts' default.
MIN_WARMUP = 3

# The step both scripts time; every value is passed explicitly to both (their defaults could drift).
SETTINGS = {
    "framework": "mocov2",
    "branches": list(BRANCHES),
    "batch_size": 128,
    "queue_size": 4096,
    "grid_size": 4,
    "width": 32,
    "small_image_shape": [28, 28, 1],
    "resnet_image_shape": [32, 32, 3],
    "precision": "float32",
    "jit": False,
    "torch_mode": "compile",
    "channels_last": False,
    "tf_padding": False,
}


def parse_per_backbone(text, backbones, name="value"):
    """'10' (every backbone) or 'small_convnet=10,resnet18_cifar=4' -> {backbone: int}.

    A bare number may come first as the default of the backbones not named: '10,resnet18_cifar=4'.
    Raises ValueError on an unknown backbone or a backbone left without a value.
    """
    default, values = None, {}
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        if "=" in part:
            key, value = (s.strip() for s in part.split("=", 1))
            if key not in backbones:
                raise ValueError(f"--{name}: {key!r} is not one of the backbones {list(backbones)}")
            values[key] = int(value)
        else:
            default = int(part)
    missing = [b for b in backbones if b not in values and default is None]
    if missing:
        raise ValueError(f"--{name}: no value for {missing} in {text!r}")
    return {b: values.get(b, default) for b in backbones}


def image_shape(settings, backbone):
    return list(settings["small_image_shape"] if backbone == "small_convnet" else settings["resnet_image_shape"])


def _csv(values):
    return ",".join(str(v) for v in values)


def tf_command(python, settings, backbone, steps, warmup, json_path):
    """argv of one mixmask-tf measurement (`benchmarks.step_throughput`)."""
    return [python, "-m", "benchmarks.step_throughput", f"--backbones={backbone}",
            f"--frameworks={settings['framework']}", f"--branches={_csv(settings['branches'])}",
            f"--jit={str(settings['jit']).lower()}", f"--precision={settings['precision']}",
            f"--width={settings['width']}", f"--small_image_shape={_csv(settings['small_image_shape'])}",
            f"--resnet_image_shape={_csv(settings['resnet_image_shape'])}",
            f"--batch_size={settings['batch_size']}", f"--queue_size={settings['queue_size']}",
            f"--grid_size={settings['grid_size']}", f"--steps={steps}", f"--warmup={warmup}", f"--json={json_path}"]


def torch_command(python, settings, backbone, steps, warmup, threads, json_path):
    """argv of one PyTorch measurement (`benchmarks.torch_reference`)."""
    return [python, "-m", "benchmarks.torch_reference", "--backbones", backbone,
            "--branches", _csv(settings["branches"]), "--modes", settings["torch_mode"],
            "--channels_last", str(settings["channels_last"]).lower(),
            "--tf_padding", str(settings["tf_padding"]).lower(), "--threads", str(threads),
            "--width", str(settings["width"]), "--small_image_shape", _csv(settings["small_image_shape"]),
            "--resnet_image_shape", _csv(settings["resnet_image_shape"]),
            "--batch_size", str(settings["batch_size"]), "--queue_size", str(settings["queue_size"]),
            "--grid_size", str(settings["grid_size"]), "--steps", str(steps), "--warmup", str(warmup),
            "--json", json_path]


def ceiling_command(python, framework, n, reps, json_path):
    return [python, "-m", "benchmarks.matmul_ceiling", "--framework", framework, "--n", str(n),
            "--reps", str(reps), "--json_out", json_path]


def tf_step_ms(doc, backbone, settings):
    """{branch: ms per step} from what `step_throughput --json` wrote; ValueError if a row does not
    have the settings (backbone, framework, image shape, batch, float32, no XLA, fused BatchNorm)."""
    if doc.get("keras_batchnorm"):
        raise ValueError("the TF run used --keras_batchnorm")
    expect = {"backbone": backbone, "framework": settings["framework"], "jit": settings["jit"],
              "precision": settings["precision"], "batch_size": settings["batch_size"],
              "image_shape": image_shape(settings, backbone)}
    return _branch_ms(doc["rows"], expect, settings, "TF")


def _branch_ms(rows, expect, settings, side):
    """{branch: ms per step} of the rows; ValueError if a row differs from ``expect`` or a branch is missing."""
    out = {}
    for row in rows:
        wrong = {k: (row.get(k), v) for k, v in expect.items() if row.get(k) != v}
        if wrong:
            raise ValueError(f"{side} row {row.get('branch')}: (got, expected) {wrong}")
        out[row["branch"]] = float(row["ms_per_step"])
    if sorted(out) != sorted(settings["branches"]):
        raise ValueError(f"{side} rows have branches {sorted(out)}, expected {settings['branches']}")
    return out


def torch_step_ms(doc, backbone, settings):
    """{branch: ms per step} from what `torch_reference --json` wrote; ValueError if its arguments or a
    row differ from the settings (queue, batch, width, grid, shapes, compile, channels_last, padding)."""
    args = doc["args"]
    expect_args = {"queue_size": settings["queue_size"], "batch_size": settings["batch_size"],
                   "width": settings["width"], "grid_size": settings["grid_size"],
                   "small_image_shape": _csv(settings["small_image_shape"]),
                   "resnet_image_shape": _csv(settings["resnet_image_shape"]), "amp": "none", "device": "cpu"}
    wrong = {k: (args.get(k), v) for k, v in expect_args.items() if args.get(k) != v}
    if wrong:
        raise ValueError(f"torch arguments: (got, expected) {wrong}")
    expect = {"backbone": backbone, "mode": settings["torch_mode"], "channels_last": settings["channels_last"],
              "tf_padding": settings["tf_padding"], "batch_size": settings["batch_size"], "amp": "none",
              "compiled_autograd": False, "image_shape": image_shape(settings, backbone)}
    return _branch_ms(doc["rows"], expect, settings, "torch")


def summarize(measurements, backbones, branches):
    """Pairs and medians from the measurement records ({"backbone", "pair", "side", "ms": {branch: ms}}).

    Returns {backbone: {branch: {"pairs": [{"pair", "tf_ms", "torch_ms", "ratio"}], "median_tf_ms",
    "median_torch_ms", "ratio_of_medians", "median_ratio", "min_ratio", "max_ratio"}}}; ratio = torch ms
    / TF ms (> 1: mixmask-tf is faster). A pair with only one side measured is left out.
    """
    result = {}
    for backbone in backbones:
        sides = {}
        for m in measurements:
            if m["backbone"] == backbone and m.get("ms"):
                sides.setdefault(m["pair"], {})[m["side"]] = m["ms"]
        result[backbone] = {}
        for branch in branches:
            pairs = [{"pair": p, "tf_ms": s["tf"][branch], "torch_ms": s["torch"][branch],
                      "ratio": s["torch"][branch] / s["tf"][branch]}
                     for p, s in sorted(sides.items()) if "tf" in s and "torch" in s]
            if not pairs:
                continue
            tf_med = statistics.median(p["tf_ms"] for p in pairs)
            torch_med = statistics.median(p["torch_ms"] for p in pairs)
            ratios = [p["ratio"] for p in pairs]
            result[backbone][branch] = {
                "pairs": pairs, "median_tf_ms": tf_med, "median_torch_ms": torch_med,
                "ratio_of_medians": torch_med / tf_med, "median_ratio": statistics.median(ratios),
                "min_ratio": min(ratios), "max_ratio": max(ratios)}
    return result


def format_pairs(summary):
    """The every-pair and median table (text)."""
    lines = [f"{'backbone':15s} {'branch':8s} {'pair':>5s} {'TF ms':>9s} {'torch ms':>9s} {'torch/TF':>9s}"]
    for backbone, by_branch in summary.items():
        for branch, s in by_branch.items():
            for p in s["pairs"]:
                lines.append(f"{backbone:15s} {branch:8s} {p['pair']:5d} {p['tf_ms']:9.1f} {p['torch_ms']:9.1f} "
                             f"{p['ratio']:8.2f}x")
            lines.append(f"{backbone:15s} {branch:8s} {'med':>5s} {s['median_tf_ms']:9.1f} "
                         f"{s['median_torch_ms']:9.1f} {s['ratio_of_medians']:8.2f}x   (median of the pair ratios "
                         f"{s['median_ratio']:.2f}x, range {s['min_ratio']:.2f}-{s['max_ratio']:.2f}x, "
                         f"{len(s['pairs'])} pairs)")
    return "\n".join(lines)


def best_ceiling(ceilings, framework):
    """Highest median GFLOP/s among the ceiling measurements of `framework` (None if none)."""
    values = [c["gflops"] for c in ceilings if c.get("framework") == framework and c.get("gflops")]
    return max(values) if values else None


def ceiling_fractions(summary, encoder_flops, batch_size, tf_ceiling, torch_ceiling=None):
    """Per backbone and branch: FLOPs of one step, the GFLOP/s each median step achieves, and that as a
    fraction of the TF ceiling (and of torch's own, when measured)."""
    rows = []
    for backbone, by_branch in summary.items():
        for branch, s in by_branch.items():
            flops = matmul_ceiling.step_flops(encoder_flops[backbone], batch_size, branch)
            row = {"backbone": backbone, "branch": branch, "forward_equivalents":
                   matmul_ceiling.STEP_FORWARD_EQUIVALENTS[branch], "step_gflop": flops / 1e9}
            for side in ("tf", "torch"):
                gflops = flops / (s[f"median_{side}_ms"] / 1e3) / 1e9
                row[f"{side}_gflops"] = gflops
                row[f"{side}_fraction_of_tf_ceiling"] = gflops / tf_ceiling if tf_ceiling else None
            row["torch_fraction_of_torch_ceiling"] = row["torch_gflops"] / torch_ceiling if torch_ceiling else None
            rows.append(row)
    return rows


def format_fractions(rows, tf_ceiling, torch_ceiling):
    def pct(v):
        return f"{100 * v:5.1f}%" if v is not None else "    -"

    def gflops(v):
        return f"{v:.1f} GFLOP/s" if v else "not measured"

    lines = [f"matmul ceiling: tf.matmul {gflops(tf_ceiling)}, torch.mm {gflops(torch_ceiling)}",
             (f"{'backbone':15s} {'branch':8s} {'GFLOP/step':>10s} {'TF GFLOP/s':>10s} {'of ceil':>7s} "
              f"{'torch GFLOP/s':>13s} {'of TF ceil':>10s} {'of torch ceil':>13s}")]
    for r in rows:
        lines.append(f"{r['backbone']:15s} {r['branch']:8s} {r['step_gflop']:10.1f} {r['tf_gflops']:10.1f} "
                     f"{pct(r['tf_fraction_of_tf_ceiling']):>7s} {r['torch_gflops']:13.1f} "
                     f"{pct(r['torch_fraction_of_tf_ceiling']):>10s} {pct(r['torch_fraction_of_torch_ceiling']):>13s}")
    return "\n".join(lines)


def environment(env):
    """What the numbers depend on: CPU, cores, load, the thread variables the children inherit."""
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, ValueError, subprocess.CalledProcessError):
        nproc = None
    keys = ("TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_ENABLE_ONEDNN_OPTS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCHINDUCTOR_CACHE_DIR", "TF_CPP_MIN_LOG_LEVEL")
    return {"cpu": matmul_ceiling.cpu_model(), "nproc": nproc, "os_cpu_count": os.cpu_count(),
            "affinity_cores": matmul_ceiling.cores(), "platform": platform.platform(),
            "python": platform.python_version(), "hostname": platform.node(),
            "thread_env": {k: env.get(k) for k in keys},
            "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def _versions_and_threads(measurements):
    """TF / Keras / torch versions and each side's thread settings, from what the children wrote."""
    out = {}
    for m in measurements:
        doc = m.get("result") or {}
        if m["side"] == "tf" and "tensorflow" in doc:
            out.update({"tensorflow": doc["tensorflow"], "keras": doc.get("keras"),
                        "tf_onednn": doc.get("onednn"), "tf_inter_op_threads": doc.get("inter_op_threads"),
                        "tf_intra_op_threads": doc.get("intra_op_threads"), "tf_device": doc.get("device")})
        if m["side"] == "torch" and "machine" in doc:
            machine = doc["machine"]
            out.update({"torch": machine.get("torch"), "torch_threads": machine.get("threads"),
                        "torch_interop_threads": machine.get("interop_threads"), "torch_mkldnn": machine.get("mkldnn")})
    return out


def run_child(argv, env, timeout):
    """Runs one child from the repository root: (returncode, stdout, stderr, wall seconds)."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as e:
        code, stdout, stderr = "timeout", e.stdout or "", e.stderr or ""
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
        stderr = stderr.decode() if isinstance(stderr, bytes) else stderr
    return code, stdout, stderr, time.perf_counter() - start


def _record(kind, argv, code, stdout, stderr, wall, **extra):
    return {"kind": kind, "command": argv, "command_line": shlex.join(argv), "returncode": code,
            "wall_seconds": wall, "stdout_tail": stdout[-4000:], "stderr_tail": stderr[-4000:],
            "finished": datetime.datetime.now().isoformat(timespec="seconds"),
            "loadavg_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, **extra}


class ChildFailed(RuntimeError):
    pass


def _load(path, record):
    if record["returncode"] != 0 or not os.path.exists(path):
        raise ChildFailed(f"{record['command_line']}\nexited {record['returncode']}:\n{record['stderr_tail'][-2000:]}")
    with open(path) as f:
        return json.load(f)


def measure_ceilings(args, env, tmp, when, out):
    """tf.matmul, then torch.mm, each in its own process; appends each record to `out`."""
    jobs = [("tf", args.tf_python)] + ([("torch", args.torch_python)] if args.torch_python else [])
    for framework, python in jobs:
        path = os.path.join(tmp, f"ceiling_{when}_{framework}.json")
        argv = ceiling_command(python, framework, args.matmul_n, args.matmul_reps, path)
        print(f"[ceiling {when}] {shlex.join(argv)}", flush=True)
        code, stdout, stderr, wall = run_child(argv, env, args.timeout)
        record = _record("ceiling", argv, code, stdout, stderr, wall, when=when, framework=framework)
        out.append(record)
        record.update(_load(path, record))
        print(f"  {framework} matmul {args.matmul_n}^2: {record['gflops']:.1f} GFLOP/s "
              f"(median of {args.matmul_reps}; {wall:.0f} s)", flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog="See the module docstring.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=3, help="A B pairs per backbone (each a fresh process)")
    p.add_argument("--backbones", default=",".join(BACKBONES), help="small_convnet,resnet18_cifar")
    p.add_argument("--steps", default="10", help="timed steps: '10' or 'small_convnet=10,resnet18_cifar=4'")
    p.add_argument("--warmup", default="3", help="untimed steps: '3' or 'small_convnet=3,resnet18_cifar=2'")
    p.add_argument("--min_warmup", type=int, default=MIN_WARMUP,
                   help="raise --warmup to at least this, on both sides (torch.compile recompiles on its 2nd call)")
    p.add_argument("--out", default="/tmp/interleaved.json", help="JSON with every measurement and command")
    p.add_argument("--torch_python", default=DEFAULT_TORCH_PYTHON, help="python of the torch venv")
    p.add_argument("--tf_python", default=sys.executable, help="python of the TF venv (default: this one)")
    p.add_argument("--torch_threads", type=int, default=None, help="torch_reference --threads (default: every core)")
    p.add_argument("--ceiling", default="both", choices=["both", "before", "after", "none"],
                   help="when to measure the matmul ceiling")
    p.add_argument("--matmul_n", type=int, default=4096)
    p.add_argument("--matmul_reps", type=int, default=5)
    p.add_argument("--timeout", type=float, default=3600, help="seconds per child process")
    args = p.parse_args(argv)
    args.backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    unknown = [b for b in args.backbones if b not in BACKBONES]
    if unknown or not args.backbones:
        p.error(f"--backbones: {unknown or 'none given'}; choose from {list(BACKBONES)}")
    if args.pairs < 1:
        p.error("--pairs must be >= 1")
    try:
        args.steps_by_backbone = parse_per_backbone(args.steps, args.backbones, "steps")
        args.warmup_by_backbone = {b: max(w, args.min_warmup) for b, w in
                                   parse_per_backbone(args.warmup, args.backbones, "warmup").items()}
    except ValueError as e:
        p.error(str(e))
    for flag in ("torch_python", "tf_python"):
        path = getattr(args, flag)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            p.error(f"--{flag} {path!r} does not exist or is not executable"
                    + (" (create the torch venv: see benchmarks/torch_reference.py's docstring, "
                       "benchmarks/requirements-torch.txt)" if flag == "torch_python" else ""))
        setattr(args, flag, os.path.abspath(path))
    args.torch_threads = args.torch_threads or matmul_ceiling.cores()
    return args


def main(argv=None):
    args = parse_args(argv)
    env = dict(os.environ)  # what the children inherit: this process's environment before any import
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # this process only builds models to count FLOPs
    settings = dict(SETTINGS)
    report = {"created": datetime.datetime.now().isoformat(timespec="seconds"), "settings": settings,
              "args": {k: v for k, v in vars(args).items()}, "environment": environment(env),
              "order": "per backbone: (TF, torch) x pairs", "measurements": [], "ceilings": []}
    started = time.perf_counter()

    def save():
        report["environment"].update(_versions_and_threads(report["measurements"]))
        report["total_wall_seconds"] = time.perf_counter() - started
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)

    print(f"environment: {report['environment']}", flush=True)
    print(f"steps {args.steps_by_backbone}, warm-up {args.warmup_by_backbone} (at least --min_warmup "
          f"{args.min_warmup}), {args.pairs} pairs, torch threads {args.torch_threads}", flush=True)
    # FLOPs first (builds the Keras models here; idle while the children run).
    report["flops"] = {}
    for backbone in args.backbones:
        backbone_flops, encoder_flops = matmul_ceiling.encoder_forward_flops(
            backbone, image_shape(settings, backbone), settings["width"], settings["framework"], settings["queue_size"])
        report["flops"][backbone] = {"backbone_forward_flops": backbone_flops, "encoder_forward_flops": encoder_flops,
                                     "image_shape": image_shape(settings, backbone)}
        print(f"FLOPs {backbone} {image_shape(settings, backbone)}: backbone forward {backbone_flops / 1e9:.4f} GFLOP "
              f"({backbone_flops / 2e9:.4f} G multiply-adds) per image; with the MoCo v2 head "
              f"{encoder_flops / 1e9:.4f} GFLOP", flush=True)
    with tempfile.TemporaryDirectory(prefix="interleaved_") as tmp:
        try:
            if args.ceiling in ("both", "before"):
                measure_ceilings(args, env, tmp, "before", report["ceilings"])
                save()
            for backbone in args.backbones:
                steps, warmup = args.steps_by_backbone[backbone], args.warmup_by_backbone[backbone]
                for pair in range(1, args.pairs + 1):
                    for side in ("tf", "torch"):
                        path = os.path.join(tmp, f"{backbone}_{pair}_{side}.json")
                        if side == "tf":
                            argv = tf_command(args.tf_python, settings, backbone, steps, warmup, path)
                        else:
                            argv = torch_command(args.torch_python, settings, backbone, steps, warmup,
                                                 args.torch_threads, path)
                        print(f"[{backbone} pair {pair}/{args.pairs} {side}] {shlex.join(argv)}", flush=True)
                        code, stdout, stderr, wall = run_child(argv, env, args.timeout)
                        record = _record("step", argv, code, stdout, stderr, wall, backbone=backbone, pair=pair,
                                         side=side, steps=steps, warmup=warmup)
                        report["measurements"].append(record)
                        record["result"] = _load(path, record)
                        parse = tf_step_ms if side == "tf" else torch_step_ms
                        record["ms"] = parse(record["result"], backbone, settings)
                        save()
                        print("  " + ", ".join(f"{b} {ms:.1f} ms" for b, ms in record["ms"].items())
                              + f"  ({wall:.0f} s)", flush=True)
            if args.ceiling in ("both", "after"):
                measure_ceilings(args, env, tmp, "after", report["ceilings"])
        except (ChildFailed, ValueError) as e:
            save()
            print(f"\nFAILED: {e}\npartial results in {args.out}", file=sys.stderr)
            return 1
    summary = summarize(report["measurements"], args.backbones, settings["branches"])
    report["summary"] = summary
    print("\nmixmask-tf (TF) vs torch.compile, ms per step (torch/TF > 1: mixmask-tf faster)")
    print(format_pairs(summary))
    tf_ceiling, torch_ceiling = best_ceiling(report["ceilings"], "tf"), best_ceiling(report["ceilings"], "torch")
    encoder_flops = {b: f["encoder_forward_flops"] for b, f in report["flops"].items()}
    report["ceiling_fractions"] = ceiling_fractions(summary, encoder_flops, settings["batch_size"], tf_ceiling,
                                                    torch_ceiling)
    report["tf_ceiling_gflops"], report["torch_ceiling_gflops"] = tf_ceiling, torch_ceiling
    print(f"\nshare of the matmul ceiling (step FLOPs = batch {settings['batch_size']} x encoder forward FLOPs x "
          f"{matmul_ceiling.STEP_FORWARD_EQUIVALENTS} forward-equivalents; best of the ceiling runs)")
    print(format_fractions(report["ceiling_fractions"], tf_ceiling, torch_ceiling))
    report["environment"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    save()
    print(f"\nversions / threads: {_versions_and_threads(report['measurements'])}")
    print(f"total {report['total_wall_seconds']:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
