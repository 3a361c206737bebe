"""Light HQ-SAM's image encoder: MobileSAM's TinyViT, the authors' class, called as Meta's ViT encoder is.

The class is the one `segment_anything_hq` ships (MobileSAM's layout, so `mobile_sam.pt` and
`sam_hq_vit_tiny.pth` load key for key, its unused ImageNet head included). It fixes the input at 1024 px and
the embedding at 256 x 64 x 64. This module imports it, and with it timm, so `hqsam.build` imports this module
only when it builds a TinyViT.
"""

import warnings
from typing import Sequence

import torch
from torch import nn

with warnings.catch_warnings():  # the authors' module re-registers TinyViT in timm and imports timm's old paths
    warnings.filterwarnings("ignore", message="Overwriting tiny_vit", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    from segment_anything_hq.modeling.tiny_vit_sam import Attention, TinyViT


class TinyViTEncoder(TinyViT):
    def __init__(
        self,
        img_size: int,
        embed_dims: Sequence[int],
        depths: Sequence[int],
        num_heads: Sequence[int],
        window_sizes: Sequence[int],
    ) -> None:
        """The authors' TinyViT as their `build_sam_vit_t` makes it (no dropout, no stochastic depth), but for
        `forward`: per stage (four) its width, blocks, attention heads and window size."""
        device = torch.get_default_device()
        with torch.device("cpu"):  # the authors' __init__ calls .item(), which a meta-device build cannot
            super().__init__(
                img_size=img_size, num_classes=1000, embed_dims=list(embed_dims), depths=list(depths),
                num_heads=list(num_heads), window_sizes=list(window_sizes), mlp_ratio=4.0, drop_rate=0.0,
                drop_path_rate=0.0, mbconv_expand_ratio=4.0, local_conv_size=3,
            )
        self.to(device)
        self.register_load_state_dict_post_hook(_recache_attention_biases)

    @property
    def early_layer(self) -> nn.Module:
        """The stage whose output is HQ-SAM's early feature, N x 4096 x embed_dims[2] (64 x 64 positions), as the
        release takes it."""
        return self.layers[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x 1024 x 1024 preprocessed images -> N x 256 x 64 x 64 embeddings (no early feature: see
        `HQSam.encode_image`)."""
        return self.forward_features(x)[0]


def _recache_attention_biases(encoder: nn.Module, incompatible_keys: object) -> None:
    # In eval mode TinyViT's attention uses a copy of its biases taken when eval() was called: weights loaded
    # afterwards (build_hqsam loads into a model in eval mode) would be ignored without taking it again.
    for module in encoder.modules():
        if isinstance(module, Attention) and not module.training:
            module.train(False)
