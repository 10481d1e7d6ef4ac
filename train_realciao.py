"""Train a real-world CiaoSR model: ``accelerate launch train_realciao.py -opt options/FILE.yml``.

The command lives in ``realciao.cli.train``; see ``--help``.
"""

import sys

from realciao.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
