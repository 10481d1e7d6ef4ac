"""``train_realciao.py``: train a real-world CiaoSR model.

    python train_realciao.py -opt options/quickstart.yml
    python train_realciao.py -opt options/train_realciaonet_edsr.yml --set data.batch_size=8 --auto-resume
    accelerate launch -q --multi_gpu --num_processes 8 --num_machines 1 --mixed_precision no \\
        --dynamo_backend no train_realciao.py -opt options/train_realciaonet_edsr.yml

Bad options, data or checkpoints, and every file or folder the options name, stop the run
before it starts, in one line naming the file and key (exit 2; under ``accelerate launch -q``
the line is the same and the launcher exits 1).
"""

from __future__ import annotations

import argparse
import sys

from realciao.cli import fail
from realciao.errors import RealciaoError
from realciao.logs import show_messages

PROG = "train_realciao.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-opt", "--options", required=True, help="options YAML file (see options/)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override an option, e.g. --set train.iterations=100 (repeatable)",
    )
    parser.add_argument(
        "--auto-resume", action="store_true", help="continue from the latest complete checkpoint"
    )
    parser.add_argument(
        "--allow-changed-options", action="store_true",
        help="resume although options that change the model or the data plan differ (recorded)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_messages()
    try:
        from realciao.train.config import load_config

        config = load_config(args.options, args.set)
        from realciao.train.trainer import Trainer, main_process_exit

        trainer = Trainer(
            config,
            auto_resume=args.auto_resume,
            config_path=args.options,
            allow_changed_options=args.allow_changed_options,
        )
        release = trainer.run()
    except RealciaoError as error:
        return fail(PROG, error)
    trainer.accelerator.print(f"done: release weights (EMA) at {release}")
    main_process_exit(trainer.world)
    return 0


if __name__ == "__main__":
    sys.exit(main())
