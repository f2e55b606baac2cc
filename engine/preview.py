"""Cheap live previews: latents to RGB by a fixed linear map, no VAE decode.

The factors are the widely used least-squares fits of each latent space's RGB appearance; they
cost one tiny matrix product per step, so previews never slow generation down.
"""

from __future__ import annotations

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


def latents_to_preview(latents, family: str, size: tuple[int, int] | None = None) -> Image.Image:
    """First latent of a batch as an RGB image, upscaled to ``size`` (width, height) if given.

    Runs on the engine thread; returns a PIL image safe to hand to another thread.
    """
    import torch

    lat = latents[0, :4].detach().float().cpu()
    factors = torch.tensor(_SDXL_FACTORS if family == "sdxl" else _SD_FACTORS)
    rgb = torch.einsum("chw,cr->rhw", lat, factors)
    if family == "sdxl":
        rgb += torch.tensor(_SDXL_BIAS)[:, None, None]
    rgb = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    image = Image.fromarray(rgb, "RGB")
    if size and image.size != size:
        image = image.resize(size, Image.BILINEAR)
    return image


class TinyAutoencoderPreview:
    """Previews through a tiny autoencoder (TAESD / TAESDXL, diffusers ``AutoencoderTiny`` folder):
    close to the final decode at a fraction of the VAE's cost. Loaded once per model, on the engine
    thread; ``__call__`` runs there too and returns a PIL image."""

    def __init__(self, folder: str, device: str, dtype):
        from diffusers import AutoencoderTiny

        self.folder = folder
        self.vae = AutoencoderTiny.from_pretrained(folder, local_files_only=True, torch_dtype=dtype).to(device).eval()

    def __call__(self, latents, size: tuple[int, int] | None = None) -> Image.Image:
        import torch

        with torch.inference_mode():
            lat = latents[:1].to(self.vae.device, self.vae.dtype)
            rgb = self.vae.decode(lat).sample[0].float().clamp(-1, 1)
        rgb = ((rgb + 1.0) * 127.5).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
        image = Image.fromarray(rgb, "RGB")
        if size and image.size != size:
            image = image.resize(size, Image.BILINEAR)
        return image
