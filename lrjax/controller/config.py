"""The controller's configuration: a frozen, validated, JSON-able dataclass.

Defaults follow paper B ("Reinforcement Learning for Learning Rate Control": an LSTM of 2 layers x
20 units over the minibatch loss, outputting the learning rate itself) with the LR range and
scale bound of the unofficial reimplementation of paper A ("Learning an Adaptive Learning Rate
Schedule": ``alpha = 1.05``, LR in ``[1e-5, 1e-1]``). :meth:`ControllerConfig.paper_a` and
:meth:`ControllerConfig.paper_b` give each paper's setting.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from lrjax._validation import (
    ConfigError,
    check_choice,
    check_in_range,
    check_less,
    check_non_negative,
    check_positive,
    check_positive_int,
    fail,
)
from lrjax.features import (
    LOSS_ONLY_FEATURES,
    LRJAX_FEATURES,
    PAPER_A_FEATURES,
    PAPER_B_FEATURES,
    Feature,
    FeatureSpec,
)

__all__ = ["ACTION_MODES", "ControllerConfig"]

ACTION_MODES = ("absolute", "scale", "log")
"""``"absolute"``: the action is the LR (paper B); ``"scale"``: it scales the previous LR (A);
``"log"``: it is the log of the LR relative to the start, clipped to the bounds (no saturation:
an actor past a bound still gets a gradient, :func:`lrjax.controller.action_position`)."""

LOG_STD_RANGE = (-5.0, 2.0)
"""The Gaussian head's log-std is clipped to this range."""


BASE_SCHEDULES = ("constant", "cosine")
"""What the controller's LR is multiplied by over the run (``ControllerConfig.base_schedule``):
``"constant"``, 1; ``"cosine"``, ``0.5 (1 + cos(pi p))`` at the fraction ``p`` of the run done
when the controller last acted."""

_ADDED_LATER = {
    "actions_per_run": None,
    "base_schedule": "constant",
    "group_features": (),
    "momentum_control": False,
    "initial_momentum": 0.9,
    "momentum_max": 0.99,
}
"""Fields newer than the first saved configs, with the value that reads an older save as it was
trained (``actions_per_run=None``: every ``steps_per_action`` steps; ``base_schedule``: no
schedule)."""


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    """Everything that fixes a controller's behaviour apart from its learned parameters.

    Attributes:
      features: the state function chi: a :class:`~lrjax.features.FeatureSpec`, or a sequence of
        built-in feature names and/or :class:`~lrjax.features.Feature` objects (turned into a
        ``FeatureSpec`` with its default normalisation). Default: paper B's ``("train_loss",)``.
      action_mode: ``"absolute"`` (paper B): the actor's action u sets the LR,
        ``lr = exp(log lr_min + sigmoid(u) (log lr_max - log lr_min))``; ``"scale"`` (paper A): it
        scales the previous LR, ``lr = clip(prev_lr * alpha ** tanh(u), lr_min, lr_max)``;
        ``"log"``: ``lr = clip(initial_lr * exp(u), lr_min, lr_max)``, the absolute LR without
        paper B's sigmoid, which saturates at the bounds (a deterministic actor-critic's actor
        collapsed at the floor gets no gradient back through it). Default ``"absolute"``.
      lr_min: smallest LR the controller can apply, > 0. Default 1e-5 (paper A reimplementation).
      lr_max: largest LR the controller can apply, > lr_min. Default 1e-1 (ditto).
      alpha: bound of the per-action scale in ``"scale"`` mode, the LR changes by a factor in
        ``[1/alpha, alpha]``; must be > 1 (validated in both modes). Default 1.05 (ditto).
      initial_lr: the "previous LR" before the first action, in ``[lr_min, lr_max]``: the start of
        a ``"scale"`` controller, and the LR an untrained ``"absolute"`` controller outputs (its
        mean head's bias starts there). Default 1e-3, the geometric middle of the default range.
        The presets (:meth:`lrjax`, :meth:`paper_a`, :meth:`paper_b`) given LR bounds but no
        ``initial_lr`` move their initial LR into those bounds.
      steps_per_action: k, the controller acts every k optimizer steps and holds the LR in
        between. Training (the RL environment) and deployment (the optax transform) both read
        it here, so a saved controller acts as often as it was trained to. Default 1 (paper B
        acts every step).
      actions_per_run: when set, the controller acts this many times per run whatever its
        length: every ``total_steps // actions_per_run`` steps (:meth:`steps_for`), so its
        learned schedule is a function of the fraction of the run done, not of the step count,
        and a budget longer than any in training neither stretches its warm-up nor compounds
        its decay. Training sets ``steps_per_action`` from each episode's budget; deployment
        needs ``total_steps``. Default None: every ``steps_per_action`` steps.
      base_schedule: a schedule the controller's LR is multiplied by (:data:`BASE_SCHEDULES`):
        the LR applied is ``lr * s(p)``, ``p`` the fraction of the run done at the last action
        (environment: ``t / horizon``; transform: ``step / total_steps``, so deployment needs
        ``total_steps``). With ``"cosine"`` the controller learns a correction of a cosine decay
        (the schedule that a fixed-budget run is hard to beat with) instead of discovering the
        decay itself; its features see its own LR, not the product. Default ``"constant"``
        (the papers: the controller's LR is applied as it is).
      group_features: per-group features (:data:`lrjax.controller.groups.GROUP_FEATURES`).
        Non-empty: the controller acts per parameter group (each layer by default), one actor
        shared by every group, each group observed as the run's ``features`` followed by its
        own; deploy it with :func:`lrjax.controller.scale_by_layer_controller`. Needs
        ``features`` unnormalised (``normaliser="none"``, as the loss-only preset): the group
        features are relative already, and a statistic per feature across groups of other
        depths would mean something else on every network. Default ``()``: one LR (the papers).
      momentum_control: the actor has a second output that sets the momentum ``beta`` of SGD
        with momentum (heavy ball, ``m = g + beta m``, as ``optax.trace``), per group when the
        controller is per group: ``1 - beta = clip((1 - initial_momentum) exp(u_2), 1 -
        momentum_max, 1)``, held between actions like the LR. Deployed with
        :func:`lrjax.controller.scale_by_layer_controller`, which then is the momentum too.
        Needs ``features`` unnormalised, as ``group_features`` does. Default False (the base
        optimizer's momentum stays fixed).
      initial_momentum: ``beta`` before the first action and for an untrained actor, in ``[0,
        momentum_max]``. Default 0.9 (the ``"momentum"`` optimizer's).
      momentum_max: the largest ``beta``, in ``[initial_momentum, 1)``. Default 0.99.
      lstm_layers: number of stacked LSTM layers of the actor. Default 2 (paper B).
      lstm_units: units per LSTM layer. Default 20 (paper B).
      log_std_init: initial log standard deviation of the Gaussian policy head used by PPO
        (state-independent, learned, clipped to [-5, 2]). Default -0.5 (std 0.61: in ``"scale"``
        mode most samples move the LR by less than a factor alpha, in ``"absolute"`` mode they
        explore about a third of the log-LR range around the mean).
      head_init_scale: scale of the orthogonal initialisation of the mean head's kernel; small,
        so an untrained actor's action is about its bias (PPO practice). Default 0.01.

    Example, the loss-only preset of the shipped controllers, and a value it refuses:

    >>> config = ControllerConfig.loss_only(initial_lr=0.01)
    >>> config.action_mode, config.initial_lr, config.features.names[-2:]
    ('scale', 0.01, ('lr_vs_start', 'progress'))
    >>> ControllerConfig(lr_min=1e-3, lr_max=1e-4)
    Traceback (most recent call last):
      ...
    lrjax._validation.ConfigError: lr_min=0.001 must be smaller than lr_max=0.0001.
    """

    features: FeatureSpec | Sequence[str | Feature] = FeatureSpec()
    action_mode: str = "absolute"
    lr_min: float = 1e-5
    lr_max: float = 1e-1
    alpha: float = 1.05
    initial_lr: float = 1e-3
    steps_per_action: int = 1
    actions_per_run: int | None = None
    base_schedule: str = "constant"
    group_features: tuple[str, ...] = ()
    momentum_control: bool = False
    initial_momentum: float = 0.9
    momentum_max: float = 0.99
    lstm_layers: int = 2
    lstm_units: int = 20
    log_std_init: float = -0.5
    head_init_scale: float = 0.01

    def __post_init__(self):
        if not isinstance(self.features, FeatureSpec):
            object.__setattr__(self, "features", FeatureSpec(features=self.features))
        check_choice("action_mode", self.action_mode, ACTION_MODES)
        check_positive("lr_min", self.lr_min)
        check_positive("lr_max", self.lr_max)
        check_less("lr_min", self.lr_min, "lr_max", self.lr_max)
        try:
            alpha_ok = math.isfinite(float(self.alpha)) and float(self.alpha) > 1.0
        except (TypeError, ValueError):
            alpha_ok = False
        if isinstance(self.alpha, bool) or not alpha_ok:
            fail("alpha", self.alpha, "expected a finite number > 1 (the LR scale per action)")
        check_in_range("initial_lr", self.initial_lr, self.lr_min, self.lr_max)
        check_positive_int("steps_per_action", self.steps_per_action)
        if self.actions_per_run is not None:
            check_positive_int("actions_per_run", self.actions_per_run)
            object.__setattr__(self, "actions_per_run", int(self.actions_per_run))
        check_choice("base_schedule", self.base_schedule, BASE_SCHEDULES)
        self._check_groups_and_momentum()
        check_positive_int("lstm_layers", self.lstm_layers)
        check_positive_int("lstm_units", self.lstm_units)
        check_in_range("log_std_init", self.log_std_init, *LOG_STD_RANGE)
        check_non_negative("head_init_scale", self.head_init_scale)
        for name in ("lr_min", "lr_max", "alpha", "initial_lr", "log_std_init", "head_init_scale"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("steps_per_action", "lstm_layers", "lstm_units"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def _check_groups_and_momentum(self) -> None:
        from lrjax.controller.groups import GROUP_FEATURES

        names = self.group_features
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            fail("group_features", names, f"expected a tuple of names from {GROUP_FEATURES}")
        names = tuple(names)
        for n in names:
            check_choice("group_features entry", n, GROUP_FEATURES)
        if len(set(names)) != len(names):
            fail("group_features", names, "expected each name once")
        check_choice("momentum_control", self.momentum_control, (False, True))
        layered = "group_features" if names else "momentum_control"
        if (names or self.momentum_control) and self.features.normaliser != "none":
            fail(
                layered,
                names if names else self.momentum_control,
                f"not with features.normaliser={self.features.normaliser!r}: a per-group or "
                "momentum controller observes unnormalised features (FeatureSpec(..., "
                "normaliser='none'), as ControllerConfig.loss_only)",
            )
        if "group_momentum" in names and not self.momentum_control:
            fail("group_features", names, "group_momentum needs momentum_control=True")
        check_in_range("momentum_max", self.momentum_max, 0.0, 1.0, high_open=True)
        check_in_range("initial_momentum", self.initial_momentum, 0.0, self.momentum_max)
        object.__setattr__(self, "group_features", names)
        for name in ("initial_momentum", "momentum_max"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def per_group(self) -> bool:
        """Whether the controller acts per parameter group (``group_features`` non-empty)."""
        return bool(self.group_features)

    @property
    def layered(self) -> bool:
        """Whether it deploys with :func:`~lrjax.controller.scale_by_layer_controller` (per
        group, or with momentum control): LRs of shape ``(G,)`` and observations ``(G,
        obs_size)`` (``G = 1`` for a momentum controller that is not per group)."""
        return self.per_group or self.momentum_control

    @property
    def action_size(self) -> int:
        """Outputs of the actor: 1 (the LR), 2 with ``momentum_control`` (LR, momentum)."""
        return 2 if self.momentum_control else 1

    @property
    def obs_size(self) -> int:
        """Length of the actor's observation: the features, then the group features."""
        return self.features.size + len(self.group_features)

    @property
    def initial_action(self) -> float:
        """The action u whose LR is ``initial_lr`` (absolute and log modes: 0 in log mode) or that
        keeps the LR (scale).

        Absolute mode inverts ``lr = exp(log lr_min + sigmoid(u) (log lr_max - log lr_min))``:
        ``u0 = logit((log initial_lr - log lr_min) / (log lr_max - log lr_min))``, with the
        position kept in [1e-3, 1 - 1e-3] so that ``u0`` is finite.
        """
        if self.action_mode in ("scale", "log"):
            return 0.0
        pos = (math.log(self.initial_lr) - math.log(self.lr_min)) / (
            math.log(self.lr_max) - math.log(self.lr_min)
        )
        pos = min(max(pos, 1e-3), 1.0 - 1e-3)
        return math.log(pos) - math.log1p(-pos)

    def steps_for(self, total_steps: int | None) -> int:
        """k, the steps between two actions in a run of ``total_steps`` steps:
        ``max(1, total_steps // actions_per_run)`` when ``actions_per_run`` is set (then
        ``total_steps`` is required), else ``steps_per_action``."""
        if self.actions_per_run is None:
            return self.steps_per_action
        if total_steps is None:
            raise ConfigError(
                f"total_steps=None is not allowed: this controller acts {self.actions_per_run} "
                "times per run (actions_per_run), so it needs the run's length; pass "
                "total_steps=<optimizer steps of the run>."
            )
        check_positive_int("total_steps", total_steps)
        return max(1, int(total_steps) // self.actions_per_run)

    def schedule_factor(self, progress: jax.typing.ArrayLike) -> jax.Array:
        """``s(p)`` of :attr:`base_schedule` at the fraction ``progress`` of the run done
        (float32; 1 for ``"constant"``)."""
        p = jnp.clip(jnp.asarray(progress, jnp.float32), 0.0, 1.0)
        if self.base_schedule == "cosine":
            return 0.5 * (1.0 + jnp.cos(jnp.pi * p))
        return jnp.ones_like(p)

    def replace(self, **changes: Any) -> ControllerConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def paper_a(cls, **changes: Any) -> ControllerConfig:
        """Paper A: scale actions with alpha = 1.05 on LRs in [1e-5, 1e-1], paper A's features,
        one action every 10 optimizer steps (paper A does not give its interval; 10 keeps the
        per-action validation estimate cheap next to the steps it follows).

        The actor stays the LSTM (2 x 20) so that one network serves both papers; PPO samples
        from its Gaussian head.
        """
        preset = {"features": PAPER_A_FEATURES, "action_mode": "scale", "steps_per_action": 10}
        return cls._preset(preset, changes)

    @classmethod
    def lrjax(cls, **changes: Any) -> ControllerConfig:
        """lrjax's default, the setting of its shipped controller: paper A's scale actions and
        features plus the run's ``progress``, normalised with ``"frozen"`` statistics gathered
        across the training episodes; SGD-sized LRs in [1e-4, 1] starting at 0.1, an action
        every 10 steps that scales the LR by at most 1.25 (so that 40 actions can warm up,
        hold and decay by up to 1.25^10 = 9.3x within their last quarter).

        Why each choice departs from :meth:`paper_a` (``RESULTS.md``): an episode of
        paper A's alpha 1.05 moves the LR by at most 1.63x in 10 actions, too little to reach a
        good LR or to decay; per-episode normalisation hides how large the loss and LR already
        are; without ``progress`` the actor cannot place a decay within the budget.
        """
        preset = {
            "features": FeatureSpec(features=LRJAX_FEATURES, normaliser="frozen"),
            "action_mode": "scale",
            "lr_min": 1e-4,
            "lr_max": 1.0,
            "alpha": 1.25,
            "initial_lr": 0.1,
            "steps_per_action": 10,
        }
        return cls._preset(preset, changes)

    @classmethod
    def loss_only(cls, **changes: Any) -> ControllerConfig:
        """lrjax's trainee-independent controller: :data:`~lrjax.features.LOSS_ONLY_FEATURES`
        (losses relative to the run's own start and best over three time scales, the LR
        relative to its start, progress; nothing but ``value=loss`` and ``total_steps`` from the
        loop), unnormalised (each is already O(1) and means the same on every trainee), scale
        actions with alpha 1.25 every 10 steps, from 0.1 (SGD's start) within
        ``[initial_lr / 1000, initial_lr * 30]``. :meth:`with_initial_lr` moves the start and
        the bounds together (another base optimizer, or a user's LR).
        """
        preset = {
            "features": FeatureSpec(features=LOSS_ONLY_FEATURES, normaliser="none"),
            "action_mode": "scale",
            "lr_min": 1e-4,
            "lr_max": 3.0,
            "alpha": 1.25,
            "initial_lr": 0.1,
            "steps_per_action": 10,
        }
        return cls._preset(preset, changes)

    def with_initial_lr(self, initial_lr: float) -> ControllerConfig:
        """This config started at ``initial_lr``, its LR bounds moved by the same factor (the
        bounds keep their ratios to the start: a controller whose features are relative to its
        starting LR acts the same from any start)."""
        check_positive("initial_lr", initial_lr)
        factor = float(initial_lr) / self.initial_lr
        tidy = lambda x: float(f"{x:.12g}")  # 1e-06, not 1.0000000000000002e-06
        return self.replace(
            initial_lr=float(initial_lr),
            lr_min=tidy(self.lr_min * factor),
            lr_max=tidy(self.lr_max * factor),
        )

    @classmethod
    def paper_b(cls, **changes: Any) -> ControllerConfig:
        """Paper B: the LSTM (2 x 20) outputs the LR from the minibatch loss.

        The LR range is [1e-4, 1], the range of the LR grid paper B tuned its baselines over; the
        paper does not state the actor's output range.
        """
        preset = {
            "features": PAPER_B_FEATURES,
            "action_mode": "absolute",
            "lr_min": 1e-4,
            "lr_max": 1.0,
            "initial_lr": 1e-2,
        }
        return cls._preset(preset, changes)

    @classmethod
    def _preset(cls, preset: dict[str, Any], changes: dict[str, Any]) -> ControllerConfig:
        """``preset`` with ``changes``. LR bounds changed without an ``initial_lr`` move the
        preset's initial LR into them (``lr_min=0.5, lr_max=10`` starts at 0.5, not at an
        initial LR outside the range the caller chose)."""
        settings = {**preset, **changes}
        if "initial_lr" not in changes and ({"lr_min", "lr_max"} & set(changes)):
            low = settings.get("lr_min", cls.lr_min)
            high = settings.get("lr_max", cls.lr_max)
            initial = settings.get("initial_lr", cls.initial_lr)
            if all(isinstance(x, int | float) for x in (low, high)) and low < high:
                settings["initial_lr"] = min(max(initial, low), high)
        return cls(**settings)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able description (user-defined features are described, not their code)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["features"] = self.features.to_json()
        out["group_features"] = list(self.group_features)
        return out

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], custom_features: Sequence[Feature] = ()
    ) -> ControllerConfig:
        """Inverse of :meth:`to_json`.

        Args:
          data: the output of :meth:`to_json`.
          custom_features: the user-defined features the saved config names.

        Returns:
          The validated config.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"The saved controller config is {data!r}: expected an object with the keys "
                f"{[f.name for f in dataclasses.fields(cls)]}."
            )
        data = {**_ADDED_LATER, **data}
        expected = [f.name for f in dataclasses.fields(cls)]
        missing = [k for k in expected if k not in data]
        unknown = [k for k in data if k not in expected]
        if missing or unknown:
            raise ConfigError(
                "The saved controller config does not match this version of lrjax: missing keys "
                f"{missing}, unknown keys {unknown}; expected {expected}."
            )
        data["features"] = FeatureSpec.from_json(data["features"], custom_features)
        data["group_features"] = tuple(data["group_features"])
        return cls(**data)
