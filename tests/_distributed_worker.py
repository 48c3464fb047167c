"""One process of the multi-process test (tests/test_distributed.py): PPO and the actor-critic
trained through the runner (checkpoints and metrics in ``out``), then an evaluation of the PPO
controller's episodes; process 0 saves what the test compares in ``out/result.npz``.

  python tests/_distributed_worker.py OUT PPO_UPDATES [PORT NUM_PROCESSES PROCESS_ID]

Without the last three it runs in a single process (the reference).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from lrjax import distributed  # noqa: E402

out, ppo_updates = Path(sys.argv[1]), int(sys.argv[2])
if len(sys.argv) > 3:
    port, count, index = (int(a) for a in sys.argv[3:6])
    distributed.initialize(f"127.0.0.1:{port}", count, index)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _rl_problem import ac_config, make_env, regression_problem  # noqa: E402

from lrjax.algos import runner  # noqa: E402
from lrjax.algos.actor_critic import ActorCritic  # noqa: E402
from lrjax.algos.ppo import PPO, PPOConfig  # noqa: E402
from lrjax.controller import ControllerConfig  # noqa: E402
from lrjax.engine import EngineConfig  # noqa: E402
from lrjax.evaluation import run_controllers  # noqa: E402
from lrjax.features import FeatureSpec  # noqa: E402

task, data = regression_problem()
env = make_env(task, horizon=4)
ppo = PPO(env, PPOConfig(num_envs=4, num_updates=ppo_updates, num_minibatches=2, update_epochs=2))
trained = runner.run(
    ppo, jax.random.key(0), data, out_dir=out / "ppo", progress=False, updates_per_chunk=1
)
controller = ControllerConfig.paper_b(features=FeatureSpec(features=("train_loss", "log_lr")))
ac_settings = ac_config(
    controller=controller,
    mode="meta",
    num_envs=4,
    reset_every=10,
    num_updates=2,
    steps_per_update=15,
    engine=EngineConfig(unroll=1),
)
ac = runner.run(
    ActorCritic(task, ac_settings), jax.random.key(1), data, out_dir=out / "ac", progress=False
)
episodes = run_controllers(env, [ppo.controller(trained.state)], jax.random.key(2), data, 6)
state_devices = {d.process_index for d in jax.tree.leaves(trained.state.env_state)[0].devices()}
if distributed.is_primary():
    leaves = jax.tree.leaves(distributed.to_host(trained.state.params))
    ac_leaves = jax.tree.leaves(distributed.to_host(ac.state.actor))
    np.savez(
        out / "result.npz",
        *leaves,
        *ac_leaves,
        episode_lr=episodes[0].lr,
        episode_final=episodes[0].final_val_loss,
        processes=np.array(sorted(state_devices)),
        ppo_history=np.array([r["episode_return"] for r in trained.history], float),
    )
