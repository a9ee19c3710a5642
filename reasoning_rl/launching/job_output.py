"""What a sweep member prints and leaves on disk, without secrets: stdout/stderr redacted as they are
written (stderr also keeps the job's last `error: ...` line, for the submitting side's report), and
submitit's scripts and logs rewritten."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reasoning_rl.tracking.redact import redact_text, redact_text_file


def first_error_line(text: str) -> str:
    """The line of a job's stderr / submitit error that says what went wrong."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: "):]
    for line in reversed(lines):  # the exception line of a traceback
        if not line.startswith(("File ", "^", "~", "-", "You can check", "or at paths", "- /")) and ":" in line:
            return line
    return lines[-1] if lines else "unknown error"


class RedactingStream:
    """Stands in for sys.stdout / sys.stderr in a job: writes through, secrets redacted."""

    def __init__(self, stream, secrets: Sequence[str] = ()):
        self._stream = stream
        self._secrets = list(secrets)

    def write(self, text: str) -> int:
        self._stream.write(redact_text(text, self._secrets))
        return len(text)  # what the caller wrote, whatever redaction made of it

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class ErrorLineTee(RedactingStream):
    """sys.stderr in a job: also remembers the last `error: ...` line."""

    def __init__(self, stream, secrets: Sequence[str] = ()):
        super().__init__(stream, secrets)
        self.last: str | None = None

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.startswith("error: "):
                self.last = redact_text(line[len("error: "):], self._secrets)
        return super().write(text)


def redact_submitit_files(folder: str | Path, secrets: Sequence[str]) -> None:
    """submitit's sbatch scripts and job logs, rewritten without secrets. Its pickles (`*.pkl`) cannot
    be (the job unpickles its config from them): they are made readable by their owner only."""
    from submitit.core.utils import JobPaths

    root = JobPaths.get_first_id_independent_folder(folder)
    if not root.is_dir():
        return
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        if path.name.endswith(("_submission.sh", "_log.out", "_log.err")):
            redact_text_file(path, secrets)
        elif path.suffix == ".pkl":
            path.chmod(0o600)
