"""User-facing errors: a bad config or input ends the job with one clear line, not a traceback."""

from __future__ import annotations

import functools
import signal
import sys


class UserError(Exception):
    """A problem the user can fix (bad config, missing weights, corrupt data). Printed as one line."""


class ConfigError(UserError):
    """An invalid combination of config values."""


class UnknownNameError(ConfigError, KeyError):
    """A registry miss (reasoning_rl/registry.py): callers may catch KeyError, while a job reports it in one
    line like any config error."""

    __str__ = Exception.__str__  # KeyError's would quote the message


class DataError(UserError):
    """A data file is missing, unreadable or fails its checksum."""


class ModelNotFoundError(UserError):
    """Model weights cannot be found locally or on the hub."""


def exit_on_user_error(main):
    """Wrap a job's entry point so that a UserError prints `error: ...` and exits with status 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            # Hydra saved the config, secrets included, before this line: rewrite it before anything
            # can fail, so a config error does not leave a secret in .hydra/ or multirun.yaml.
            from reasoning_rl.tracking.redact import redact_hydra_outputs

            redact_hydra_outputs()
            _check_added_keys(args[0] if args else kwargs.get("cfg"))
            return main(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        except Preempted as exc:
            print(f"preempted: {exc}", file=sys.stderr)
            sys.exit(Preempted.exit_code)

    return wrapper


def _check_added_keys(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from reasoning_rl.added_keys import check_added_keys

    if cfg is None or not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    check_added_keys(hydra_cfg.overrides.task, hydra_cfg.runtime.choices.keys(),
                     OmegaConf.to_container(cfg, resolve=False))


class Preempted(Exception):
    """The job saved a checkpoint after SIGTERM/SIGUSR2 and stopped; re-running it resumes."""

    exit_code = 3


class Terminated(SystemExit):
    """SIGTERM/SIGHUP where nothing saves a checkpoint: the job stops as failed (status.json says
    so, instead of staying `running`) and exits with 128 + the signal number, as a killed process would."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name}"
