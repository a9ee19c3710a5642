"""ORPO (Hong et al. 2024) on the model's own answers, in rounds: the source article's recipe.

Each round: take `problems_per_round` training problems (a seeded slice that moves on every round
and wraps around), sample `samples_per_problem` answers per problem from the current model, grade
them, pair a correct answer (chosen) with an incorrect one (rejected) wherever a problem has both,
and train TRL's ORPOTrainer on those pairs, continuing from the current adapter. ORPO's loss is the
chosen answer's NLL plus `beta` x a log-odds-ratio term that pushes the chosen above the rejected;
there is no reference model. `hparams.max_steps` / `num_train_epochs` apply to each round.

Checkpoints: round r trains in checkpoints/round-r/ (its own checkpoint-*), keeps its pairs there,
and ends with round-r/final/ (the weights after the round) plus a COMPLETE marker. A re-run skips
finished rounds, loads the last final weights and resumes the unfinished round from its newest
complete checkpoint, on the same pairs (checkpoint.resume=never deletes a round's old folder instead).
Curves and logs use the optimizer step summed over rounds.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import warnings
from pathlib import Path

from datasets import Dataset
from omegaconf import DictConfig

from reasoning_rl.algorithms.base import register_algorithm
from reasoning_rl.algorithms.common import TrainContext, trainer_kwargs
from reasoning_rl.algorithms.self_samples import CHOSEN, build_pairs, read_rows, sample_and_grade, write_rows
from reasoning_rl.checkpointing import COMPLETE_MARKER, latest_loadable_checkpoint, load_weights, mark_complete
from reasoning_rl.data.base import Problem
from reasoning_rl.errors import ConfigError, UserError

with warnings.catch_warnings():  # "trl.experimental APIs may change": pinned TRL, checked by the tests
    warnings.simplefilter("ignore")
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

log = logging.getLogger(__name__)


def check_config(cfg: DictConfig) -> None:
    algo = cfg.algorithm
    for key, least in (("rounds", 1), ("problems_per_round", 1), ("samples_per_problem", 2)):
        value = algo.get(key)
        if not isinstance(value, int) or value < least:
            why = (": a pair needs a correct and an incorrect answer to one problem"
                   if key == "samples_per_problem" else "")
            raise ConfigError(f"algorithm.{key} must be an integer >= {least}, got {value!r}{why}")
    chosen = algo.get("chosen", "self")
    if chosen not in CHOSEN:
        raise ConfigError(f"algorithm.chosen={chosen!r} is not one of {list(CHOSEN)}")
    trainer_kwargs(ORPOConfig, cfg, Path("unused"))  # unknown or invalid hparams/args fail here, before loading


def round_problems(problems: list[Problem], round_: int, per_round: int, seed: int) -> list[Problem]:
    """Round r's problems: the r-th consecutive slice of one seeded shuffle, wrapping around."""
    order = list(range(len(problems)))
    random.Random(seed).shuffle(order)
    k = min(per_round, len(problems))
    return [problems[order[((round_ - 1) * k + i) % len(order)]] for i in range(k)]


def save_round(final: Path, model, round_: int, global_step: int) -> None:
    """A round's weights in round-r/final/, marked COMPLETE only once they are on disk."""
    model.save_pretrained(final)
    (final / "round.json").write_text(json.dumps({"round": round_, "global_step": global_step}))
    mark_complete(final)


def round_pairs(ctx: TrainContext, round_: int, round_dir: Path, resume: bool) -> tuple[list[dict], dict | None]:
    """This round's preference pairs and their counts: sampled and graded now, or read back (counts
    None) when resuming the round, so a resumed round trains on the same pairs."""
    cfg, algo = ctx.cfg, ctx.cfg.algorithm
    path = round_dir / "pairs.json"
    saved = read_rows(path) if resume else None
    if saved:
        return saved[0], None
    problems = round_problems(ctx.train_problems, round_, algo.problems_per_round, cfg.seed)
    graded = sample_and_grade(ctx, problems, algo.samples_per_problem, seed=cfg.seed + round_)
    chosen = algo.get("chosen", "self")
    if chosen != "self" and any(not p.solution for p in problems):
        raise UserError(f"algorithm.chosen={chosen}: data set {cfg.dataset.name!r} has no reference solutions; "
                        "use algorithm.chosen=self")
    rows, stats = build_pairs(graded, seed=cfg.seed + round_, chosen=chosen)
    log.info("ORPO round %d: %d pairs (%d with the reference solution as chosen); %d/%d problems with a correct "
             "answer; sample accuracy %.3f", round_, stats["pairs"], stats["pairs_gold_chosen"],
             stats["problems_with_correct"], stats["problems"], stats["sample_accuracy"])
    if not rows:
        raise UserError(
            f"ORPO round {round_}: no preference pairs (chosen={chosen}) "
            f"({stats['problems_with_correct']}/{stats['problems']} had any correct, "
            f"{stats['problems_all_correct']}/{stats['problems']} all correct, "
            f"{algo.samples_per_problem} samples each): "
            + ("pairs need both: use algorithm.chosen=self_then_gold, more samples_per_problem, a larger "
               "problems_per_round, or SFT first" if chosen == "self"
               else "every sample was correct: use harder problems")
        )
    if ctx.run_dir.main:
        write_rows(path, rows, stats)
    return rows, stats


def train(ctx: TrainContext) -> None:
    cfg, algo = ctx.cfg, ctx.cfg.algorithm
    # ctx.resume_from looks at checkpoints/ itself; ORPO's checkpoints live in checkpoints/round-r/.
    resume = cfg.checkpoint.resume == "auto"
    steps_done = 0  # optimizer steps of the finished rounds: the x-axis offset of this round
    finished = None
    for round_ in range(1, algo.rounds + 1):
        round_dir = ctx.checkpoint_dir / f"round-{round_}"
        final = round_dir / "final"
        if resume and (final / COMPLETE_MARKER).exists():
            steps_done += json.loads((final / "round.json").read_text())["global_step"]
            finished = final
            continue
        if finished is not None:  # the first unfinished round starts from the last finished one
            log.info("ORPO: rounds up to %s done, continuing from its weights", finished.parent.name)
            load_weights(ctx.model, finished)
            finished = None
        # checkpoint.resume=never starts over: no stale markers
        if not resume and round_dir.exists() and ctx.run_dir.main:
            shutil.rmtree(round_dir)

        callbacks = ctx.callbacks(step_offset=steps_done)  # also arms the preemption handler
        pairs, stats = round_pairs(ctx, round_, round_dir, resume)
        if stats is not None:  # freshly sampled: log the round's data once
            ctx.tracker.log({
                "train/orpo_round": round_,
                "train/orpo_pairs": stats["pairs"],
                "train/orpo_problems_with_correct": stats["problems_with_correct"],
                "train/orpo_sample_accuracy": stats["sample_accuracy"],
                "train/orpo_pairs_gold_chosen": stats["pairs_gold_chosen"],
            }, step=steps_done)
        if ctx.preempted:
            return

        trainer = ORPOTrainer(
            model=ctx.model,
            args=trainer_kwargs(ORPOConfig, cfg, round_dir, remove_unused_columns=False),  # its collator needs them
            train_dataset=Dataset.from_list(pairs),
            processing_class=ctx.tokenizer,
            callbacks=callbacks,
        )
        checkpoint = latest_loadable_checkpoint(round_dir) if resume else None
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        if ctx.preempted:
            return
        if ctx.run_dir.main:  # in a multi-process job every rank holds the same weights
            save_round(final, ctx.model, round_, trainer.state.global_step)
        steps_done += trainer.state.global_step

    if finished is not None:  # every round was already done: the final weights, evaluated at the last step
        load_weights(ctx.model, finished)
    if steps_done not in ctx.eval_results:
        ctx.run_eval(ctx.model, steps_done)


register_algorithm("orpo", check_config=check_config)(train)
