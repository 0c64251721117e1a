"""Where progress lines go: the INFO records of the loggers that report long work (teacher
training, cached logits, the search's estimate, finalize) as plain lines on stderr, and
every logger's warnings with their source."""

from __future__ import annotations

import logging
import sys

PROGRESS_LOGGERS = ("teachers", "automl.run")  # teacher training, logits, estimate, finalize


def show_progress() -> None:
    """Set up logging for a command-line entry point (`cli.py`, the benchmarks): warnings as
    ``LEVEL name: message``, the progress loggers' INFO records as their bare message, both on
    stderr. Call once per process."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)  # warnings with their source, as before
    progress = logging.StreamHandler(sys.stderr)  # progress lines as plain text
    progress.setFormatter(logging.Formatter("%(message)s"))
    progress.addFilter(lambda record: record.levelno == logging.INFO)
    for name in PROGRESS_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(progress)
