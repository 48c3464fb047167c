"""PPO across a task family: one controller trained on a fresh trainee every update.

A controller trained on one trainee learns that trainee's schedule. One meant for networks it
never saw is trained across a :class:`~lrjax.tasks.TaskFamily` (learned_optimization's recipe,
and Celo's): every PPO update draws a :class:`~lrjax.tasks.TaskSample` (trainee, budget, base
optimizer) from the family, runs ``num_envs`` fresh episodes of it, one whole run each, and
takes PPO's gradient steps on them; the agent (actor, critic, their Adam state, the observation
statistics) is shared by every update.

Each sample is its own environment (the trainee's shapes, the budget's horizon and the optimizer
are static), so each is its own compiled program: the number of programs is bounded by the
family's :meth:`~lrjax.tasks.TaskFamily.samples`, is reported in every update's metrics
(``programs``), and a program compiled once is reused whenever its sample is drawn again (the
programs are compiled ahead of time and kept per sample; the agent is put on the same devices
before every update, so that a resumed run reuses them too).

An episode starts at the base optimizer's documented LR (:data:`lrjax.training.
DEFAULT_LEARNING_RATES`, the controller's bounds moved with it,
:meth:`~lrjax.controller.ControllerConfig.with_initial_lr`) times a log-uniform factor in
``[1/spread, spread]`` (``EnvConfig.initial_lr_spread``), so that the controller learns to
recover from a start that is too high or too low.

:class:`FamilyPPO` has the runner's interface (:func:`lrjax.algos.runner.run`: chunks,
metrics, checkpoints, resume) with ``host_driven = True``: its ``run_updates`` draws the
samples on the host (the draw of update ``u`` is ``family.sample(fold_in(sample_key, u))``, so
a resumed run draws what an uninterrupted one would) and calls each sample's compiled update.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from lrjax._validation import ConfigError, check_positive_int
from lrjax.algos.ppo import PPO, PPOConfig
from lrjax.controller import Controller, ControllerConfig
from lrjax.env import EnvConfig, TraineeEnv
from lrjax.features import NormaliserState, Probe, deployed_normaliser, init_normaliser
from lrjax.tasks import TaskFamily, TaskSample
from lrjax.training import DEFAULT_LEARNING_RATES


@struct.dataclass
class FamilyState:
    """What training across a family carries from one update to the next: the agent only (the
    episodes of an update are fresh, of that update's sample)."""

    params: dict[str, Any]  # {"actor": ..., "critic": ...}
    opt_state: Any
    obs_stats: NormaliserState
    key: jax.Array
    sample_key: jax.Array
    updates_done: jax.Array


@dataclasses.dataclass(frozen=True)
class FamilyPPO:
    """PPO over the samples of ``family`` (module docstring).

    Attributes:
      family: the trainees.
      env: the MDP of every episode; its ``horizon`` is replaced by each sample's budget over
        ``steps_per_action`` (or by ``actions_per_run``, ``steps_per_action`` then by the budget
        over it), its ``optimizer`` by the sample's, its controller's start by the
        optimizer's entry of ``start_lrs``. Default: the loss-only controller
        (:meth:`ControllerConfig.loss_only`), starts spread 10x either way.
      ppo: PPO's settings (``rollout_length`` must stay None: a rollout is one whole episode).
      start_lrs: ``(optimizer, LR)`` pairs: where an episode of each base optimizer starts.
      max_programs: compiled update programs kept in memory at once (all families together).
        Each holds its machine code: on Linux a CPU program of ``mixed_mlp_long`` maps about
        2,000 memory regions, and a process may map 65,530 (``vm.max_map_count``), so a run
        that kept every one of a large family's programs died in LLVM ("Unable to allocate
        section memory"). When a new program would exceed it, the least recently used half is
        dropped (and compiled again if drawn again; a persistent compilation cache,
        ``JAX_COMPILATION_CACHE_DIR``, makes that a load).
    """

    family: TaskFamily
    env: EnvConfig = EnvConfig(controller=ControllerConfig.loss_only(), initial_lr_spread=10.0)
    ppo: PPOConfig = PPOConfig()
    start_lrs: tuple[tuple[str, float], ...] = tuple(DEFAULT_LEARNING_RATES.items())
    max_programs: int = 16
    name = "PPO over a family"
    host_driven = True

    def __post_init__(self):
        check_positive_int("max_programs", self.max_programs)
        if not isinstance(self.family, TaskFamily):
            raise ConfigError(
                f"family={self.family!r} is not allowed: expected a lrjax.tasks.TaskFamily "
                "(lrjax.tasks.get_family(name))."
            )
        if self.ppo.rollout_length is not None:
            raise ConfigError(
                f"ppo.rollout_length={self.ppo.rollout_length} is not allowed here: expected None "
                "(each update's rollout is one whole episode of its sample)."
            )
        object.__setattr__(
            self, "start_lrs", tuple((str(o), float(lr)) for o, lr in dict(self.start_lrs).items())
        )
        c = self.env.controller
        field, k = (
            ("steps_per_action", c.steps_per_action)
            if c.actions_per_run is None
            else ("actions_per_run", c.actions_per_run)
        )
        samples = _samples(self.family)
        for s in samples:
            if s.budget % k:
                raise ConfigError(
                    f"family {self.family.name!r} has budget {s.budget}, which "
                    f"{field}={k} does not divide: expected budgets that are multiples "
                    "of it (an episode is a whole number of actions)."
                )
            if s.optimizer not in self.starts:
                raise ConfigError(
                    f"start_lrs={self.start_lrs!r} has no LR for the optimizer {s.optimizer!r} "
                    f"that family {self.family.name!r} draws."
                )

    @property
    def starts(self) -> Mapping[str, float]:
        """The starting LR of each base optimizer."""
        return dict(self.start_lrs)

    @property
    def num_updates(self) -> int:
        return self.ppo.num_updates

    @property
    def controller_config(self) -> ControllerConfig:
        """The controller trained (its start is SGD's, or the first optimizer's in
        ``start_lrs``; :meth:`controller` gives it at another)."""
        return self.env.controller

    def sample(self, state: FamilyState) -> TaskSample:
        """The sample of the update after ``state`` (on the host)."""
        key = jax.random.fold_in(state.sample_key, int(state.updates_done))
        return self.family.sample(key)

    def ppo_for(self, sample: TaskSample) -> PPO:
        """The PPO of one sample: its trainee, budget, optimizer and start."""
        c = self.env.controller
        k = c.steps_for(sample.budget)
        controller = c.with_initial_lr(self.starts[sample.optimizer]).replace(steps_per_action=k)
        env = dataclasses.replace(
            self.env,
            controller=controller,
            optimizer=sample.optimizer,
            horizon=sample.budget // k,
        )
        # num_updates is not part of an update's program: a longer run (or one resumed with
        # more updates) reuses the programs of a shorter one.
        return PPO(TraineeEnv(sample.task, env), dataclasses.replace(self.ppo, num_updates=1))

    def _any_ppo(self) -> PPO:
        return self.ppo_for(_samples(self.family)[0])

    def init(self, key: jax.Array, data: Any = None) -> FamilyState:
        """A fresh agent (``data`` is not needed: nothing of the agent depends on a trainee)."""
        del data
        k_agent, k_sample, key = jax.random.split(key, 3)
        params, opt_state = self._any_ppo().init_agent(k_agent)
        return FamilyState(
            params=params,
            opt_state=opt_state,
            obs_stats=init_normaliser(self.controller_config.features.size),
            key=key,
            sample_key=k_sample,
            updates_done=jnp.zeros((), jnp.int32),
        )

    def run_updates(
        self, state: FamilyState, data: Mapping[str, Any], num_updates: int
    ) -> tuple[FamilyState, dict[str, jax.Array]]:
        """``num_updates`` updates, each on its own draw of the family; ``data`` maps each of
        ``family.datasets`` to its data (``family.load_data()``). Metrics stacked per update,
        with the sample drawn (``sample``: its index in ``family.samples()``; ``budget``) and
        the compiled update programs so far (``programs``)."""
        index = {s: i for i, s in enumerate(_samples(self.family))}
        rows = []
        for _ in range(num_updates):
            sample = self.sample(state)
            ppo = self.ppo_for(sample)
            sample_data = data[sample.task.dataset]
            # The agent on the devices its episodes run on, the same placement every update
            # (a restored or freshly initialised state sits on one device): one program per
            # sample, whatever the update before it.
            state = jax.device_put(
                state, ppo.vec_env.engine(ppo.config.num_envs).shared_placement()
            )
            program = _program(ppo, state, sample_data, self.max_programs)
            state, metrics = program(state, sample_data)
            metrics = dict(metrics)
            metrics["sample"] = jnp.float32(index[sample])
            metrics["budget"] = jnp.float32(sample.budget)
            metrics["programs"] = jnp.float32(self.programs_compiled())
            metrics["compilations"] = jnp.float32(self.compilations())
            rows.append(metrics)
        return state, {k: jnp.stack([r[k] for r in rows]) for k in rows[0]}

    def programs_compiled(self) -> int:
        """How many of the family's samples have a compiled update program in memory now (at
        most ``len(family.samples())`` and ``max_programs``)."""
        return sum(self.ppo_for(s) in _PROGRAMS for s in _samples(self.family))

    def compilations(self) -> int:
        """How many times this process has compiled an update of the family's samples (each
        sample once, unless its program was dropped for ``max_programs`` and drawn again)."""
        return sum(_COMPILATIONS[self.ppo_for(s)] for s in _samples(self.family))

    def controller(self, state: FamilyState, optimizer: str = "sgd") -> Controller:
        """The trained controller, starting at ``optimizer``'s LR of ``start_lrs``."""
        if optimizer not in self.starts:
            raise ConfigError(
                f"optimizer={optimizer!r} is not allowed: expected one of "
                f"{', '.join(self.starts)} (the optimizers of start_lrs)."
            )
        config = self.controller_config.with_initial_lr(self.starts[optimizer])
        # What every sample's environment observed (a family's tasks share one kind of output).
        probe = Probe(
            self.env.val_batch_size,
            self.env.probe_size,
            _samples(self.family)[0].task.probe_outputs,
        )
        config = config.replace(features=dataclasses.replace(config.features, probe=probe))
        return Controller(
            config=config,
            params=state.params["actor"],
            normaliser=deployed_normaliser(config.features, state.obs_stats),
        )


@functools.lru_cache(maxsize=8)
def _samples(family: TaskFamily) -> tuple[TaskSample, ...]:
    return family.samples()


# The compiled update of each sample's PPO, least recently used first, compiled ahead of time
# and kept by hand rather than left to jit's dispatch cache: "one program per sample" is then a
# count, not a hope (jit's cache added entries for samples it had compiled), and the programs
# in memory are bounded (FamilyPPO.max_programs).
_PROGRAMS: collections.OrderedDict[PPO, jax.stages.Compiled] = collections.OrderedDict()
_COMPILATIONS: collections.Counter[PPO] = collections.Counter()


def _program(ppo: PPO, state: FamilyState, data: Any, max_programs: int) -> jax.stages.Compiled:
    """The compiled :func:`_update` of ``ppo`` (compiled on its first call, or again after it
    was dropped)."""
    program = _PROGRAMS.get(ppo)
    if program is not None:
        _PROGRAMS.move_to_end(ppo)
        _keep(max_programs)  # a smaller bound than the last caller's
        return program
    if len(_PROGRAMS) >= max_programs:  # make room: drop the least recently used half
        _keep(max_programs // 2)
    program = _PROGRAMS[ppo] = _update.lower(ppo, state, data).compile()
    _COMPILATIONS[ppo] += 1
    return program


def _keep(count: int) -> None:
    """Drop the least recently used programs until ``count`` are left."""
    if len(_PROGRAMS) <= count:
        return
    while len(_PROGRAMS) > count:
        _PROGRAMS.popitem(last=False)
    # jit's lowering and compilation caches hold every executable compiled through them:
    # without clearing them, a dropped program's memory is never freed.
    jax.clear_caches()


@functools.partial(jax.jit, static_argnums=0)
def _update(ppo: PPO, state: FamilyState, data: Any) -> tuple[FamilyState, dict]:
    """One PPO update on fresh episodes of ``ppo``'s sample (compiled once per sample)."""
    k_start, key = jax.random.split(state.key)
    runner = ppo.start(k_start, data, state.params, state.opt_state, state.obs_stats)
    runner, metrics = ppo.update(runner, data)
    new = state.replace(
        params=runner.params,
        opt_state=runner.opt_state,
        obs_stats=runner.obs_stats,
        key=key,
        updates_done=state.updates_done + 1,
    )
    return new, metrics
