"""Neural networks of pose6d_ros in plain PyTorch (no torchvision, no timm)."""
