"""Live previews for every family: a tiny autoencoder (TAESD / TAESDXL / TAEF1 / TAEF2) where the library
has one for the model's latent space, else latents to RGB by a fixed linear map (no VAE decode), and pixel
batches (the pixel-space families) shown as they are.

The linear factors are the widely used least-squares fits of each latent space's RGB appearance;
they cost one tiny matrix product per step, so previews never slow generation down.
"""

from __future__ import annotations

import os

from PIL import Image

# rows: latent channels; columns: R, G, B
_SD_FACTORS = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
_SDXL_FACTORS = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
_SDXL_BIAS = (0.1084, -0.0175, -0.0011)
# SD 3 / 3.5's 16-channel VAE (the fit ComfyUI previews SD3 with).
_SD3_FACTORS = (
    (-0.0922, -0.0175, 0.0749), (0.0311, 0.0633, 0.0954), (0.1994, 0.0927, 0.0458), (0.0856, 0.0339, 0.0902),
    (0.0587, 0.0272, -0.0496), (-0.0006, 0.1104, 0.0309), (0.0978, 0.0306, 0.0427), (-0.0042, 0.1038, 0.1358),
    (-0.0194, 0.0020, 0.0669), (-0.0488, 0.0130, -0.0268), (0.0922, 0.0988, 0.0951), (-0.0278, 0.0524, -0.0542),
    (0.0332, 0.0456, 0.0895), (-0.0069, -0.0030, -0.0810), (-0.0596, -0.0465, -0.0293), (-0.1448, -0.1463, -0.1189),
)
_SD3_BIAS = (0.2394, 0.2135, 0.1925)

# The FLUX.1 VAE's 16 channels (FLUX's 2x2-packed latents once unpacked; Z-Image decodes with it too).
_FLUX_VAE_FACTORS = (
    (-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433), (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115), (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180), (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499), (-0.1262, -0.0982, -0.0778),
)
_FLUX_VAE_BIAS = (-0.0329, -0.0718, -0.0851)
# The Qwen-Image VAE's 16 channels (Wan 2.1's latent space), from the (B, C, 1, H, W) latents' one frame.
_WAN_VAE_FACTORS = (
    (-0.1299, -0.1692, 0.2932), (0.0671, 0.0406, 0.0442), (0.3568, 0.2548, 0.1747), (0.0372, 0.2344, 0.1420),
    (0.0313, 0.0189, -0.0328), (0.0296, -0.0956, -0.0665), (-0.3477, -0.4059, -0.2925), (0.0166, 0.1902, 0.1975),
    (-0.0412, 0.0267, -0.1364), (-0.1293, 0.0740, 0.1636), (0.0680, 0.3019, 0.1128), (0.0032, 0.0581, 0.0639),
    (-0.1251, 0.0927, 0.1699), (0.0060, -0.0633, 0.0005), (0.3477, 0.2275, 0.2950), (0.1984, 0.0913, 0.1861),
)
_WAN_VAE_BIAS = (-0.1835, -0.0868, -0.3360)
# The FLUX.2 VAE's 32 channels, on the latents the FLUX.2 transformer denoises (batch-normalised, then
# 2x2-patchified into 128 channels: unpacked back to 32 channels at twice the size first). The fit
# ComfyUI previews FLUX.2 with (comfy/latent_formats.py, ``Flux2``).
_FLUX2_VAE_FACTORS = (
    (0.0058, 0.0113, 0.0073), (0.0495, 0.0443, 0.0836), (-0.0099, 0.0096, 0.0644), (0.2144, 0.3009, 0.3652),
    (0.0166, -0.0039, -0.0054), (0.0157, 0.0103, -0.0160), (-0.0398, 0.0902, -0.0235), (-0.0052, 0.0095, 0.0109),
    (-0.3527, -0.2712, -0.1666), (-0.0301, -0.0356, -0.0180), (-0.0107, 0.0078, 0.0013), (0.0746, 0.0090, -0.0941),
    (0.0156, 0.0169, 0.0070), (-0.0034, -0.0040, -0.0114), (0.0032, 0.0181, 0.0080), (-0.0939, -0.0008, 0.0186),
    (0.0018, 0.0043, 0.0104), (0.0284, 0.0056, -0.0127), (-0.0024, -0.0022, -0.0030), (0.1207, -0.0026, 0.0065),
    (0.0128, 0.0101, 0.0142), (0.0137, -0.0072, -0.0007), (0.0095, 0.0092, -0.0059), (0.0000, -0.0077, -0.0049),
    (-0.0465, -0.0204, -0.0312), (0.0095, 0.0012, -0.0066), (0.0290, -0.0034, 0.0025), (0.0220, 0.0169, -0.0048),
    (-0.0332, -0.0457, -0.0468), (-0.0085, 0.0389, 0.0609), (-0.0076, 0.0003, -0.0043), (-0.0111, -0.0460, -0.0614),
)
_FLUX2_VAE_BIAS = (-0.0329, -0.0718, -0.0851)
# latent space -> the tiny autoencoder that decodes it (TAESD, TAESDXL, TAEF1: Z-Image has the FLUX VAE;
# TAEF2: FLUX.2's, on the unpacked batch-normalised latents the transformer denoises)
_TINY_DECODERS = {"sd": "sd", "sdxl": "sdxl", "flux": "flux", "zimage": "flux", "flux2": "flux2"}
# latent space -> (factors, bias or None)
_LINEAR = {
    "sd": (_SD_FACTORS, None),
    "sdxl": (_SDXL_FACTORS, _SDXL_BIAS),
    "sd3": (_SD3_FACTORS, _SD3_BIAS),
    "flux": (_FLUX_VAE_FACTORS, _FLUX_VAE_BIAS),
    "zimage": (_FLUX_VAE_FACTORS, _FLUX_VAE_BIAS),
    "qwen_image": (_WAN_VAE_FACTORS, _WAN_VAE_BIAS),
    "flux2": (_FLUX2_VAE_FACTORS, _FLUX2_VAE_BIAS),
}
# Latent spaces whose denoiser works on 2x2 patches packed into a token sequence (B, H/2 * W/2, C * 4).
PACKED = frozenset({"flux", "flux2"})


def unpack_2x2(latents, width: int, height: int, vae_scale: int = 8):
    """Packed transformer latents (B, (H/2)*(W/2), C*4) back to the VAE's (B, C, H, W), for an image
    of ``width`` x ``height`` px whose VAE downsamples ``vae_scale`` times (FLUX-style packing: each
    token holds one 2x2 patch, channels first). Any shape already 4-D is returned as it is."""
    if latents.dim() == 4:
        return latents
    batch, _tokens, packed = latents.shape
    h, w = 2 * (height // (vae_scale * 2)), 2 * (width // (vae_scale * 2))
    latents = latents.view(batch, h // 2, w // 2, packed // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return latents.reshape(batch, packed // 4, h, w)


def latents_to_preview(latents, space: str, size: tuple[int, int] | None = None) -> Image.Image:
    """First latent of a batch as an RGB image, upscaled to ``size`` (width, height) if given.
    ``space``: the latent space ("sd", "sdxl", "sd3", "flux", "zimage": the 16-channel FLUX VAE's,
    "qwen_image": the Wan 2.1 VAE's, "flux2": the 32-channel FLUX.2 VAE's; a family's ``latent_space`` capability). Packed latents
    (``PACKED`` spaces) must be unpacked first (``unpack_2x2``); a video VAE's (B, C, frames, H, W)
    latents show their first frame.

    Runs on the engine thread; returns a PIL image safe to hand to another thread.
    """
    import torch

    table, bias = _LINEAR.get(space, _LINEAR["sd"])
    lat = latents[0, :len(table)].detach().float().cpu()
    if lat.ndim == 4:
        lat = lat[:, 0]
    factors = torch.tensor(table)
    rgb = torch.einsum("chw,cr->rhw", lat, factors)
    if bias is not None:
        rgb += torch.tensor(bias)[:, None, None]
    rgb = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    image = Image.fromarray(rgb, "RGB")
    if size and image.size != size:
        image = image.resize(size, Image.BILINEAR)
    return image


class TinyAutoencoderPreview:
    """Previews through a tiny autoencoder: a diffusers ``AutoencoderTiny`` folder (TAESD / TAESDXL /
    TAEF1) or one decoder file (TAEF2's ``taef2.safetensors``; ``engine.core.tiny_decoder``): close to the
    final decode at a fraction of the VAE's cost. Loaded once per model, on the engine thread;
    ``__call__`` runs there too and returns a PIL image."""

    def __init__(self, folder: str, device: str, dtype):
        self.folder = folder  # the folder, or the one file
        if os.path.isfile(folder):
            from engine.core import tiny_decoder

            decoder = tiny_decoder.load(folder, device, dtype)
            self._decode, self._param = decoder.decode, next(decoder.parameters())
        else:
            from diffusers import AutoencoderTiny

            vae = AutoencoderTiny.from_pretrained(folder, local_files_only=True, torch_dtype=dtype).to(device).eval()
            self._decode, self._param = (lambda lat: vae.decode(lat).sample), next(vae.parameters())

    def __call__(self, latents, size: tuple[int, int] | None = None) -> Image.Image:
        import torch

        with torch.inference_mode():
            lat = latents[:1].to(self._param.device, self._param.dtype)
            rgb = self._decode(lat)[0].float().clamp(-1, 1)
        rgb = ((rgb + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
        image = Image.fromarray(rgb, "RGB")
        if size and image.size != size:
            image = image.resize(size, Image.BILINEAR)
        return image


def pixels_to_preview(pixels, limit: int | None = 256) -> Image.Image:
    """The first image of a [-1, 1] pixel batch (NCHW) as RGB, at most ``limit`` px a side."""
    import torch

    arr = ((pixels[0].detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    image = Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy(), "RGB")
    if limit is not None and max(image.size) > limit:
        image.thumbnail((limit, limit))
    return image


class Previews:
    """A runner's previewer: looks for a tiny autoencoder for ``space`` in the library once, on first
    use, and falls back to the linear map. ``space`` "pixels" means the denoiser works on pixels."""

    def __init__(self, space: str, library, device: str, dtype):
        self.space = space
        self.library = library
        self.device = device
        self.dtype = dtype
        self.tiny: TinyAutoencoderPreview | None | bool = None  # False: looked, none usable

    def _tiny(self):
        if self.tiny is None:
            self.tiny = False
            # Only the spaces a tiny decoder exists for ask the library (the "sd1" one would not fit 16 channels).
            tiny_space = _TINY_DECODERS.get(self.space)
            entry = self.library.taesd(tiny_space) if self.library is not None and tiny_space else None
            if entry is not None:
                try:
                    self.tiny = TinyAutoencoderPreview(entry.path, self.device, self.dtype)
                except (OSError, ValueError, RuntimeError) as exc:
                    import logging

                    logging.getLogger(__name__).warning("preview decoder %s unusable: %s", entry.path, exc)
        return self.tiny or None

    def for_size(self, size: tuple[int, int]):
        """A ``latents -> PIL image`` function for images of ``size`` (width, height)."""
        if self.space == "pixels":
            return lambda pixels: pixels_to_preview(pixels)
        unpack = (lambda latents: unpack_2x2(latents, *size)) if self.space in PACKED else (lambda latents: latents)
        tiny = self._tiny()
        if tiny is not None:
            return lambda latents: tiny(unpack(latents), size)
        return lambda latents: latents_to_preview(unpack(latents), self.space, size)
