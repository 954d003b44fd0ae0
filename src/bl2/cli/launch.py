"""`bl2-torchrun`: torchrun with bl2's error policy. Same arguments as `torchrun` (it calls torchrun's own parser
and launcher). Plain torchrun ends every failed job with a Python traceback of its own and exit code 1, even when
the failure was a user mistake that bl2 has already explained in one line; here the job ends with the exit code
of the first rank that failed (2 for a user mistake, 1 for a diverged run) and no traceback. A rank killed by a
signal is one line naming the rank and the signal. torchrun's warning lines about stopping the other ranks are
dropped: the failing rank has said why."""

from __future__ import annotations

import logging
import sys


class _QuietStop(logging.Filter):
    """Drop torchrun's own log lines about a failed worker and the SIGTERM it sends the others."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not (message.startswith("failed (exitcode") or "closing signal" in message)


def main(argv: list[str] | None = None) -> None:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(sys.argv[1:] if argv is None else argv)
    quiet = _QuietStop()
    for handler in logging.getLogger().handlers + [logging.lastResort]:
        if handler is not None:
            handler.addFilter(quiet)
    for name in ("torch.distributed.elastic.multiprocessing.api", "torch.distributed.elastic.agent.server.api"):
        logging.getLogger(name).addFilter(quiet)
    try:
        run(args)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        code = failure.exitcode
        if code < 0:
            print(f"error: rank {rank} was killed by signal {-code}", file=sys.stderr)
            sys.exit(1)
        sys.exit(code)  # the rank printed its own line (a user mistake: exit code 2)


if __name__ == "__main__":
    main()
