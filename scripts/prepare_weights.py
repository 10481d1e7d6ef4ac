"""Fill a weights folder for offline evaluation (run on a machine with internet):

    python scripts/prepare_weights.py ~/iqa-weights --metrics niqe,brisque,piqe,lpips

then copy the folder to the offline machine and pass ``realciao-eval --weights-dir`` (or set
``REALCIAO_WEIGHTS_DIR``). Same as ``realciao-eval --download-weights DIR``.
"""

from __future__ import annotations

import sys

from realciao.metrics.iqa import prepare_main

if __name__ == "__main__":
    sys.exit(prepare_main())
