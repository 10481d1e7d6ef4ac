"""Fill a weights folder for offline evaluation (run on a machine with internet):

    python scripts/prepare_weights.py ~/iqa-weights --metrics niqe,brisque,piqe,lpips

then copy the folder to the offline machine and pass ``realciao-eval --weights-dir`` (or set
``REALCIAO_WEIGHTS_DIR``). Same as ``realciao-eval --download-weights DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realciao.metrics.iqa import prepare_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(prepare_main())
