"""User-facing errors: the CLI turns these into one line on stderr and exit code 2."""


class UserError(Exception):
    """A mistake the user can fix (bad path, mismatched artefacts, bad option). Never a bug in bl2."""


def require(cond: bool, message: str) -> None:
    """Raise UserError(message) unless cond holds."""
    if not cond:
        raise UserError(message)


class Diverged(Exception):
    """A training loss (or gradient norm) that is NaN or infinite: the run stopped before the optimizer step, with
    its weights and last checkpoint still good. The CLI prints one line and exits with code 1 (not 2: the run
    failed, the command line was fine)."""
