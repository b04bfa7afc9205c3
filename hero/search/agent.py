"""DDPG (Lillicrap et al.) as HAQ uses it: actor, critic, target networks, replay buffer,
truncated-normal exploration that decays after random warm-up episodes, a moving-average baseline."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

#: The levelled warm-up's spread of a unit's action around its episode's level: about one bit.
LEVELLED_WARMUP_SPREAD = 0.15


@dataclass
class DDPGConfig:
    hidden: int = 300
    lr_actor: float = 1e-4
    lr_critic: float = 1e-3
    tau: float = 0.01
    discount: float = 1.0
    batch: int = 64
    buffer: int = 2000
    warmup: int = 20  # episodes of random actions
    # Warm-up actions: None, HAQ's independent U(0, 1) per unit; or levelled: per episode a level drawn
    # from U(0, 1), each unit's action normal around it with this spread, clipped to [0, 1]
    # (LEVELLED_WARMUP_SPREAD; docs/search.md measures both).
    warmup_spread: float | None = None
    sigma: float = 0.5  # exploration noise at the end of warm-up
    sigma_decay: float = 0.99  # per episode after warm-up
    baseline_decay: float = 0.95  # moving-average reward baseline
    updates_per_episode: int = 20


def mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_out))


class DDPG:
    def __init__(self, obs_dim: int, cfg: DDPGConfig, seed: int):
        self.cfg = cfg
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.actor = nn.Sequential(mlp(obs_dim, cfg.hidden, 1), nn.Sigmoid())
        self.critic = mlp(obs_dim + 1, cfg.hidden, 1)
        self.actor_target, self.critic_target = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr_actor)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr_critic)
        self.buffer: list[tuple] = []
        self.baseline: float | None = None
        self._warm: tuple[int, float] | None = None  # (episode, its warm-up level)

    def sigma(self, episode: int) -> float:
        return self.cfg.sigma * self.cfg.sigma_decay ** max(0, episode - self.cfg.warmup)

    def act(self, obs: np.ndarray, episode: int, explore: bool = True) -> float:
        if explore and episode < self.cfg.warmup:
            if self.cfg.warmup_spread is None:
                return float(self.rng.uniform(0.0, 1.0))
            if self._warm is None or self._warm[0] != episode:
                self._warm = (episode, float(self.rng.uniform(0.0, 1.0)))
            return float(np.clip(self.rng.normal(self._warm[1], self.cfg.warmup_spread), 0.0, 1.0))
        with torch.no_grad():
            a = float(self.actor(torch.from_numpy(obs)[None])[0, 0])
        if explore:  # truncated normal around the actor's action, within [0, 1]
            sigma = self.sigma(episode)
            for _ in range(100):
                x = self.rng.normal(a, sigma)
                if 0.0 <= x <= 1.0:
                    return float(x)
            return float(np.clip(a, 0.0, 1.0))
        return a

    def remember(self, transitions: list[tuple], reward: float) -> float:
        """HAQ: the episode's reward, less the moving-average baseline, for every transition of it."""
        if self.baseline is None:
            self.baseline = reward
        advantage = reward - self.baseline
        self.baseline = self.cfg.baseline_decay * self.baseline + (1 - self.cfg.baseline_decay) * reward
        for obs, a, next_obs, done in transitions:
            self.buffer.append((obs, a, advantage, next_obs, float(done)))
        del self.buffer[:-self.cfg.buffer]
        return advantage

    def update(self) -> dict:
        cfg = self.cfg
        if len(self.buffer) < cfg.batch:
            return {}
        stats = {"critic": 0.0, "actor": 0.0}
        for _ in range(cfg.updates_per_episode):
            idx = self.rng.integers(0, len(self.buffer), cfg.batch)
            obs, a, r, nxt, done = (torch.tensor(np.array(col), dtype=torch.float32)
                                    for col in zip(*(self.buffer[i] for i in idx), strict=True))
            a, r, done = a[:, None], r[:, None], done[:, None]
            with torch.no_grad():
                q_next = self.critic_target(torch.cat([nxt, self.actor_target(nxt)], -1))
                target = r + cfg.discount * (1 - done) * q_next
            q = self.critic(torch.cat([obs, a], -1))
            loss_c = ((q - target) ** 2).mean()
            self.opt_critic.zero_grad()
            loss_c.backward()
            self.opt_critic.step()
            loss_a = -self.critic(torch.cat([obs, self.actor(obs)], -1)).mean()
            self.opt_actor.zero_grad()
            loss_a.backward()
            self.opt_actor.step()
            for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                for p, pt in zip(net.parameters(), tgt.parameters(), strict=True):
                    pt.data.mul_(1 - cfg.tau).add_(cfg.tau * p.data)
            stats["critic"] += float(loss_c.detach()) / cfg.updates_per_episode
            stats["actor"] += float(loss_a.detach()) / cfg.updates_per_episode
        return stats

    def state_dict(self) -> dict:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "actor_target": self.actor_target.state_dict(), "critic_target": self.critic_target.state_dict(),
                "opt_actor": self.opt_actor.state_dict(), "opt_critic": self.opt_critic.state_dict(),
                "buffer": self.buffer, "baseline": self.baseline, "rng": self.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(), "warm": self._warm}

    def load_state_dict(self, st: dict) -> None:
        for name in ("actor", "critic", "actor_target", "critic_target", "opt_actor", "opt_critic"):
            getattr(self, name).load_state_dict(st[name])
        self.buffer, self.baseline = st["buffer"], st["baseline"]
        self.rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        self._warm = st.get("warm")
