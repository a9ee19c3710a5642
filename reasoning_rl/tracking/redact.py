"""Keep secrets out of everything a run writes: saved configs, overrides, provenance, W&B config.

Two nets: string values under keys that look secret (`*token*`, `*key*`, `*secret*`, `*password*`;
numbers such as `max_new_tokens` are not secrets), and the literal values of such environment
variables (`WANDB_API_KEY`, `HF_TOKEN`, …) wherever they appear in text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REDACTED = "<redacted>"
SECRET_KEY = re.compile(r"token|key|secret|passw", re.IGNORECASE)
# Key names that match the pattern but hold no secret.
_NOT_SECRET = {"eos_token", "pad_token", "bos_token", "unk_token"}
_MIN_SECRET_LEN = 8


def is_secret_key(key: str) -> bool:
    name = str(key).rsplit(".", 1)[-1].lstrip("+~")
    return bool(SECRET_KEY.search(name)) and name not in _NOT_SECRET


def env_secrets() -> list[str]:
    values = [v for k, v in os.environ.items() if is_secret_key(k) and len(v) >= _MIN_SECRET_LEN]
    return sorted(set(values), key=len, reverse=True)


def redact_text(text: str, secrets: list[str] | None = None) -> str:
    for value in env_secrets() if secrets is None else secrets:
        text = text.replace(value, REDACTED)
    return text


def redact_config(obj: Any, secrets: list[str] | None = None) -> Any:
    """A copy of a plain (nested dict/list) config with secret values replaced."""
    secrets = env_secrets() if secrets is None else secrets
    if isinstance(obj, Mapping):
        return {
            k: (REDACTED if is_secret_key(k) and isinstance(v, str) and v else redact_config(v, secrets))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [redact_config(v, secrets) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    return obj


def _secret_override_value(override: str) -> str | None:
    key, sep, value = override.partition("=")
    if sep and value and is_secret_key(key) and not re.fullmatch(r"-?\d+(\.\d+)?|null|true|false", value):
        return value
    return None


def override_secrets(overrides: list[str]) -> list[str]:
    """Values passed on the command line under secret-looking keys (`+logger.api_key=…`)."""
    return [v for v in map(_secret_override_value, overrides) if v and len(v) >= 4]


def redact_override(override: str) -> str:
    """`+logger.api_key=abc` -> `+logger.api_key=<redacted>`."""
    if _secret_override_value(override) is not None:
        return f"{override.partition('=')[0]}={REDACTED}"
    return redact_text(override)


def redact_hydra_dir(hydra_dir: Path) -> None:
    """Rewrite Hydra's saved config.yaml / hydra.yaml / overrides.yaml without secrets."""
    import yaml

    overrides_file = hydra_dir / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text()) or [] if overrides_file.exists() else []
    # Secret values also hide in derived strings such as hydra.job.override_dirname.
    secrets = sorted(set(env_secrets() + override_secrets(overrides)), key=len, reverse=True)
    for path in sorted(hydra_dir.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if path.name == "overrides.yaml":
            data = [redact_override(o) for o in data or []]
        else:
            data = redact_config(data, secrets)
            if path.name == "hydra.yaml":
                overrides = data.get("hydra", {}).get("overrides", {})
                for group in ("task", "hydra"):
                    overrides[group] = [redact_override(o) for o in overrides.get(group) or []]
        path.write_text(yaml.safe_dump(data, sort_keys=False))
