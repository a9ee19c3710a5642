"""reasoning-rl: train LLMs to reason with RL and measure whether it worked."""

__version__ = "0.1.0"
