"""``dinov2-vitl14`` / ``dinov2-vitb14``: DINOv2 ViT features (FD_DINOv2), built on timm's ViT.

Stein et al. (NeurIPS 2023, "Exposing flaws of generative model evaluation metrics") found
Inception's feature space the weak point of FID-style metrics and recommend DINOv2 ViT-L/14 (their
dgm-eval code offers the cheaper ViT-B/14 for tracking). The network is timm's
``vit_{large,base}_patch14_dinov2`` (a maintained implementation that reads both the official
``dinov2_vit?14_pretrain.pth`` checkpoint and timm's own ``model.safetensors``, through timm's
``checkpoint_filter_fn``, which also resamples the 518-pixel position embedding to 224).

Weights come only from a local file, ``metrics.weights_path``: nothing is ever downloaded, and
without the file ``madlab validate`` stops with one line (exit 2). Features are the final
normalised CLS token (1024-d / 768-d), what dgm-eval's DINOv2 encoder returns.

Preprocessing is dgm-eval's: resize to 224x224 (bicubic, antialiased, as PIL does, then back to
8-bit as PIL's output is), ImageNet mean/std normalisation; greyscale (MNIST) is replicated to three
channels. dgm-eval runs torch hub's DINOv2, whose position-embedding interpolation to 224 differs
slightly from timm's resampling, so features agree with dgm-eval's closely but not bit for bit.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from madlab.core.errors import ConfigError, MadlabError

#: extractor name -> (timm architecture, feature dimension, official checkpoint file name)
ARCHITECTURES = {
    "dinov2-vitl14": ("vit_large_patch14_dinov2", 1024, "dinov2_vitl14_pretrain.pth"),
    "dinov2-vitb14": ("vit_base_patch14_dinov2", 768, "dinov2_vitb14_pretrain.pth"),
}
#: timm keyword overrides per extractor name (empty in use; tests shrink the ViT to run the same
#: code path in seconds)
MODEL_OVERRIDES: dict[str, dict] = {}
RESOLUTION = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_dinov2_weights(name: str, weights_path: str | None) -> Path:
    """The local weights file of ``name``, or a ConfigError naming ``metrics.weights_path``."""
    official = ARCHITECTURES[name][2]
    if weights_path is None:
        raise ConfigError(f"metrics.weights_path: {name} needs a local weights file (the official {official} "
                          f"or timm's {ARCHITECTURES[name][0]}.lvd142m model.safetensors); madlab never downloads it")
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise ConfigError(f"metrics.weights_path: {name} weights file {path} does not exist")
    return path


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from safetensors or a (pickle-free) torch checkpoint."""
    if path.suffix == ".safetensors":

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"not a state dict ({type(state).__name__})")
    return state


def build_model(name: str, state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """timm's DINOv2 ViT at 224 pixels, no classifier head; ``state`` in official or timm format."""
    import timm  # timm (seconds to import) loads only for the dinov2 extractor
    # timm (seconds to import) loads only for the dinov2 extractor
    from timm.models.vision_transformer import checkpoint_filter_fn

    model = timm.create_model(ARCHITECTURES[name][0], pretrained=False, img_size=RESOLUTION, num_classes=0,
                              **MODEL_OVERRIDES.get(name, {}))
    if state is not None:
        model.load_state_dict(checkpoint_filter_fn(dict(state), model), strict=True)
    return model


def preprocess(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 1 or 3, H, W) or floats in [-1, 1] -> normalised float (B, 3, 224, 224)."""
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise MadlabError(f"dinov2: expects images (B, 1 or 3, H, W), got shape {tuple(x.shape)}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else (x.float() + 1.0) / 2.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[2:]) != (RESOLUTION, RESOLUTION):
        x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="bicubic", antialias=True, align_corners=False)
        x = (x.clamp(0.0, 1.0) * 255.0).round() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class FeatureExtractorDINOv2(FeatureExtractorBase):
    """torch-fidelity feature extractor over timm's DINOv2 ViT; feature ``"cls"`` (normalised CLS token)."""

    @classmethod
    def check_weights(cls, weights_path) -> None:
        """Validate-time (madlab.features.check_extractor): a local weights file is required."""
        if weights_path is None:
            raise ConfigError("metrics.weights_path: the DINOv2 extractors need a local weights file (the official "
                              "dinov2_vit?14_pretrain.pth or timm's model.safetensors); madlab never downloads them")

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if name not in ARCHITECTURES:
            raise MadlabError(f"metrics.extractor: {name!r} is not a DINOv2 extractor ({', '.join(ARCHITECTURES)})")
        path = check_dinov2_weights(name, feature_extractor_weights_path)
        try:
            self.model = build_model(name, load_state(path))
        except Exception as e:  # torch.load / safetensors / load_state_dict raise many types for a bad file
            raise MadlabError(f"metrics.weights_path: {path} is not {name} weights "
                              f"({str(e).strip().splitlines()[0][:200]})") from None
        self.weights_path = path
        self.feature_dim = self.model.num_features
        self.requires_grad_(False)
        self.eval()

    def forward(self, x):
        feats = self.model(preprocess(x.to(next(self.model.parameters()).device)))
        return tuple(feats for _ in self.features_list)

    @staticmethod
    def get_provided_features_list():
        return ("cls",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"fid": "cls", "kid": "cls", "prc": "cls"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, RESOLUTION, RESOLUTION, dtype=torch.uint8)


__all__ = ["ARCHITECTURES", "FeatureExtractorDINOv2", "build_model", "check_dinov2_weights", "preprocess"]
