"""Memory: peak RSS of GRPO training (embedded SmolLM2-135M, LoRA) at the smoke and demo sizes, as a
ratio to the same process that only loads the model and wraps it in LoRA (psutil polling of the whole
process tree every 0.2 s).

    python -m bench.memory [--small]     # --small: smoke size only
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench.common import parser, python_module, require_ok, run_watched, table, write_result

LOAD_ONLY = """
from omegaconf import OmegaConf
from reasoning_rl import models
cfg = OmegaConf.load('conf/model/smollm2_135m.yaml')
model, tokenizer = models.load_model_and_tokenizer(cfg)
models.apply_peft(model, OmegaConf.load('conf/peft/lora.yaml'))
"""

SIZES = {
    # debug=smoke as it is: 2 GRPO steps of 4 completions, 24 new tokens, evals of 4 problems x 8.
    "smoke": ["debug=smoke"],
    # The demo (experiment=demo) cut to 1 step, and to 8 eval problems: 64 sequences, its largest eval batch.
    "demo_1_step": ["experiment=demo", "hparams.max_steps=1", "eval.limit=8"],
}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    args = p.parse_args()
    sizes = {k: v for k, v in SIZES.items() if k == "smoke" or not args.small}
    runs = {}
    baseline = run_watched([sys.executable, "-c", LOAD_ONLY], timeout=600)
    require_ok(baseline, "load-only baseline")
    runs["load_model_and_lora"] = {"peak_rss_bytes": baseline["peak_rss_bytes"], "seconds": baseline["seconds"]}
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in sizes.items():
            run = run_watched(python_module("reasoning_rl.train", *overrides, "logger=none",
                                            "checkpoint.every_steps=100000", f"hydra.run.dir={Path(tmp) / name}"),
                              timeout=3600)
            require_ok(run, f"train {name}")
            runs[name] = {"overrides": overrides, "peak_rss_bytes": run["peak_rss_bytes"], "seconds": run["seconds"]}
            print(f"{name}: {run['peak_rss_bytes'] / 2**30:.2f} GiB in {run['seconds']:.0f} s", flush=True)
    base = runs["load_model_and_lora"]["peak_rss_bytes"]
    ratios = {f"{name}_vs_load_only": r["peak_rss_bytes"] / base for name, r in runs.items() if name in sizes}
    print("\npeak RSS, GRPO with LoRA on the embedded SmolLM2-135M")
    print(table([(name, r["peak_rss_bytes"] / base, round(r["peak_rss_bytes"] / 2**30, 2)) for name, r in runs.items()],
                ["run", "vs load-only", "GiB"]))
    path = write_result("memory", {"runs": runs, "ratios": ratios, "small": args.small,
                                   "notes": ["no goal was set; recorded for capacity planning"]}, args.out)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
