"""Model organisms of misalignment: backdoored and clean-twin models trained on a CPU."""

from deceptprobe.organisms.config import OrganismConfig
from deceptprobe.organisms.evaluate import evaluate
from deceptprobe.organisms.io import load
from deceptprobe.organisms.model import Organism
from deceptprobe.organisms.train import train

__all__ = ["Organism", "OrganismConfig", "evaluate", "load", "train"]
