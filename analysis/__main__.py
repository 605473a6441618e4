"""``python -m analysis literature.root=DIR results.root=DIR out_dir=DIR``.

Hydra composes ``conf/analysis/analysis.yaml`` onto :class:`analysis.config.AnalysisConfig`, so
unknown keys and wrong types fail before anything runs; bad numbers and an unwritable ``out_dir``
fail next, before any work. Bad data fail with one line naming file, row and key (or, with
``strict=false``, bad run files are skipped with one warning line each).
"""
from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from analysis.config import register_configs
from common.hydra_cli import conf_dir, exit_on_bad_overrides, run_pipeline
from analysis.errors import AnalysisError

register_configs()


@hydra.main(version_base="1.3", config_path=str(conf_dir("analysis")), config_name="analysis")
def main(cfg: DictConfig) -> None:
    from analysis.pipeline import run  # heavy imports only once the config is known to be good

    out = run_pipeline(run, cfg, (AnalysisError,))
    if cfg.summary:
        print("\n".join(out.summary))
    print(f"wrote {len(out.files)} files to {cfg.out_dir} in {out.seconds:.1f} s "
          f"(report: {cfg.out_dir}/report.html)")
    stages = ", ".join(f"{name.replace('_', ' ')} {seconds:.1f} s" for name, seconds in out.stage_seconds.items())
    print(f"time: {stages}; figures {out.figures_drawn} drawn, {out.figures_cached} from the cache "
          f"({cfg.cache_dir}/figures)")


if __name__ == "__main__":
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    exit_on_bad_overrides("analysis")
    main()
