"""``python tests/training/slow_train.py SECONDS embtune-args...``: the CLI with a pause after every
step (a step callback injected from the test side), so a test can interrupt a run mid-way."""

from __future__ import annotations

import sys
import time

from embtune.training import trainer

_init = trainer.Trainer.__init__


def _slow_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.callbacks.append(lambda _t: time.sleep(float(sys.argv[1])))


trainer.Trainer.__init__ = _slow_init

if __name__ == "__main__":
    from embtune.cli import main

    sys.exit(main(sys.argv[2:]))
