"""A real Ctrl-C in the middle of a training step, for the tests of both recipe families."""

import os
import signal

from transformers import TrainerCallback


class SendSignal(TrainerCallback):
    """Deliver a real SIGINT to this process in the middle of step ``step`` (as a Ctrl-C would)."""

    def __init__(self, step):
        self.step = step

    def on_optimizer_step(self, args, state, control, **kwargs):
        if state.global_step + 1 == self.step:  # global_step counts finished steps
            os.kill(os.getpid(), signal.SIGINT)
