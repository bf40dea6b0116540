"""One task as a Gymnasium-style environment with the customer inside, for RL stacks: `make` (sync) and
`make_async`; `reset(seed)`, `step(assistant_message)`, `fork()`. See `josh.gym.env` for the exact rules
(observations, rewards, termination)."""

from josh.gym.checker import check_gym_env
from josh.gym.env import AsyncChatEnv, ChatEnv, assistant_message
from josh.gym.make import gym_tasks, make, make_async

__all__ = ["AsyncChatEnv", "ChatEnv", "assistant_message", "check_gym_env", "gym_tasks", "make", "make_async"]
