"""Pass@K / maj@K curves during training: the evaluate job's evaluation at step 0, every
`eval.every_steps`, and at the end, logged against the training step."""

from __future__ import annotations

from collections.abc import Callable

from transformers import TrainerCallback


class EvalCurveCallback(TrainerCallback):
    def __init__(
        self,
        run_eval: Callable[[object, int], object],
        every_steps: int,
        step_offset: int = 0,
        preempted: Callable[[], bool] = lambda: False,
        at_start: bool = True,
    ):
        self.run_eval = run_eval  # (model, step) -> EvalResult; logs it
        self.every_steps = every_steps
        self.step_offset = step_offset
        self.preempted = preempted  # a preempted job has seconds to save, not minutes to evaluate
        self.last_step: int | None = None
        self.at_start = at_start

    def _eval(self, model, step: int) -> None:
        if step != self.last_step and not self.preempted():
            self.run_eval(model, step)
            self.last_step = step

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # A resumed run already logged the curve up to its checkpoint.
        if self.at_start and state.global_step == 0 and self.step_offset == 0:
            self._eval(model, 0)
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step + self.step_offset  # cumulative across ORPO rounds
        if self.every_steps and step % self.every_steps == 0:
            self._eval(model, step)
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._eval(model, state.global_step + self.step_offset)
        return control
