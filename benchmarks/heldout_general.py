"""Family-trained loss-only controllers on held-out trainees, in a plain optax loop.

Issue 26's protocol, the part that needs no tuning: each controller saved by
``lrjax train --family`` (``controller-sgd/``, ``controller-adam/``) is deployed as a user deploys
it, ``optax.chain(base_direction, scale_by_controller(controller, total_steps=N))`` inside
:func:`lrjax.training.train` (``value=loss`` is all it reads), on trainees that no family member
equals and at a budget longer than any in training, beside the untuned baselines at their
documented defaults: the controllers' own starting LRs held constant (SGD 0.1, Adam 1e-3,
:data:`lrjax.training.DEFAULT_LEARNING_RATES`), Prodigy, DoG, D-Adaptation AdamW, Mechanic
(around Adam 1e-3), schedule-free SGD (1.0) and AdamW (0.0025). Every method trains the same
``--seeds`` trainees (the same init and minibatch keys), so differences are paired.
A controller with a base schedule (``ControllerConfig.base_schedule``, e.g. cosine) also runs
with its actor's parameters zeroed (every action 0: its starting LR times the schedule alone),
so the table shows what the learned corrections add to the schedule.

With ``--family``, the two other kinds of baseline (:mod:`lrjax.evaluation.transfer`):
*transferred*, constant SGD, SGD step decay, SGD cosine with warm-up and Adam, each tuned on the
family's training trainees (every distinct trainee of the family, ``--tune-steps`` steps,
``--tune-seeds`` seeds, by mean relative regret of the validation loss) and applied unchanged;
*oracles*, constant SGD and cosine tuned on the target itself (tuning seeds disjoint from the
held-out ones, the held-out budget). The transferred choices do not depend on the target and
are cached in ``--out``/transferred.json.

With ``--out``, also ``lr_<target>.png``: the LR each seed applied and the mean training loss
of every method that keeps an LR. Prints one Markdown table per target: final test loss (mean
+- 95% CI) and accuracy, runs that diverged (non-finite loss) or ended at chance (test accuracy
< 0.2), the paired difference of each method minus the reference with its 95% CI, and the LR
range.

  python benchmarks/heldout_general.py --run runs/mixed_mlp_ppo --steps 3000 --seeds 10
  python benchmarks/heldout_general.py --run runs/mixed_mlp_long_ppo --run runs/mixed_mlp_ppo \
      --family mixed_mlp_long --targets fashion_mlp,mnist_mlp,fashion_mlp_4x64 --out DIR
  python benchmarks/heldout_general.py --pretrained mlp_family_sgd=sgd \
      --pretrained mlp_family_adam=adam --reference pretrained:mlp_family_sgd --targets fashion_cnn
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lrjax.plots
import lrjax.pretrained
from lrjax import tasks, training
from lrjax.baselines import get_optimizer
from lrjax.controller import (
    current_lr,
    load_controller,
    scale_by_controller,
    scale_by_layer_controller,
)
from lrjax.evaluation.stats import mean_interval, paired_difference
from lrjax.evaluation.transfer import tune_across

TARGETS = {
    # name: (registered task, model overrides): none of them is a member of mixed_mlp
    "fashion_mlp": ("fashion_mlp", {}),  # width 64 (the family has 32, 128)
    "mnist_mlp": ("mnist_mlp", {}),  # width 64, batch 50 (the family's batch is 128)
    "fashion_mlp_4x64": ("fashion_mlp", {"hidden": (64, 64, 64, 64)}),  # deeper than any
    "fashion_cnn": ("fashion_cnn", {}),  # a CNN (the family has only MLPs)
    "mnist_cnn": ("mnist_cnn", {}),  # paper B's CNN (32, 64 conv; 1024), batch 50
}
LR_FREE = ("prodigy", "dog", "dadapt_adamw", "mechanic")
TRANSFER_GRIDS = {  # baseline: LRs searched (step decay also over its interval and factor)
    "sgd": (0.01, 0.03, 0.1, 0.3, 1.0),
    "step_decay": None,  # the registry's 4 LRs x 2 intervals x 2 factors
    "cosine": (0.03, 0.1, 0.3, 1.0),
    "adam": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    "momentum": (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3),  # SGD + momentum 0.9 (oracles only)
    "momentum_cosine": (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3),
}
ORACLES = ("sgd", "cosine")  # the default --oracles
CHANCE_ACCURACY = 0.2


def _controller_method(controller, optimizer: str, steps: int):
    base = {
        "sgd": optax.identity(),
        "momentum": optax.trace(decay=0.9),
        "adam": optax.scale_by_adam(),
    }[optimizer]
    if controller.config.momentum_control:  # the transform is the momentum
        base = optax.identity()
    if controller.config.layered:  # per layer: current_lr logs the geometric mean of its LRs
        tx = optax.chain(base, scale_by_layer_controller(controller, total_steps=steps))
        return (lambda hp: tx), None, current_lr, None
    tx = optax.chain(base, scale_by_controller(controller, total_steps=steps))
    return (lambda hp: tx), None, current_lr, None


def _registry_method(name: str, steps: int, lr: float | None = None, config=None):
    spec = get_optimizer(name)
    config = config or spec.grid(None if lr is None else [lr])[0]
    hp = {k: np.float32(v) for k, v in config.items()}
    return spec.make_tx(steps), hp, spec.learning_rate, spec.eval_params


def _label(config: dict) -> str:
    return ", ".join(f"{'lr' if k == 'learning_rate' else k} {v:.3g}" for k, v in config.items())


def transferred(family_name: str, steps: int, seeds: int, seed: int, cache: Path | None) -> dict:
    """``{baseline: config}`` tuned on every distinct trainee of the family (cached)."""
    if cache is not None and cache.exists():
        return json.loads(cache.read_text())
    family = tasks.get_family(family_name)
    data = family.load_data()
    trainees = [(t, data[t.dataset]) for t in family.variants()]
    keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 3), seeds)
    out = {}
    for name, lrs in TRANSFER_GRIDS.items():
        t0 = time.perf_counter()
        tuned = tune_across(get_optimizer(name), trainees, keys, steps, lrs=lrs)
        out[name] = tuned.config
        print(
            f"  transferred {name}: {_label(tuned.config)} (regret {tuned.scores.min():.3f}, "
            f"{time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(out, indent=1))
    return out


def oracles(
    task, data, steps: int, seeds: int, seed: int, cache: Path | None = None, names=ORACLES
) -> dict:
    """``{name: method}`` of the registry optimizers ``names`` (default constant SGD and cosine)
    tuned on the target (tuning seeds) over their ``TRANSFER_GRIDS``.

    The chosen configs are cached in ``cache`` (a JSON file), so a resumed run does not tune
    again (on a CNN the tuning costs as much as two evaluated rows).
    """
    chosen = json.loads(cache.read_text()) if cache is not None and cache.exists() else {}
    keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 2), seeds)
    for name in names:
        if name not in chosen:
            tuned = tune_across(
                get_optimizer(name), [(task, data)], keys, steps, lrs=TRANSFER_GRIDS[name]
            )
            chosen[name] = {k: float(v) for k, v in tuned.config.items()}
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(chosen, indent=1))
        print(f"  oracle {name}: {_label(chosen[name])}", flush=True)
    return {
        f"oracle_{name} ({_label(chosen[name])})": _registry_method(
            name, steps, config=chosen[name]
        )
        for name in names
    }


def methods(run_dirs: list[Path], steps: int, start_factors=(), pretrained=()) -> dict:
    out = {}
    for name, optimizer in pretrained:  # shipped controllers, as a user loads them
        out[f"pretrained:{name}"] = _controller_method(
            lrjax.pretrained.load(name), optimizer, steps
        )
    for i, run_dir in enumerate(run_dirs):
        suffix = "" if i == 0 else f"[{run_dir.name}]"
        momentum = load_controller(run_dir / "controller").config.momentum_control
        for optimizer in ("momentum",) if momentum else ("sgd", "adam"):
            controller = load_controller(run_dir / f"controller-{optimizer}")
            out[f"controller_{optimizer}{suffix}"] = _controller_method(
                controller, optimizer, steps
            )
            schedule = controller.config.base_schedule
            if schedule != "constant":  # the base schedule alone: an actor whose action is 0
                still = controller.replace(params=jax.tree.map(jnp.zeros_like, controller.params))
                start = f"{controller.config.initial_lr:g}"
                out[f"{schedule}_{start} (its base schedule alone){suffix}"] = _controller_method(
                    still, optimizer, steps
                )
            for factor in start_factors if i == 0 else ():  # a start 10x off: does it recover?
                start = controller.config.initial_lr * factor
                moved = controller.with_initial_lr(start)
                out[f"controller_{optimizer} from {start:g}"] = _controller_method(
                    moved, optimizer, steps
                )
                out[f"{optimizer}_{start:g}"] = _registry_method(optimizer, steps, start)
    out["sgd_0.1"] = _registry_method("sgd", steps, 0.1)
    out["momentum_0.01"] = _registry_method("momentum", steps, 0.01)
    out["adam_1e-3"] = _registry_method("adam", steps, 1e-3)
    for name in LR_FREE:
        out[name] = _registry_method(name, steps)
    out["schedule_free_sgd_1.0"] = _registry_method("schedule_free_sgd", steps, 1.0)
    out["schedule_free_adamw_2.5e-3"] = _registry_method("schedule_free_adamw", steps, 2.5e-3)
    return out


def run_target(task, data, table, keys, steps, done=None, save=lambda rows: None):
    """Each method of ``table`` on ``keys``' trainees of ``task``. Rows in ``done`` (an earlier,
    interrupted run's, same arguments) are kept, not run again; ``save`` gets the rows after
    each method, so an interrupted run resumes where it stopped."""
    rows = {}
    for name, (make_tx, hp, lr_fn, eval_params) in table.items():
        if done and name in done:
            rows[name] = {**done[name], "test_loss": np.asarray(done[name]["test_loss"])}
            print(f"  {name}: {np.mean(rows[name]['test_loss']):.4f} (kept from --out)")
            continue
        n = keys.shape[0]
        hparams = None if hp is None else {k: np.full((n,), v) for k, v in hp.items()}
        t0 = time.perf_counter()
        r = training.train(
            task, make_tx, keys, data, steps, hparams=hparams,
            learning_rate_fn=lr_fn, eval_params=eval_params,
        )  # fmt: skip
        test_loss = np.where(np.isfinite(r.test_loss[:, -1]), r.test_loss[:, -1], np.inf)
        rows[name] = {
            "test_loss": test_loss,
            "test_accuracy": r.test_accuracy[:, -1],
            "diverged": int(np.sum(~np.isfinite(r.train_loss).all(axis=1))),
            "chance": int(np.sum(r.test_accuracy[:, -1] < CHANCE_ACCURACY)),
            "lr_range": _range(r.learning_rate),
            "seconds": time.perf_counter() - t0,
            **_curves(r.learning_rate, r.train_loss),
        }
        print(f"  {name}: {np.mean(test_loss):.4f} ({rows[name]['seconds']:.0f} s)", flush=True)
        save(rows)
    return rows


def selected(wanted: tuple[str, ...], prefix: str) -> bool:
    """Would ``--only wanted`` keep some method whose name starts with ``prefix``?"""
    return not wanted or any(w.startswith(prefix) or prefix.startswith(w) for w in wanted)


def _jsonable(rows: dict) -> dict:
    return {
        k: {f: (v.tolist() if isinstance(v, np.ndarray) else v) for f, v in r.items()}
        for k, r in rows.items()
    }


def _curves(lr: np.ndarray, train_loss: np.ndarray, points: int = 150) -> dict:
    """Each seed's applied LR and training loss (a moving mean over the stride) at ``points``
    evenly spaced steps, for the LR-schedule plots."""
    steps = lr.shape[1]
    stride = max(1, steps // points)
    usable = steps // stride * stride
    loss = train_loss[:, :usable].reshape(train_loss.shape[0], -1, stride).mean(axis=2)
    return {
        "curve_steps": (np.arange(stride, usable + 1, stride)).tolist(),
        "curve_lr": lr[:, stride - 1 : usable : stride].tolist(),
        "curve_train_loss": loss.tolist(),
    }


def _range(lr: np.ndarray) -> tuple[float, float]:
    """The applied LR's range (NaN where the method keeps no LR in its state, e.g. DoG)."""
    finite = lr[np.isfinite(lr)]
    return (float(finite.min()), float(finite.max())) if finite.size else (np.nan, np.nan)


def table_md(target, rows, reference="controller_sgd") -> str:
    # A run restricted by --only may not hold the reference; pair across runs
    # with paired_across_runs.py then, and leave the column out here.
    paired = reference in rows
    head = f" minus {reference} [95% CI] |" if paired else ""
    lines = [
        f"### {target}",
        "",
        f"| method | test loss (95% CI) | test acc | diverged | chance |{head} LR range |",
        "|---|---|---|---|---|" + ("---|" if paired else "") + "---|",
    ]
    for name, r in rows.items():
        li = mean_interval(r["test_loss"])
        d = ""
        if paired:
            d = (
                " "
                + ("" if name == reference else _diff(r["test_loss"], rows[reference]["test_loss"]))
                + " |"
            )
        lo, hi = r["lr_range"]
        lines.append(
            f"| {name} | {li.mean:.4f} +- {li.half_width:.4f} | "
            f"{np.mean(r['test_accuracy']):.4f} | {r['diverged']} | {r['chance']} |{d} "
            f"[{lo:.2g}, {hi:.2g}] |"
        )
    return "\n".join(lines)


def _diff(x, ref) -> str:
    if not (np.isfinite(x).all() and np.isfinite(ref).all()):
        return "n/a (a run diverged)"
    d = paired_difference(x, ref)
    return f"{d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--run",
        action="append",
        help="a lrjax train --family run (repeat to compare; the first is the reference)",
    )
    p.add_argument(
        "--pretrained",
        action="append",
        default=[],
        metavar="NAME=OPTIMIZER",
        help="also a shipped controller (lrjax.pretrained) over its base optimizer, sgd or adam, "
        "e.g. mlp_family_sgd=sgd (repeat); with --pretrained and no --run, no run is loaded",
    )
    p.add_argument(
        "--start-factors",
        default="",
        help="also start each controller (and its optimizer at a constant LR) at its LR times "
        "these, e.g. 0.1,10",
    )
    p.add_argument(
        "--reference",
        default="controller_sgd",
        help="the method the paired differences are taken against",
    )
    p.add_argument(
        "--only",
        default=None,
        help="run only the methods whose name starts with one of these (comma-separated)",
    )
    p.add_argument(
        "--tables-from",
        default=None,
        help="print the tables of an earlier run's results.json (with --reference) and exit",
    )
    p.add_argument("--family", default=None, help="tune transferred baselines on this family")
    p.add_argument("--tune-steps", type=int, default=1000, help="steps of each tuning run")
    p.add_argument("--tune-seeds", type=int, default=2, help="tuning seeds (transfer, oracles)")
    p.add_argument(
        "--oracles",
        default=",".join(ORACLES),
        help="registry optimizers tuned on each target (of TRANSFER_GRIDS; default sgd,cosine; "
        "momentum,momentum_cosine for a controller that sets the momentum)",
    )
    p.add_argument("--targets", default=",".join(TARGETS), help="comma-separated")
    p.add_argument("--steps", type=int, default=3000, help="trainee steps (training had <= 1000)")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--seed", type=int, default=1000, help="root of the held-out keys")
    p.add_argument(
        "--out",
        default=None,
        help="write results.md and results.json here (results.json after each method; a rerun "
        "with the same --out keeps the rows it has and runs the rest)",
    )
    args = p.parse_args()
    if args.tables_from:
        for target, rows in json.loads(Path(args.tables_from).read_text()).items():
            rows = {k: {**r, "test_loss": np.asarray(r["test_loss"])} for k, r in rows.items()}
            print(table_md(target, rows, args.reference) + "\n")
        return
    keys = jax.random.split(jax.random.fold_in(jax.random.key(args.seed), 1), args.seeds)
    factors = [float(f) for f in args.start_factors.split(",") if f]
    pretrained = [tuple(spec.split("=")) for spec in args.pretrained]
    if any(len(spec) != 2 or spec[1] not in ("sgd", "adam") for spec in pretrained):
        p.error(f"--pretrained takes NAME=sgd or NAME=adam, got {args.pretrained}")
    runs = args.run or ([] if pretrained else ["runs/mixed_mlp_ppo"])
    table = methods([Path(r) for r in runs], args.steps, factors, pretrained)
    print(f"devices: {jax.devices()}; {args.seeds} seeds, {args.steps} steps", flush=True)
    wanted = tuple(args.only.split(",")) if args.only else ()
    if args.family and selected(wanted, "transferred_"):  # tuning costs: skip when not run
        cache = Path(args.out) / "transferred.json" if args.out else None
        print(f"transferred from {args.family}:", flush=True)
        chosen = transferred(args.family, args.tune_steps, args.tune_seeds, args.seed, cache)
        for name, config in chosen.items():
            table[f"transferred_{name} ({_label(config)})"] = _registry_method(
                name, args.steps, config=config
            )
    md, dump = [], {}
    out = Path(args.out) if args.out else None
    if out and (out / "results.json").exists():  # an interrupted run: resume it
        dump = json.loads((out / "results.json").read_text())

    def save(target, rows):
        if out:
            out.mkdir(parents=True, exist_ok=True)
            merged = dump | {target: _jsonable(rows)}
            (out / "results.json").write_text(json.dumps(merged, indent=1))

    for target in args.targets.split(","):
        name, overrides = TARGETS[target]
        task = tasks.get_task(name, **overrides)
        print(f"{target}:", flush=True)
        data = task.load_data()
        target_table = dict(table)
        if (args.family and selected(wanted, "oracle_")) or any(
            w.startswith("oracle") for w in wanted
        ):
            cache = Path(args.out) / f"oracles_{target}.json" if args.out else None
            names = tuple(n.strip() for n in args.oracles.split(",") if n.strip())
            target_table |= oracles(
                task, data, args.steps, args.tune_seeds, args.seed, cache, names
            )
        if wanted:
            target_table = {k: v for k, v in target_table.items() if k.startswith(wanted)}
        rows = run_target(
            task, data, target_table, keys, args.steps,
            done=dump.get(target), save=lambda rows, target=target: save(target, rows),
        )  # fmt: skip
        md.append(table_md(target, rows, args.reference))
        print(md[-1], flush=True)
        dump[target] = _jsonable(rows)
        if out:
            save(target, rows)
            (out / "results.md").write_text("\n\n".join(md) + "\n")
            curves = {
                k: (r["curve_steps"], np.asarray(r["curve_lr"]), np.asarray(r["curve_train_loss"]))
                for k, r in dump[target].items()
                if np.isfinite(np.asarray(r["curve_lr"], dtype=float)).any()
            }
            lrjax.plots.plot_lr_schedules(
                curves, out / f"lr_{target}.png", title=f"{target}, {args.steps} steps"
            )


if __name__ == "__main__":
    main()
