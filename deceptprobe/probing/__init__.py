"""Linear probes (scikit-learn contract), layer sweeps and contrast-pair directions."""

from deceptprobe.probing.contrast import ContrastPairs
from deceptprobe.probing.linear import LogisticProbe, MeanDiffProbe
from deceptprobe.probing.sweep import layer_sweep

__all__ = ["ContrastPairs", "LogisticProbe", "MeanDiffProbe", "layer_sweep"]
