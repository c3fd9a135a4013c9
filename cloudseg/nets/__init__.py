"""From-scratch segmentation networks that smp does not provide (the write-up's baselines).

Each maps (B, 4, H, W) → (B, 1, H, W) logits with H, W multiples of 16 (four 2× poolings), and
takes `base_width`, the channel count of the first stage (64 in the papers).
"""

from cloudseg.nets.attention_unet import AttentionUNet
from cloudseg.nets.r2unet import R2UNet
from cloudseg.nets.unet import VanillaUNet

__all__ = ["AttentionUNet", "R2UNet", "VanillaUNet"]
