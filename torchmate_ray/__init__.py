"""torchmate_ray: configuration-only PyTorch Lightning training, and Ray Tune sweeps over those configs."""

__version__ = "0.1.0"
