"""A run's results in lm-evaluation-harness's output format, for the tools that read lm-eval output.

Next to summary.json and samples.jsonl (which stay as they are) a finished evaluation writes

    results.json            lm-eval's aggregated results layout: "results" {task: {"pass@1,none": …,
                            "pass@1_stderr,none": …}}, "configs", "versions", "n-shot", "higher_is_better",
                            "n-samples", "config", "git_hash", "date", "model_name", …
    samples_<task>.jsonl    lm-eval's per-sample log: one row per problem (lm-eval's "doc"), its N
                            completions in "resps", the graded answers in "filtered_resps", and the
                            problem's metric values ("pass@1": …) under their names

Our metric names are lm-eval metric names with the filter "none" (`pass@8` → `pass@8,none`). The
task is the data set's name (reasoning-gym's task appended: `reasoning_gym_chain_sum`). lm-eval
names its files `results_<datetime>.json` and `samples_<task>_<datetime>.jsonl`; here the names are
fixed, like summary.json's, since a run dir holds one run.

The builders are pure functions of the summary, the sample records and the config; `write_lm_eval`
writes both files atomically.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from statistics import NormalDist
from typing import Any

from reasoning_rl.tracking.run_dir import RunDir, _jsonable, write_json_atomic, write_jsonl_atomic

FILTER = "none"  # lm-eval's name for "no filter pipeline": our graders' extraction is part of the metric
NOT_AVAILABLE = "N/A"  # what lm-eval writes for a stderr it cannot compute
RESULTS_NAME = "results.json"


def metric_key(name: str, filter_name: str = FILTER) -> str:
    """`pass@8` → `pass@8,none`: lm-eval's "metric,filter" key."""
    return f"{name},{filter_name}"


def stderr_key(name: str, filter_name: str = FILTER) -> str:
    """`pass@8` → `pass@8_stderr,none`."""
    return f"{name}_stderr,{filter_name}"


def samples_name(task: str) -> str:
    return f"samples_{task}.jsonl"


def task_name(dataset: Mapping[str, Any]) -> str:
    """The data set's name as an lm-eval task name (safe in a file name)."""
    name = str(dataset.get("name") or "unknown")
    sub = dataset.get("task")  # reasoning_gym: one data set name for many procedural tasks
    if isinstance(sub, str) and sub:
        name = f"{name}_{sub}"
    return re.sub(r"[^\w.-]", "_", name)


def stderr_from_ci(stat: Mapping[str, Any], confidence: float = 0.95) -> float | str:
    """A standard error for lm-eval's `_stderr` field, derived from our bootstrap CI.

    We do not keep a standard error: summary.json has the percentile-bootstrap interval
    [ci_low, ci_high] at `confidence`. Reading it as a normal interval mean ± z·se gives
    se = (ci_high - ci_low) / (2 z), z the normal quantile at (1 + confidence) / 2 (1.96 at 95 %).
    "N/A" (lm-eval's own marker) where there is no interval, or only one problem (a zero width
    that says nothing about the spread).
    """
    low, high, n = stat.get("ci_low"), stat.get("ci_high"), stat.get("n")
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)) or (isinstance(n, int) and n < 2):
        return NOT_AVAILABLE
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return (high - low) / (2 * z)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build_sample_rows(
    records: Sequence[Mapping[str, Any]],
    per_problem: Mapping[str, Sequence[float]],
    *,
    prompts: Sequence[str] | None = None,
    gen_kwargs: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """lm-eval per-sample rows from our samples.jsonl records: one row per problem, as lm-eval logs
    one row per doc when a task draws several completions of it (`repeats`).

    per_problem: metric name -> one value per record (evaluation.score_records), written into each
    row under the metric's name, so the rows' mean of a metric is its value in results.json.
    """
    if prompts is not None and len(prompts) != len(records):
        raise ValueError(f"{len(prompts)} prompts for {len(records)} records")
    for name, values in per_problem.items():
        if len(values) != len(records):
            raise ValueError(f"metric {name} has {len(values)} values for {len(records)} records")
    rows = []
    for index, record in enumerate(records):
        doc = {"id": record["id"], "gold": record["gold"]}
        target = record["gold"]
        prompt = prompts[index] if prompts is not None else None
        row: dict[str, Any] = {
            "doc_id": index,
            "doc": doc,
            "target": target,
            # One request of N completions: lm-eval's (context, generation kwargs) per request.
            "arguments": [[prompt, dict(gen_kwargs or {})]] if prompt is not None else [],
            "resps": [list(record["completions"])],
            # The grader's extracted answers: what the metrics score (lm-eval's filter output).
            "filtered_resps": [list(record["extracted"])],
            "filter": FILTER,
            "metrics": list(per_problem),
            "doc_hash": _hash(json.dumps(doc, indent=2, ensure_ascii=False, default=_jsonable)),
            "prompt_hash": _hash(prompt) if prompt is not None else None,
            "target_hash": _hash(str(target)),
        }
        row.update({name: _jsonable(values[index]) for name, values in per_problem.items()})
        rows.append(row)
    return rows


def build_results(
    summary: Mapping[str, Mapping[str, Any]],
    *,
    task: str,
    confidence: float = 0.95,
    config: Mapping[str, Any] | None = None,
    task_config: Mapping[str, Any] | None = None,
    n_shot: int = 0,
    version: Any = None,
    model_name: str | None = None,
    git_hash: str | None = None,
    date: float | None = None,
    rows: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """lm-eval's results dict for one task from our summary (metric -> {mean, ci_low, ci_high, n}).

    Each metric is `"<name>,none": mean` and `"<name>_stderr,none"` (stderr_from_ci); the CI itself
    stays in configs[task]["metadata"]["ci"]. rows (build_sample_rows) give lm-eval's task hash.
    """
    metrics: dict[str, Any] = {"alias": task}
    for name, stat in summary.items():
        metrics[metric_key(name)] = _jsonable(stat.get("mean"))
        metrics[stderr_key(name)] = stderr_from_ci(stat, confidence)
    n = next((stat["n"] for stat in summary.values() if isinstance(stat.get("n"), int)), len(rows or []))
    task_cfg = {
        "task": task,
        "output_type": "generate_until",
        "num_fewshot": n_shot,
        "metric_list": [{"metric": name, "aggregation": "mean", "higher_is_better": True} for name in summary],
        **(task_config or {}),
    }
    task_cfg["metadata"] = {
        **(task_cfg.get("metadata") or {}),
        "version": version,
        "stderr": f"(ci_high - ci_low) / (2 * {NormalDist().inv_cdf(0.5 + confidence / 2):.4f}), "
                  f"from the {confidence:g} percentile-bootstrap CI",
        "confidence": confidence,
        "ci": {name: [_jsonable(stat.get("ci_low")), _jsonable(stat.get("ci_high"))] for name, stat in summary.items()},
    }
    results: dict[str, Any] = {
        "results": {task: metrics},
        "group_subtasks": {task: []},
        "configs": {task: task_cfg},
        "versions": {task: version},
        "n-shot": {task: n_shot},
        "higher_is_better": {task: {name: True for name in summary}},
        # We only know the problems scored (after dataset.limit), so original = effective.
        "n-samples": {task: {"original": n, "effective": n}},
        "config": dict(config or {}),
        "git_hash": git_hash,
        "date": date if date is not None else time.time(),
        "model_name": model_name,
        "model_name_sanitized": re.sub(r"[\"<>:/|\\?*\[\]]+", "__", model_name) if model_name else None,
    }
    if rows:
        results["task_hashes"] = {
            task: _hash("".join(f"{r['doc_hash']}{r.get('prompt_hash') or ''}{r['target_hash']}" for r in rows))}
    return results


def _start_time(provenance: Mapping[str, Any]) -> float | None:
    try:
        return datetime.strptime(str(provenance["started_at"]), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except (KeyError, ValueError):
        return None


def lm_eval_outputs(
    cfg: Mapping[str, Any],
    summary: Mapping[str, Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
    *,
    dataset: Mapping[str, Any] | None = None,
    prompts: Sequence[str] | None = None,
    adapter: str | Path | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """(task, results dict, per-sample rows) of one evaluation from the job's config.

    dataset: the data set evaluated on (default cfg.dataset; the train job passes its eval set).
    adapter: the LoRA adapter scored on top of cfg.model (evaluate checkpoint=…, a train run's own).
    """
    from reasoning_rl.evaluation import score_records  # the same per-problem scores summary.json averages

    dataset = dataset if dataset is not None else cfg["dataset"]
    eval_cfg, gen, model = cfg["eval"], cfg["generation"], cfg["model"]
    boot = eval_cfg.get("bootstrap") or {}
    confidence = boot.get("confidence", 0.95)
    task = task_name(dataset)
    gen_kwargs = {"max_gen_toks": gen.get("max_new_tokens"), "temperature": gen.get("temperature"),
                  "top_p": gen.get("top_p"), "top_k": gen.get("top_k"), "until": list(gen.get("stop_strings") or []),
                  "do_sample": (gen.get("temperature") or 0) > 0}
    per_problem = score_records(records, list(eval_cfg["ks"]), eval_cfg.get("estimator", "subsets"))
    rows = build_sample_rows(records, per_problem, prompts=prompts, gen_kwargs=gen_kwargs)

    model_args = [f"pretrained={model.get('name_or_path')}"]
    model_args += [f"{key}={model[key]}" for key in ("revision", "dtype", "trust_remote_code")
                   if model.get(key) is not None]
    if adapter:
        folder = Path(adapter)
        if (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
            model_args[0] = f"pretrained={adapter}"  # peft=none: the train job saved the whole model there
        else:
            model_args.append(f"peft={adapter}")
    provenance = provenance or {}
    seed = cfg.get("seed")
    config = {
        "model": gen.get("backend"),
        "model_args": ",".join(model_args),
        "batch_size": gen.get("batch_size"),
        "batch_sizes": [],
        "device": None,
        "use_cache": None,
        "limit": dataset.get("limit"),
        "bootstrap_iters": boot.get("n_resamples", 1000),
        "gen_kwargs": gen_kwargs,
        "random_seed": seed, "numpy_seed": seed, "torch_seed": seed, "fewshot_seed": seed,
    }
    task_config = {
        "dataset_path": dataset.get("hub_id") or dataset.get("path") or dataset.get("name"),
        "dataset_name": dataset.get("hub_config") or dataset.get("task"),
        "test_split": dataset.get("split"),
        "repeats": eval_cfg.get("num_samples"),
        "generation_kwargs": gen_kwargs,
        "metadata": {"estimator": eval_cfg.get("estimator", "subsets"), "ks": list(eval_cfg["ks"]),
                     "grader": dataset.get("grader"), "job": cfg.get("job_name")},
    }
    version = (provenance.get("packages") or {}).get("reasoning-rl")
    results = build_results(
        summary, task=task, confidence=confidence, config=config, task_config=task_config,
        n_shot=dataset.get("few_shot") or 0, version=version,
        model_name=str(model.get("name_or_path")), git_hash=(provenance.get("git") or {}).get("sha"),
        date=_start_time(provenance), rows=rows,
    )
    return task, results, rows


def write_lm_eval(run_dir: RunDir, cfg: Mapping[str, Any], summary: Mapping[str, Mapping[str, Any]],
                  records: Sequence[Mapping[str, Any]], **options: Any) -> list[Path]:
    """results.json and samples_<task>.jsonl in the run dir, atomically; call before write_summary,
    so summary.json stays the last file written. options: lm_eval_outputs's keywords."""
    if not run_dir.main:
        return []
    path = run_dir.path / "provenance.json"
    provenance = json.loads(path.read_text()) if path.is_file() else {}
    task, results, rows = lm_eval_outputs(cfg, summary, records, provenance=provenance, **options)
    samples_path = run_dir.path / samples_name(task)
    write_jsonl_atomic(samples_path, rows)
    write_json_atomic(run_dir.path / RESULTS_NAME, results)
    return [run_dir.path / RESULTS_NAME, samples_path]
