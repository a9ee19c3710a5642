"""Keep secrets out of everything a run writes: saved configs, overrides, provenance, W&B config,
Hydra's multirun.yaml, submitit's sbatch scripts and logs.

Three nets:
- values (strings and numbers) under keys that name a secret: `api_key`, `HF_TOKEN`, `password`,
  `passwd`, `pwd`, `passphrase`, `authorization`, `auth`, `credentials`, `cookie`, `dsn`, …. The key's
  LAST word decides, so `max_new_tokens`, `tokenizer`, `num_key_value_heads`, `pad_token_id` or
  `eos_token` are not secrets;
- inside any text: `NAME=value` with such a NAME, the password of a URL (`https://user:pw@host`),
  `Bearer …` and `Authorization:` / `Cookie:` header values;
- the literal values of such environment variables (`WANDB_API_KEY`, `HF_TOKEN`, …) and of secret
  overrides, wherever they appear in text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from reasoning_rl.tracking.run_dir import is_main_process, write_text_atomic

REDACTED = "<redacted>"
# Words a secret's key ends in; also as the end of a run-together word (PGPASSWORD, hftoken, apikey).
_SECRET_WORDS = {"token", "key", "apikey", "secret", "password", "passwd", "pwd", "passphrase", "authorization",
                 "auth", "credential", "credentials", "cookie", "cookies", "dsn"}
_SECRET_ENDINGS = ("token", "apikey", "secret", "password", "passwd", "passphrase")
# Tokenizer special tokens: `<x>_token` names a piece of text, not a credential.
_SPECIAL_TOKENS = {"eos", "bos", "pad", "unk", "sep", "cls", "mask", "special", "think", "answer"}
# Environment variables whose names read like secrets but hold paths (the current directory).
_ENV_NOT_SECRET = {"PWD", "OLDPWD"}
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_MIN_ENV_SECRET_LEN = 8
_MIN_OVERRIDE_SECRET_LEN = 4
# `${oc.env:HF_TOKEN}` or `$HF_TOKEN` name where a secret lives; they are not the secret.
_REFERENCE = re.compile(r"\$\{[^}]*\}|\$\w+")
_NUMBER = re.compile(r"[-+]?\d+(\.\d+)?([eE][-+]?\d+)?")
_NOT_A_VALUE = {"", "null", "none", "true", "false", "~", REDACTED.lower()}

# Hydra's sweeps write `:` in an override as `\:` (https\://user\:pw@host).
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*\\?://[^\s:/@\\]*\\?:)([^\s@/]+)(?=@)")
_ASSIGNMENT = re.compile(r"([+~]?[A-Za-z_][\w.\-]*)=(\$\{[^}]*\}|\"[^\"]*\"|'[^']*'|[^\s,'\"\]})&;]+)")
_BEARER = re.compile(r"(\b[Bb]earer\s+)([A-Za-z0-9._~+/\-]+=*)")
_HEADER = re.compile(r"(?im)^(\s*(?:proxy-)?(?:authorization|cookie|set-cookie)\s*:\s*)(\S.*)$")


def is_secret_key(key: Any) -> bool:
    name = str(key).rsplit(".", 1)[-1].lstrip("+~-")
    words = [w.lower() for w in _WORDS.findall(name)]
    if not words:
        return False
    last = words[-1]
    if last == "token" and len(words) > 1 and words[-2] in _SPECIAL_TOKENS:
        return False
    return last in _SECRET_WORDS or last.endswith(_SECRET_ENDINGS)


def _is_secret_value(value: Any) -> bool:
    """What a secret key may hold that is worth hiding: text and numbers, not flags or references."""
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, str):
        text = value.strip().strip("'\"")
        return text.lower() not in _NOT_A_VALUE and not _REFERENCE.fullmatch(text)
    return False


def env_secrets() -> list[str]:
    values = [v for k, v in os.environ.items()
              if is_secret_key(k) and k not in _ENV_NOT_SECRET and len(v) >= _MIN_ENV_SECRET_LEN
              and not (os.path.isabs(v) and os.path.exists(v))]  # a credentials *file*: its path is no secret
    return sorted(set(values), key=len, reverse=True)


def _assignment(match: re.Match) -> str:
    name, value = match.group(1), match.group(2)
    if is_secret_key(name) and _is_secret_value(value):
        return f"{name}={REDACTED}"
    # `override_dirname=+logger.api_key=…`: the value may hold assignments of its own.
    return f"{name}={_ASSIGNMENT.sub(_assignment, value)}"


def redact_text(text: str, secrets: Sequence[str] | None = None) -> str:
    for value in env_secrets() if secrets is None else secrets:
        text = text.replace(value, REDACTED)
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED, text)
    text = _ASSIGNMENT.sub(_assignment, text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    return _HEADER.sub(lambda m: m.group(1) + REDACTED, text)


def redact_config(obj: Any, secrets: Sequence[str] | None = None) -> Any:
    """A copy of a plain (nested dict/list) config with secret values replaced."""
    secrets = env_secrets() if secrets is None else secrets
    if isinstance(obj, Mapping):
        return {k: (REDACTED if is_secret_key(k) and _is_secret_value(v) else redact_config(v, secrets))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_config(v, secrets) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    return obj


def _secret_override_value(override: str) -> str | None:
    key, sep, value = override.partition("=")
    if sep and is_secret_key(key) and _is_secret_value(value):
        return value
    return None


def override_secrets(overrides: Sequence[str]) -> list[str]:
    """Values passed on the command line under secret-looking keys (`+logger.api_key=…`), to find
    again in derived strings (hydra.job.override_dirname). Short ones and numbers would match
    unrelated text (`max_new_tokens=987654`); those are caught as `NAME=value` instead."""
    values = {v.strip("'\"") for v in map(_secret_override_value, overrides) if v}
    return sorted((v for v in values if len(v) >= _MIN_OVERRIDE_SECRET_LEN and not _NUMBER.fullmatch(v)),
                  key=len, reverse=True)


def redact_override(override: str, secrets: Sequence[str] | None = None) -> str:
    """`+logger.api_key=abc` -> `+logger.api_key=<redacted>`."""
    if _secret_override_value(override) is not None:
        return f"{override.partition('=')[0]}={REDACTED}"
    return redact_text(override, secrets)


def secrets_of(overrides: Sequence[str]) -> list[str]:
    return sorted(set(env_secrets() + override_secrets(overrides)), key=len, reverse=True)


def _redact_yaml_data(data: Any, name: str, secrets: Sequence[str]) -> Any:
    if name == "overrides.yaml":
        return [redact_override(str(o), secrets) for o in data or []]
    data = redact_config(data, secrets)
    hydra = data.get("hydra") if isinstance(data, dict) else None
    overrides = hydra.get("overrides") if isinstance(hydra, dict) else None
    if isinstance(overrides, dict):  # hydra.yaml, multirun.yaml: the command line, whole values
        for group in ("task", "hydra"):
            overrides[group] = [redact_override(str(o), secrets) for o in overrides.get(group) or []]
    return data


def _task_overrides(data: Any) -> list[str]:
    if isinstance(data, list):  # overrides.yaml
        return [str(o) for o in data]
    try:
        return [str(o) for o in data["hydra"]["overrides"]["task"] or []]
    except (KeyError, TypeError):
        return []


def redact_yaml_files(paths: Sequence[Path], extra_overrides: Sequence[str] = ()) -> None:
    """Rewrite Hydra YAML files without secrets (atomically: a crash never leaves half a config)."""
    import yaml

    loaded = {p: yaml.safe_load(p.read_text()) for p in paths if p.is_file()}
    overrides = [o for data in loaded.values() for o in _task_overrides(data)] + list(extra_overrides)
    # Secret values also hide in derived strings such as hydra.job.override_dirname.
    secrets = secrets_of(overrides)
    for path, data in loaded.items():
        redacted = _redact_yaml_data(data, path.name, secrets)
        if redacted != data:
            write_text_atomic(path, yaml.safe_dump(redacted, sort_keys=False))


def redact_hydra_dir(hydra_dir: Path) -> None:
    """Rewrite Hydra's saved config.yaml / hydra.yaml / overrides.yaml without secrets."""
    redact_yaml_files(sorted(hydra_dir.glob("*.yaml")))


def redact_text_file(path: Path, secrets: Sequence[str]) -> None:
    """A log or script rewritten without secrets (bytes that are not UTF-8 are kept as they were)."""
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    redacted = redact_text(text, secrets)
    if redacted != text:
        write_text_atomic(path, redacted, errors="surrogateescape")


def redact_hydra_outputs() -> None:
    """What Hydra saved for this job before any of our code ran: `.hydra/` of the run and, in a
    sweep, the sweep's `multirun.yaml`. Called first thing in the job, so a run that then fails its
    config check (or is killed) leaves no secret behind."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or not is_main_process():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.output_subdir is not None:
        hydra_dir = Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir
        if hydra_dir.is_dir():
            redact_hydra_dir(hydra_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        redact_yaml_files([Path(str(hydra_cfg.sweep.dir)) / "multirun.yaml"], list(hydra_cfg.overrides.task))
