"""How long steps report progress. The runner talks to a Reporter; the CLI renders it with rich."""

from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class Reporter(Protocol):
    def step(self, name: str, total: int | None = None) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def done(self) -> None: ...
    def info(self, message: str) -> None: ...


class NullReporter:
    """Silence, for the Python API and tests."""

    def step(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def done(self) -> None:
        pass

    def info(self, message: str) -> None:
        pass


class RichReporter:
    """Progress bars and one-line messages on stderr, so stdout stays clean for --json."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task = None

    def step(self, name: str, total: int | None = None) -> None:
        self.done()
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(name, total=total)

    def advance(self, n: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def done(self) -> None:
        if self._progress is not None:
            if self._task is not None:
                task = self._progress.tasks[0]
                if task.total is None:
                    self._progress.update(self._task, total=1, completed=1)
            self._progress.stop()
            self._progress = None
            self._task = None

    def info(self, message: str) -> None:
        self.done()
        self.console.print(message, highlight=False)
