"""Safety training of model organisms (SFT, HHH RL, adversarial, distillation)."""

from deceptprobe.safety.finetune import apply_safety

__all__ = ["apply_safety"]
