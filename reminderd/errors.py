"""Error types, each carrying the exit code the CLI turns it into.

Exit codes follow sysexits(3), as SPEC's command table says: 65 bad
commitments (EX_DATAERR), 66 missing input (EX_NOINPUT), 69 server
unreachable (EX_UNAVAILABLE), 78 bad config (EX_CONFIG). Adapters turn
library exceptions into these so the CLI has one error handler.
"""

from __future__ import annotations

from dataclasses import dataclass

EX_FAILURE = 1
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_CONFIG = 78


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input file, at a line (1-based)."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        # One problem, one line: a value with a newline must not forge another line.
        message = self.message.replace("\r", "\\r").replace("\n", "\\n")
        return f"{self.path}:{self.line}: {message}"


class ReminderdError(Exception):
    """Base of every error we raise on purpose; never shown as a traceback."""

    exit_code = EX_FAILURE


class InputProblems(ReminderdError):
    """A list of problems found in input files (all of them, not the first)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class CommitmentsError(InputProblems):
    exit_code = EX_DATAERR


class ConfigError(InputProblems):
    exit_code = EX_CONFIG


class MissingInputError(ReminderdError):
    """A file named by the user (config or commitments) does not exist."""

    exit_code = EX_NOINPUT


class MissingInputs(MissingInputError):
    """Every named file that is missing or not a regular file, not only the first.

    `missing` holds one `path: reason` per file; the message joins them on one
    line, so each error stays one line after the CLI's `reminderd: ` prefix.
    """

    def __init__(self, missing: list[str]) -> None:
        self.missing = tuple(missing)
        super().__init__("; ".join(missing))


class SecretError(ReminderdError):
    """A secret could not be resolved; the message never contains the secret."""

    exit_code = EX_CONFIG


class ServerUnreachable(ReminderdError):
    exit_code = EX_UNAVAILABLE


class WouldOverwrite(ReminderdError):
    """`init` found files it would replace, and `--force` was not given."""

    exit_code = EX_CANTCREAT


class AlreadyRunning(ReminderdError):
    """Another daemon holds this state dir."""

    exit_code = EX_TEMPFAIL


class LockTimeout(ReminderdError):
    """The daemon's sync held the sync lock for longer than we would wait."""

    exit_code = EX_TEMPFAIL


class PortTaken(ReminderdError):
    """Something else listens where the embedded calendar should: never talk to it."""

    exit_code = EX_UNAVAILABLE


class StateError(ReminderdError):
    """The state database cannot be opened, read or written (corrupt, read-only, disk full)."""

    exit_code = EX_IOERR


class StateGone(ReminderdError):
    """The state dir was deleted or replaced while the daemon ran: restart on a fresh one."""

    exit_code = EX_TEMPFAIL


class MassDeleteRefused(ReminderdError):
    exit_code = EX_FAILURE


class SmsError(ReminderdError):
    """A provider refused or failed a send; `permanent` says whether a retry can help."""

    exit_code = EX_FAILURE

    def __init__(
        self, message: str, *, permanent: bool, code: int | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code
        self.status = status


class InvalidValue(Exception):
    """A single value is wrong; the source that read it adds `path:line`."""


class AuthFailed(ReminderdError):
    """The server refused our credentials: a config problem, not an outage."""

    exit_code = EX_CONFIG


class OutcomeRefused(ReminderdError):
    """An outcome that names no known commitment or touch, or cannot apply (exit 65)."""

    exit_code = EX_DATAERR


class UsageError(ReminderdError):
    """A command line that names something the config does not have (exit 64)."""

    exit_code = EX_USAGE
