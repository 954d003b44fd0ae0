"""The bl2 command line with a training hook that sleeps SECONDS after every metrics row (rank 0), so that a test
can kill a run mid-way: `python tests/drivers/slow_bl2.py SECONDS <bl2 arguments>` (also as torchrun's script).
`slow_bl2.py --as-host NAME SECONDS ...`: socket.gethostname() says NAME (two "machines" of a sweep on one).
Test-only behaviour goes through the training loop's hooks; the loop itself reads no test setting."""

import inspect
import socket
import sys
import time

import bl2.distill.loop as loop
from bl2.cli import app

if sys.argv[1] == "--as-host":
    HOST = sys.argv[2]
    del sys.argv[1:3]
    socket.gethostname = lambda: HOST
SECONDS = float(sys.argv.pop(1))
_train = loop.train


def slow_train(*args, **kwargs):
    bound = inspect.signature(_train).bind(*args, **kwargs)
    bound.apply_defaults()
    bound.arguments["hooks"] = (*bound.arguments["hooks"], lambda row: time.sleep(SECONDS))
    return _train(*bound.args, **bound.kwargs)


loop.train = slow_train  # every command that trains imports loop.train when it runs
app(prog_name="bl2")
