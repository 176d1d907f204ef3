"""warmstart-dqn: warm-start rlpyt-format DQN snapshots on Atari and keep training."""

__version__ = "0.1.0"
