"""PPO and TRPO pieces on small tensors and tiny models: GAE, the clipped objective, conjugate gradient,
Fisher-vector products, the line search, sequence layout, and config errors."""

import math
import subprocess
import sys

import pytest
import torch

from reasoning_rl.algorithms.batch import make_batch, response_forward
from reasoning_rl.algorithms.critic import Critic
from reasoning_rl.algorithms.pg_ops import generalized_advantages, token_logprobs, whiten
from reasoning_rl.algorithms.ppo import clipped_policy_loss, clipped_value_loss
from reasoning_rl.algorithms.trust_region import (
    FisherVectorProduct,
    backtracking_line_search,
    conjugate_gradient,
    get_flat_params,
    max_step,
    set_flat_params,
)
from reasoning_rl.errors import ConfigError
from tests.helpers import REPO

# ---- GAE


def test_gae_matches_a_hand_computed_example():
    gamma, lam = 0.9, 0.5
    # Sequence 1: three tokens, reward 1 at the end. Sequence 2: two real tokens, then padding.
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.4], [1.0, 3.0, 9.9]])  # 9.9 sits on padding: must be ignored
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    # δ_t = r_t + γ V_{t+1} − V_t, with V = 0 after the last real token:
    #   seq 1: δ0 = 0 + .9*.2 − .5 = −0.32;  δ1 = 0 + .9*.4 − .2 = 0.16;  δ2 = 1 − .4 = 0.6
    #   seq 2: δ0 = 0 + .9*3 − 1 = 1.7;      δ1 = 2 − 3 = −1
    # A_t = δ_t + γλ A_{t+1}, γλ = 0.45:
    #   seq 1: A2 = 0.6;  A1 = 0.16 + .45*.6 = 0.43;  A0 = −0.32 + .45*.43 = −0.1265
    #   seq 2: A1 = −1;   A0 = 1.7 + .45*(−1) = 1.25
    expected = torch.tensor([[-0.1265, 0.43, 0.6], [1.25, -1.0, 0.0]])
    advantages, returns = generalized_advantages(rewards, values, mask, gamma, lam)
    assert torch.allclose(advantages, expected, atol=1e-6)
    assert torch.allclose(returns, (expected + values) * mask, atol=1e-6)


def test_gae_with_lambda_one_gives_discounted_returns():
    rewards = torch.tensor([[0.1, -0.2, 0.3, 1.0]])
    values = torch.tensor([[0.7, -0.3, 0.2, 0.5]])
    mask = torch.ones(1, 4)
    _, returns = generalized_advantages(rewards, values, mask, gamma=0.8, lam=1.0)
    discounted = [sum(0.8**k * float(r) for k, r in enumerate(rewards[0, t:])) for t in range(4)]
    assert torch.allclose(returns[0], torch.tensor(discounted), atol=1e-6)


def test_whitening_uses_real_tokens_only():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, -50.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    w = whiten(x, mask)
    real = w[mask.bool()]
    assert abs(float(real.mean())) < 1e-6 and abs(float(real.var(unbiased=False)) - 1) < 1e-4
    assert float(w[~mask.bool()].abs().sum()) == 0


# ---- PPO objective


def _policy_grad(ratio: float, advantage: float, clip_range: float = 0.2) -> float:
    logprob = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, _ = clipped_policy_loss(logprob, torch.zeros(1, 1), torch.tensor([[advantage]]), torch.ones(1, 1), clip_range)
    loss.backward()
    return float(logprob.grad)


@pytest.mark.parametrize("ratio,advantage", [(1.5, 1.0), (1.21, 2.0), (0.5, -1.0), (0.79, -3.0)])
def test_clipped_objective_has_no_gradient_outside_the_clip_range(ratio, advantage):
    assert _policy_grad(ratio, advantage) == 0.0


@pytest.mark.parametrize("ratio,advantage", [(1.0, 1.0), (1.1, -1.0), (0.9, 1.0), (1.5, -1.0), (0.5, 1.0)])
def test_clipped_objective_keeps_the_gradient_inside_or_where_it_is_pessimistic(ratio, advantage):
    # Inside the range, or outside it on the side where the unclipped term is the worse one:
    # d(−A ρ)/d log π = −A ρ.
    assert _policy_grad(ratio, advantage) == pytest.approx(-advantage * ratio, rel=1e-5)


def test_clipped_value_loss_takes_the_worse_of_clipped_and_unclipped():
    old, ret, mask = torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.ones(1, 1)
    # V moved 0 → 0.9 toward the return: the clipped value (0.2) is further off, so it counts.
    loss, frac = clipped_value_loss(torch.tensor([[0.9]]), old, ret, mask, vf_clip=0.2)
    assert float(loss) == pytest.approx(0.5 * 0.8**2) and float(frac) == 1.0
    loss, frac = clipped_value_loss(torch.tensor([[0.1]]), old, ret, mask, vf_clip=0.2)
    assert float(loss) == pytest.approx(0.5 * 0.9**2) and float(frac) == 0.0


# ---- conjugate gradient, Fisher-vector products, line search


def test_conjugate_gradient_solves_an_spd_system():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(12, 12, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(12, dtype=torch.float64)
    b = torch.randn(12, generator=g, dtype=torch.float64)
    x, residual = conjugate_gradient(lambda v: a @ v, b, iters=50)
    assert torch.allclose(x, torch.linalg.solve(a, b), atol=1e-8)
    assert float(residual.norm()) < 1e-6
    # A few steps already reduce the residual, and the returned residual is b − A x.
    x3, r3 = conjugate_gradient(lambda v: a @ v, b, iters=3)
    assert float(r3.norm()) < float(b.norm())
    assert torch.allclose(r3, b - a @ x3, atol=1e-10)


class TinyPolicy(torch.nn.Module):
    """A categorical policy over 4 actions from 3 state features, with a hidden layer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer1 = torch.nn.Linear(3, 5)
        self.layer2 = torch.nn.Linear(5, 4)

    def forward(self, states):
        return self.layer2(torch.tanh(self.layer1(states)))


def explicit_fisher(model, logits_of_module) -> torch.Tensor:
    """F = mean over states of Jᵀ (diag(p) − p pᵀ) J with J = ∂logits/∂θ (θ: the trainable
    parameters): the Fisher of a categorical policy written out, not as a Hessian-vector product."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    theta0 = get_flat_params([p for _, p in named])

    def logits_of(theta):
        pieces = torch.split(theta, [p.numel() for _, p in named])
        overrides = {n: t.view_as(p) for (n, p), t in zip(named, pieces)}
        return logits_of_module(lambda **kw: torch.func.functional_call(model, overrides, (), kw))

    logits = logits_of(theta0).detach()
    num_actions = logits.shape[-1]
    jac = torch.autograd.functional.jacobian(logits_of, theta0).double().reshape(-1, num_actions, theta0.numel())
    probs = logits.reshape(-1, num_actions).softmax(-1).double()
    fisher = sum(j.T @ (torch.diag(p) - torch.outer(p, p)) @ j for j, p in zip(jac, probs))
    return fisher / jac.shape[0]


def mean_kl(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean KL(stop_grad(π) ‖ π): zero, with the Fisher as its Hessian."""
    logp = logits.log_softmax(-1)
    old = logp.detach()
    kl = (old.exp() * (old - logp)).sum(-1)
    return kl.mean() if mask is None else (kl * mask).sum() / mask.sum()


def test_fisher_vector_product_matches_the_explicit_fisher_of_a_tiny_policy():
    policy = TinyPolicy().double()
    states = torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    params = list(policy.parameters())
    fvp = FisherVectorProduct(lambda: mean_kl(policy(states)), params, damping=0.1)
    fisher = explicit_fisher(policy, lambda call: call(states=states))
    for seed in range(3):
        v = torch.randn(fisher.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        assert torch.allclose(fvp(v), fisher @ v + 0.1 * v, atol=1e-10)


def tiny_lm(lora: bool = True):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config).eval()
    if not lora:
        return model
    model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    for name, p in model.named_parameters():  # LoRA's B starts at 0; move it so every direction matters
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.3)
    return model


def tiny_batch():
    # Prompts of different lengths (left padding) and responses of different lengths (right padding).
    return make_batch([[5, 6, 7], [8, 9]], [[10, 11, 12], [13, 14]], pad_id=0, device="cpu")


def test_fisher_vector_product_matches_the_explicit_fisher_of_a_tiny_lora_lm():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model, batch = tiny_lm(), tiny_batch()
    params = [p for p in model.parameters() if p.requires_grad]
    mask = batch.response_mask
    with sdpa_kernel(SDPBackend.MATH):
        fvp = FisherVectorProduct(lambda: mean_kl(response_forward(model, batch, 0.7)[0], mask), params, damping=0.0)
        rows = mask.reshape(-1).bool()

        def logits_of_module(call):
            out = call(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                       position_ids=batch.position_ids, logits_to_keep=4, use_cache=False)
            return (out.logits[:, :-1].float() / 0.7).reshape(-1, 40)[rows]  # real response tokens only

        fisher = explicit_fisher(model, logits_of_module)
    v = torch.randn(fisher.shape[0], generator=torch.Generator().manual_seed(0))
    expected = (fisher @ v.double()).float()
    assert torch.allclose(fvp(v), expected, rtol=1e-3, atol=1e-6 * float(expected.abs().max()))


def categorical_setup():
    """A 3-action categorical policy (logits θ) at θ_old = 0, advantages favouring action 0."""
    theta = torch.zeros(3, requires_grad=True)
    advantages = torch.tensor([1.0, -0.5, -0.5])
    old_probs = torch.full((3,), 1 / 3)

    def evaluate():
        with torch.no_grad():
            probs = theta.softmax(-1)
            surrogate = float((probs * advantages).sum())  # E_old[ρ A] = Σ_a π_θ(a) A(a)
            kl = float((old_probs * (old_probs.log() - probs.log())).sum())
        return surrogate, kl

    return theta, evaluate


def test_line_search_backtracks_until_the_kl_is_within_the_trust_region():
    max_kl = 0.01
    theta, evaluate = categorical_setup()
    full_step = torch.tensor([5.0, -2.5, -2.5])  # improves the surrogate, but KL ≈ 1.9 ≫ δ
    set_flat_params([theta], full_step)
    assert evaluate()[1] > max_kl
    set_flat_params([theta], torch.zeros(3))
    before = evaluate()[0]
    result = backtracking_line_search(evaluate, [theta], full_step, before, max_kl, backtrack_ratio=0.5,
                                      max_backtracks=10)
    assert result.accepted and result.backtracks > 0
    surrogate, kl = evaluate()  # measured again at the parameters kept
    assert kl <= max_kl and surrogate > before
    assert result.kl == pytest.approx(kl) and result.step_fraction == 0.5**result.backtracks
    assert torch.allclose(theta.detach(), result.step_fraction * full_step)


@pytest.mark.parametrize("seed", range(20))
def test_line_search_never_keeps_a_step_above_max_kl(seed):
    g = torch.Generator().manual_seed(seed)
    max_kl = float(torch.rand(1, generator=g)) * 0.05 + 1e-4
    full_step = torch.randn(3, generator=g) * 10
    theta, evaluate = categorical_setup()
    before = evaluate()[0]
    result = backtracking_line_search(evaluate, [theta], full_step, before, max_kl, backtrack_ratio=0.7,
                                      max_backtracks=6)
    surrogate, kl = evaluate()
    assert kl <= max_kl
    if result.accepted:
        assert surrogate > before
    else:  # reverted exactly
        assert torch.equal(theta.detach(), torch.zeros(3)) and result.kl == 0.0


def test_line_search_reverts_a_step_that_worsens_the_surrogate():
    theta, evaluate = categorical_setup()
    before = evaluate()[0]
    result = backtracking_line_search(evaluate, [theta], torch.tensor([-1e-3, 0.0, 0.0]), before, 0.01)
    assert not result.accepted and torch.equal(theta.detach(), torch.zeros(3))


def test_max_step_puts_the_quadratic_kl_on_the_boundary():
    f = torch.tensor([[2.0, 0.3], [0.3, 1.0]])
    x = torch.tensor([0.4, -1.2])
    s = max_step(x, f @ x, max_kl=0.02)
    assert float(0.5 * s @ f @ s) == pytest.approx(0.02)
    assert torch.equal(max_step(torch.zeros(2), torch.zeros(2), 0.02), torch.zeros(2))  # zero gradient: no step


# ---- sequences, log-probs, critic


def test_response_logprobs_match_each_sequence_run_alone():
    """Padding on both sides and position ids must not change any response token's log-prob."""
    model, batch = tiny_lm(lora=False), tiny_batch()
    logits, hidden = response_forward(model, batch, temperature=0.7, hidden=True)
    batched = token_logprobs(logits, batch.response_ids).detach()
    for row, (prompt, response) in enumerate([([5, 6, 7], [10, 11, 12]), ([8, 9], [13, 14])]):
        ids = torch.tensor([prompt + response])
        with torch.no_grad():
            alone = model(input_ids=ids).logits[0].float() / 0.7
        for t, token in enumerate(response):
            expected = alone[len(prompt) - 1 + t].log_softmax(-1)[token]
            assert float(batched[row, t]) == pytest.approx(float(expected), abs=1e-5)
    assert hidden.shape == (2, 3, 16)


def test_inserted_tokens_are_state_but_not_actions():
    batch = make_batch([[1, 2]], [[3, 4, 5, 6, 7]], pad_id=0, device="cpu", injected=[[(1, 3)]])
    assert batch.response_mask.tolist() == [[1, 1, 1, 1, 1]]
    assert batch.action_mask.tolist() == [[1, 0, 0, 1, 1]]
    assert batch.response_ids.tolist() == [[3, 4, 5, 6, 7]]


def test_head_critic_starts_at_zero_and_reads_the_policy_hidden_states():
    model, batch = tiny_lm(), tiny_batch()
    critic = Critic("head", model)
    _, hidden = response_forward(model, batch, 1.0, hidden=True)
    assert torch.equal(critic.values(batch, hidden), torch.zeros(2, 3))
    assert set(critic.trainable_state()) == {"head.weight", "head.bias"}
    torch.nn.init.ones_(critic.head.weight)
    values = critic.values(batch, hidden)
    assert float(values[1, 2]) == 0.0 and float(values[0, 2]) != 0.0  # padding stays 0


# ---- config errors


def compose(*overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose("train", list(overrides))


@pytest.mark.parametrize("algorithm", ["ppo", "trpo"])
def test_default_configs_pass_their_checks(algorithm):
    from reasoning_rl.algorithms import get_algorithm

    get_algorithm(algorithm).check_config(compose(f"algorithm={algorithm}"))
    get_algorithm(algorithm).check_config(compose(f"algorithm={algorithm}", "debug=smoke"))
    get_algorithm(algorithm).check_config(compose(f"algorithm={algorithm}", "hparams=gpu"))


@pytest.mark.parametrize("algorithm", ["ppo", "trpo"])
def test_every_typed_key_has_its_value_in_conf_only(algorithm):
    """schemas.py gives the types and no value; conf/algorithm/ gives every value: nothing is left unset."""
    import dataclasses

    from omegaconf import OmegaConf

    from reasoning_rl.algorithms.schemas import SCHEMAS

    keys = SCHEMAS[f"_{algorithm}_keys"]
    assert all(f.default == "???" for f in dataclasses.fields(keys))  # no second set of defaults
    cfg = compose(f"algorithm={algorithm}")
    assert OmegaConf.get_type(cfg.algorithm) is keys
    assert OmegaConf.missing_keys(cfg.algorithm) == set()
    assert set(cfg.algorithm) == {f.name for f in dataclasses.fields(keys)}


@pytest.mark.parametrize("override,problem", [("algorithm.clip_rang=0.3", "clip_rang"),
                                              ("algorithm.ppo_epochs=two", "ppo_epochs")])
def test_a_misspelt_or_mistyped_ppo_key_fails_while_composing(override, problem):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match=problem):
        compose("algorithm=ppo", override)
    compose("algorithm=ppo", "algorithm.clip_range=0.3", "algorithm.ppo_epochs=3")  # the right spellings compose


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["algorithm=trpo", "algorithm.max_kl=0"], "max_kl"),
        (["algorithm=trpo", "algorithm.max_kl=-0.01"], "max_kl"),
        (["algorithm=ppo", "algorithm.gamma=1.5"], "algorithm.gamma must be in [0, 1]"),
        (["algorithm=trpo", "algorithm.lam=-0.1"], "algorithm.lam must be in [0, 1]"),
        (["algorithm=ppo", "algorithm.critic=nope"], "algorithm.critic='nope'"),
        (["algorithm=ppo", "algorithm.critic_learning_rate=0"], "no trainable parameters"),
        (["algorithm=trpo", "algorithm.value_epochs=0"], "never train"),
        (["algorithm=ppo", "hparams.per_device_train_batch_size=8", "algorithm.minibatch_size=9"],
         "larger than the rollout batch"),
        (["algorithm=trpo", "hparams.per_device_train_batch_size=6"], "multiple of algorithm.num_generations"),
        (["algorithm=ppo", "algorithm.rewards=[correctness,nope]", "algorithm.reward_weights=[1,1]"], "nope"),
        (["algorithm=trpo", "algorithm.reward_weights=[1.0]"], "reward_weights"),
        (["algorithm=ppo", "+algorithm.no_such_option=1"], "no_such_option"),
        (["algorithm=ppo", "algorithm.clip_range=0"], "clip_range"),
        (["algorithm=trpo", "algorithm.backtrack_ratio=1"], "backtrack_ratio"),
        (["algorithm=ppo", "generation.temperature=0"], "temperature"),
    ],
)
def test_bad_configs_fail_with_one_clear_error(overrides, message):
    from reasoning_rl.algorithms import get_algorithm

    cfg = compose(*overrides)
    with pytest.raises(ConfigError, match=__import__("re").escape(message)):
        get_algorithm(cfg.algorithm.name).check_config(cfg)


def test_bad_config_ends_the_job_before_the_model_loads(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "reasoning_rl.train", "algorithm=trpo", "algorithm.max_kl=0", "logger=none",
         f"hydra.run.dir={tmp_path}/run"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: algorithm.max_kl")


# ---- checkpoints: on disk before COMPLETE, and resume past a damaged newest one


def tiny_ppo(tmp_path, keep=2):
    """A PPOTrainer around tiny_lm() with just what save_checkpoint / resume use (no rollout backend)."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from reasoning_rl.algorithms.ppo import PPOTrainer

    trainer = PPOTrainer.__new__(PPOTrainer)
    trainer.ctx = SimpleNamespace(checkpoint_dir=tmp_path / "checkpoints", run_dir=SimpleNamespace(main=True),
                                  cfg=OmegaConf.create({"checkpoint": {"keep": keep}}))
    trainer.policy = tiny_lm()
    trainer.device = trainer.policy.device
    trainer.critic = Critic("head", trainer.policy)
    params = [p for p in trainer.policy.parameters() if p.requires_grad] + list(trainer.critic.parameters())
    trainer.optimizer = torch.optim.AdamW(params, lr=0.1)
    trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda _: 1.0)
    trainer.state = {"global_step": 0}
    return trainer


def lora_weights(trainer):
    return {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if "lora_" in n}


def step_weights(trainer, value):
    with torch.no_grad():
        for name, p in trainer.policy.named_parameters():
            if "lora_" in name:
                p.fill_(value)


@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_ppo_checkpoint_reaches_the_disk_before_its_marker(tmp_path, monkeypatch):
    from tests.reliability.disk import assert_synced_before_marker, record_fsyncs

    trainer = tiny_ppo(tmp_path)
    synced = record_fsyncs(monkeypatch)
    trainer.save_checkpoint(1)
    assert_synced_before_marker(tmp_path / "checkpoints" / "checkpoint-1", synced)


@pytest.mark.parametrize("damage", ["truncated_optimizer", "garbled_critic", "trainer_state_not_json",
                                    "adapter_missing"])
@pytest.mark.reliability  # issue 16: crafted input, crash safety or secrets
def test_ppo_resume_falls_back_to_the_previous_checkpoint(damage, tmp_path, caplog):
    from reasoning_rl.errors import DataError

    trainer = tiny_ppo(tmp_path, keep=3)
    step_weights(trainer, 0.25)
    trainer.save_checkpoint(1)
    at_step_1 = lora_weights(trainer)
    step_weights(trainer, 0.5)
    trainer.save_checkpoint(2)
    newest = tmp_path / "checkpoints" / "checkpoint-2"
    if damage == "truncated_optimizer":
        data = (newest / "optimizer.pt").read_bytes()
        (newest / "optimizer.pt").write_bytes(data[: len(data) // 2])
    elif damage == "garbled_critic":
        (newest / "critic.safetensors").write_bytes(b"\x00" * 64)
    elif damage == "trainer_state_not_json":
        (newest / "trainer_state.json").write_text('{"global_step": 2')
    else:
        (newest / "adapter_model.safetensors").unlink()
    step_weights(trainer, 0.75)  # the weights of a run that went on

    with caplog.at_level("WARNING"):
        assert trainer.resume(newest) == 1
    assert str(newest) in caplog.text and "falling back" in caplog.text
    assert all(torch.equal(lora_weights(trainer)[n], w) for n, w in at_step_1.items())  # step 1's weights

    (tmp_path / "checkpoints" / "checkpoint-1" / "critic.safetensors").write_bytes(b"")
    with pytest.raises(DataError, match="no complete checkpoint"):  # not a silent restart from step 0
        trainer.resume(newest)


# ---- a step without reward signal


def test_only_scores_that_differ_or_a_kl_term_carry_a_signal():
    from reasoning_rl.algorithms.policy_gradient import has_signal

    assert not has_signal([0.0, 0.0, 0.0, 0.0], kl_coef=0.0)
    assert not has_signal([1.5, 1.5], kl_coef=0.0)  # every answer right is no signal either
    assert has_signal([0.0, 0.0, 1.0, 0.0], kl_coef=0.0)
    assert has_signal([0.0, 0.0], kl_coef=0.05)


@pytest.mark.parametrize("algorithm", ["ppo", "trpo"])
def test_a_step_without_signal_leaves_the_policy_where_it_was_and_trains_the_critic(algorithm):
    """Random advantages stand for the critic's errors that whitening blows up when every score is equal."""
    from reasoning_rl.algorithms.ppo import PPOConfig, PPOTrainer
    from reasoning_rl.algorithms.trpo import TRPOConfig, TRPOTrainer

    trainer_cls, config_cls = {"ppo": (PPOTrainer, PPOConfig), "trpo": (TRPOTrainer, TRPOConfig)}[algorithm]
    config = config_cls.from_cfg(compose(f"algorithm={algorithm}", "algorithm.num_generations=2", "algorithm.kl_coef=0",
                                         "algorithm.minibatch_size=2", "hparams.per_device_train_batch_size=2",
                                         "hparams.learning_rate=0.05"))

    def step(signal: bool) -> tuple[bool, bool]:
        trainer = trainer_cls.__new__(trainer_cls)
        trainer.config, trainer.policy, trainer.device, trainer.state = config, tiny_lm(), "cpu", {"global_step": 0}
        trainer.policy_params = [p for p in trainer.policy.parameters() if p.requires_grad]
        trainer.critic = Critic("head", trainer.policy)
        trainer.optimizer = trainer.build_optimizer()
        batch = tiny_batch()
        with torch.no_grad():
            logits, batch.hidden = response_forward(trainer.policy, batch, config.temperature, hidden=True)
            batch.old_logprobs = token_logprobs(logits, batch.response_ids) * batch.response_mask
            batch.values = trainer.critic.values(batch, batch.hidden)
        batch.advantages = torch.randn(batch.response_mask.shape, generator=torch.Generator().manual_seed(0))
        batch.advantages *= batch.action_mask
        batch.returns = torch.ones_like(batch.values) * batch.response_mask  # every sequence scored 1
        batch.has_signal = signal
        policy = {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if p.requires_grad}
        head = trainer.critic.head.bias.detach().clone()
        trainer.update(batch, step=1)
        moved = any(not torch.equal(policy[n], p) for n, p in trainer.policy.named_parameters() if p.requires_grad)
        return moved, not torch.equal(head, trainer.critic.head.bias)

    assert step(signal=False) == (False, True)
    assert step(signal=True)[0]  # the same batch with a signal does move the policy: the check can fail


@pytest.mark.parametrize("algorithm", ["ppo", "trpo"])
def test_critic_none_trains_the_policy_alone_with_zero_values(algorithm):
    """critic=none: V = 0, no critic parameters (TRPO: no optimizer at all), and a step with a signal still
    moves the policy while one without leaves everything as it was."""
    from reasoning_rl.algorithms.ppo import PPOConfig, PPOTrainer
    from reasoning_rl.algorithms.trpo import TRPOConfig, TRPOTrainer

    trainer_cls, config_cls = {"ppo": (PPOTrainer, PPOConfig), "trpo": (TRPOTrainer, TRPOConfig)}[algorithm]
    config = config_cls.from_cfg(compose(f"algorithm={algorithm}", "algorithm.critic=none", "algorithm.kl_coef=0",
                                         "algorithm.num_generations=2", "algorithm.minibatch_size=2",
                                         "hparams.per_device_train_batch_size=2", "hparams.learning_rate=0.05"))

    def step(signal: bool) -> bool:
        trainer = trainer_cls.__new__(trainer_cls)
        trainer.config, trainer.policy, trainer.device, trainer.state = config, tiny_lm(), "cpu", {"global_step": 0}
        trainer.policy_params = [p for p in trainer.policy.parameters() if p.requires_grad]
        trainer.critic = Critic("none", trainer.policy)
        assert trainer.critic.trainable == [] and not trainer.critic.reads_policy_hidden
        trainer.optimizer = trainer.build_optimizer()
        assert (trainer.optimizer is None) == (algorithm == "trpo")
        batch = tiny_batch()
        with torch.no_grad():
            logits, _ = response_forward(trainer.policy, batch, config.temperature)
            batch.old_logprobs = token_logprobs(logits, batch.response_ids) * batch.response_mask
            batch.values = trainer.critic.values(batch, None)
        assert torch.equal(batch.values, torch.zeros_like(batch.response_mask))
        batch.advantages = torch.randn(batch.response_mask.shape, generator=torch.Generator().manual_seed(0))
        batch.advantages *= batch.action_mask
        batch.returns = batch.advantages.clone()
        batch.has_signal = signal
        policy = {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if p.requires_grad}
        metrics = trainer.update(batch, step=1)
        assert metrics["value_loss"] == 0.0 or algorithm == "ppo"
        return any(not torch.equal(policy[n], p) for n, p in trainer.policy.named_parameters() if p.requires_grad)

    assert step(signal=True)  # the policy learns without a critic
    assert not step(signal=False)


def test_critic_none_checkpoints_round_trip(tmp_path):
    trainer = tiny_ppo(tmp_path)
    trainer.critic = Critic("none", trainer.policy)
    trainer.optimizer, trainer.scheduler = None, None  # as TRPO with critic=none has them
    step_weights(trainer, 0.3)
    trainer.save_checkpoint(1)
    saved = lora_weights(trainer)
    step_weights(trainer, 0.0)
    assert trainer.resume(tmp_path / "checkpoints" / "checkpoint-1") == 1
    assert all(torch.equal(saved[n], p) for n, p in lora_weights(trainer).items())
