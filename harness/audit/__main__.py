"""``python -m harness.audit claims=FILE|thompson|epoch out_dir=DIR [on_error=skip] [measure=true]``."""
from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from common.hydra_cli import conf_dir, exit_on_bad_overrides, run_pipeline
from harness.audit.config import register_configs
from harness.errors import UserError

register_configs()


@hydra.main(version_base="1.3", config_path=str(conf_dir("audit")), config_name="audit")
def main(cfg: DictConfig) -> None:
    from harness.audit.pipeline import run

    out = run_pipeline(run, cfg, (UserError,))
    print("\n".join(out.summary))
    print(f"audited {len(out.rows)} claim(s), skipped {len(out.skipped)}, in {out.seconds:.1f} s; wrote "
          f"{len(out.files)} files to {cfg.out_dir} (report: {cfg.out_dir}/report.html)")


if __name__ == "__main__":
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    exit_on_bad_overrides("audit")
    main()
