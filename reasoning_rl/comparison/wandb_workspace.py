"""Save the comparison as a W&B workspace view (optional; needs `pip install wandb-workspaces`,
W&B online and WANDB_API_KEY). Untested here: no W&B server is reachable from CI.

The view shows the compared runs only (by W&B run id, read from each run dir's `wandb_run_id`),
grouped by the config keys that differ between them, with one line panel per curve metric
(`eval/pass@K`, `eval/maj@K`, plus their CI bounds) against `train/global_step`.
"""

from __future__ import annotations

from reasoning_rl.errors import UserError
from reasoning_rl.tracking.tracker import STEP_METRIC


def save_workspace(target: str, comparison) -> str:
    """target: "ENTITY/PROJECT". Returns the view's URL."""
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
    except ImportError:
        raise UserError("--wandb-workspace needs the wandb-workspaces package: pip install wandb-workspaces") from None
    entity, sep, project = target.partition("/")
    if not (sep and entity and project):
        raise UserError(f"--wandb-workspace {target!r}: expected ENTITY/PROJECT")
    run_ids = [(r.path / "wandb_run_id").read_text().strip() for r in comparison.runs
               if (r.path / "wandb_run_id").is_file()]
    if not run_ids:
        raise UserError("none of the compared runs logged to W&B (no wandb_run_id in their run dirs)")

    panels = []
    for metric in comparison.curve_metrics:
        name = f"eval/{metric}"
        panels.append(wr.LinePlot(title=metric, x=STEP_METRIC, y=[name, f"{name}_ci_low", f"{name}_ci_high"]))
    workspace = ws.Workspace(
        entity=entity,
        project=project,
        name=f"compare {len(run_ids)} runs",
        sections=[ws.Section(name="Pass@K / maj@K", panels=panels, is_open=True)],
        settings=ws.WorkspaceSettings(x_axis=STEP_METRIC),
        runset_settings=ws.RunsetSettings(
            filters=[ws.Metric("ID").isin(run_ids)],
            groupby=[ws.Config(key) for key in comparison.keys if not key.startswith("checkpoint")][:3],
        ),
    )
    workspace.save()
    return workspace.url
