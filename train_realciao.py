"""Train a real-world CiaoSR model.

    accelerate launch train_realciao.py -opt options/quickstart.yml
    accelerate launch train_realciao.py -opt options/train_realciaonet_edsr.yml --set data.batch_size=8
    accelerate launch train_realciao.py -opt options/train_realciaonet_edsr.yml --auto-resume

Plain ``python train_realciao.py ...`` also works on one process.
"""

from __future__ import annotations

import argparse
import sys

from realciao.train.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-opt", "--options", required=True, help="options YAML file (see options/)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override an option, e.g. --set train.iterations=100 (repeatable)")
    parser.add_argument("--auto-resume", action="store_true", help="continue from the latest checkpoint of this run")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.options, args.set)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    from realciao.checkpoint import CheckpointError
    from realciao.degradations import RecipeError
    from realciao.train.data import DataError
    from realciao.train.losses import WeightsMissingError
    from realciao.train.trainer import Trainer, TrainingError, main_process_exit

    try:
        trainer = Trainer(config, auto_resume=args.auto_resume, config_path=args.options)
        release = trainer.run()
    except (TrainingError, DataError, WeightsMissingError, CheckpointError, RecipeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    trainer.accelerator.print(f"done: release weights (EMA) at {release}")
    main_process_exit(trainer.world)
    return 0


if __name__ == "__main__":
    sys.exit(main())
