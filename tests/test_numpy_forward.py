"""numpy_forward: the acting networks of ppo.py, dqn.py and c51.py, run in numpy, equal torch's forward and follow every update."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

from axiomrl import c51, dqn, ppo
from axiomrl_utils.numpy_forward import _torch_forward, numpy_forward


def vector_spec(obs_dim: int = 4, n_actions: int = 2) -> gym.vector.VectorEnv:
    class Spec:
        single_observation_space = gym.spaces.Box(-1.0, 1.0, (obs_dim,))
        single_action_space = gym.spaces.Discrete(n_actions)

    return Spec()  # type: ignore[return-value]


def networks() -> dict[str, nn.Sequential]:
    torch.manual_seed(0)
    agent = ppo.Agent(vector_spec(8, 5))
    return {"ppo actor": agent.actor, "ppo critic": agent.critic, "dqn q-network": dqn.QNetwork(vector_spec(8, 5)).network}


def torch_forward(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.as_tensor(x, dtype=next(module.parameters()).dtype)).numpy()


@pytest.mark.parametrize("name", ["ppo actor", "ppo critic", "dqn q-network"])
@pytest.mark.parametrize("batch", [1, 4, 128])
def test_equals_the_torch_forward(name: str, batch: int) -> None:
    module = networks()[name]
    forward = numpy_forward(module)
    x = np.random.default_rng(batch).normal(size=(batch, 8)).astype(np.float32)
    got = forward(x)
    assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (batch, module[-1].out_features)
    np.testing.assert_allclose(got, torch_forward(module, x), rtol=1e-5, atol=1e-6)
    # an env that speaks float64 gets what torch.as_tensor(obs, dtype=float32) would have given
    np.testing.assert_allclose(forward(x.astype(np.float64)), got, rtol=1e-6, atol=1e-7)
    x_before = x.copy()
    forward(x)
    assert np.array_equal(x, x_before), "the caller's observation must not be modified"


@pytest.mark.parametrize("batch", [1, 4, 128])
def test_c51_greedy_action_equals_the_torch_one(batch: int) -> None:
    """c51.py acts with greedy_action(numpy forward, atoms): the action QNetwork.get_action picks."""
    rng = np.random.default_rng(batch)
    for seed in range(5):
        torch.manual_seed(seed)
        q_network = c51.QNetwork(vector_spec(8, 5), n_atoms=51, v_min=-10, v_max=10)
        x = rng.normal(size=(batch, 8)).astype(np.float32)
        with torch.no_grad():
            expected, _ = q_network.get_action(torch.as_tensor(x))
        got = c51.greedy_action(numpy_forward(q_network.network)(x), q_network.atoms.numpy())
        assert got.dtype == np.int64 and got.shape == (batch,)
        np.testing.assert_array_equal(got, expected.numpy())


def test_follows_optimizer_steps_load_state_dict_and_target_copies() -> None:
    """The forward reads the live parameters: every in-place update is seen without rebuilding anything."""
    torch.manual_seed(1)
    q_network, target = dqn.QNetwork(vector_spec()), dqn.QNetwork(vector_spec())
    forward, target_forward = numpy_forward(q_network.network), numpy_forward(target.network)
    x = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
    before = forward(x)

    optimizer = torch.optim.Adam(q_network.parameters(), lr=1e-2, fused=True)  # what dqn.py and ppo.py use
    for _ in range(5):
        loss = q_network(torch.as_tensor(x)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = forward(x)
    assert not np.allclose(after, before), "the optimizer changed the network, so the forward must change"
    np.testing.assert_allclose(after, torch_forward(q_network, x), rtol=1e-5, atol=1e-6)

    for target_param, param in zip(target.parameters(), q_network.parameters()):  # dqn.py's target update
        target_param.data.copy_(param.data)
    np.testing.assert_allclose(target_forward(x), after, rtol=1e-6, atol=1e-7)

    fresh = dqn.QNetwork(vector_spec())
    q_network.load_state_dict(fresh.state_dict())  # what --resume does
    np.testing.assert_allclose(forward(x), torch_forward(fresh, x), rtol=1e-5, atol=1e-6)


def test_follows_parameters_given_new_storage_or_dtype() -> None:
    torch.manual_seed(2)
    module = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 3))
    forward = numpy_forward(module)
    x = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
    module[0].weight.data = torch.randn(32, 4)  # rebinding, not an in-place update
    np.testing.assert_allclose(forward(x), torch_forward(module, x), rtol=1e-5, atol=1e-6)
    module.double()
    got = forward(x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, torch_forward(module, x), rtol=1e-12, atol=1e-12)


def test_activations_work_in_place_but_never_on_the_callers_array() -> None:
    """Activations after a layer reuse its output array; one that comes first must leave the input as it was."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Tanh(), nn.Linear(4, 8), nn.ReLU(), nn.ReLU(), nn.Linear(8, 3), nn.Tanh())
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32) * 3
    before = x.copy()
    out = numpy_forward(module)(x)
    assert np.array_equal(x, before)
    np.testing.assert_allclose(out, torch_forward(module, x), rtol=1e-5, atol=1e-6)


def test_layers_without_a_numpy_twin_are_refused() -> None:
    class ScaledLinear(nn.Linear):  # a subclass may compute anything in its forward
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    with pytest.raises(TypeError, match="not Agent; pass the Sequential inside it"):
        numpy_forward(ppo.Agent(vector_spec()))
    with pytest.raises(TypeError, match="not Softmax"):
        numpy_forward(nn.Sequential(nn.Linear(4, 2), nn.Softmax(-1)))
    with pytest.raises(TypeError, match="not ScaledLinear"):
        numpy_forward(nn.Sequential(ScaledLinear(4, 2)))


def test_torch_fallback_for_modules_off_the_cpu_computes_the_same() -> None:
    """On CUDA numpy_forward hands back the torch forward with the conversions (this machine has no GPU: called directly)."""
    module = networks()["dqn q-network"]
    x = np.random.default_rng(3).normal(size=(4, 8))
    np.testing.assert_allclose(_torch_forward(module)(x), numpy_forward(module)(x), rtol=1e-5, atol=1e-6)
