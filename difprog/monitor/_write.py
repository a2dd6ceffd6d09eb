"""The files of a monitored run: health.json, health.png and health.html, each written
atomically; and the records a resumed run takes back from its health.json."""

from __future__ import annotations

import json
import os
import pathlib

from difprog.files import write_json
from difprog.monitor._monitor import Monitor
from difprog.monitor._page import page
from difprog.monitor._picture import save_health
from difprog.pages import write_page
from difprog.progress import note

FILES = ("health.json", "health.png", "health.html")


def write_health(directory: str | os.PathLike, monitor: Monitor,
                 title: str = "Training health") -> list[pathlib.Path]:
    """Writes the monitor's health.json, health.png and health.html into `directory`."""
    directory = pathlib.Path(directory)
    health = monitor.health()
    return [write_json(directory / "health.json", health),
            save_health(health, directory / "health.png"),
            write_page(directory / "health.html", page(health, title))]


def resume_health(directory: str | os.PathLike, monitor: Monitor, step: int) -> None:
    """Gives a resumed run's monitor the records before `step` of the health.json in
    `directory` (none when it is missing, unreadable or of another model)."""
    path = pathlib.Path(directory) / "health.json"
    if not path.exists():
        return
    try:
        monitor.resume(json.loads(path.read_text()), step)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        note(f"{path} could not be read ({error}); the health records start again at step "
             f"{step}")
