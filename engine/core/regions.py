"""Regions (regional prompting), written once for every family whose capabilities take them.

A region is an area of the image with its own prompt (``GenerationRequest.regions``); the main prompt
goes everywhere else. There is no library for it in diffusers: it is done here, by attention masking, as
InvokeAI and ComfyUI do it themselves.

- **Shares.** Each region's mask is brought to the pipeline's working image the way the input image was
  (stretched to the input image or the output size, cropped and fitted as the inpaint / img2img plan
  did, edge-padded to the family's grid), then the regions are stacked bottom first like layers: a
  pixel's share of region ``r`` is its coverage (mask x weight) times what the regions above leave,
  and the main prompt takes the rest. The shares of a pixel add up to 1.
- **UNet families** (SD 1.x / 2.x, SDXL): ``unet_regions`` wraps every cross-attention processor of the
  UNet for one job. The wrapped processor runs as before (the main prompt, the negative, LoRAs, an
  IP-Adapter's image tokens); then, for the rows of the batch that carry the positive prompt (the
  second half under classifier-free guidance, so the negative is unchanged), it runs again with each
  region's prompt embedding and blends the outputs by the shares, pooled to that layer's resolution.
  The processor's output is affine in the attention result, so the blend is exactly attention to the
  region's prompt inside the area and to the main prompt outside it. The UNet's own processors are
  back when the job ends.
- **MM-DiT joint attention** (FLUX.1): the region prompts' text tokens are appended to the main
  prompt's, and ``joint_attention_bias`` gives the joint attention over [text tokens | image tokens]
  an additive mask: an image token sees a prompt's tokens with log(its share of that prompt) (so an
  area wholly a region's sees only that region's prompt), a prompt's tokens see the image tokens that
  see them and their own tokens only; image tokens see each other freely.

A job without regions touches nothing here: its pixels are those of a model that never had one.
Engine thread (``active``, ``params``: any thread).
"""

from __future__ import annotations

import contextlib
import math

from engine.api import RegionInput
from engine.lazy import LazyModule

np = LazyModule("numpy")


def active(regions) -> tuple[RegionInput, ...]:
    """The regions that act (weight above 0). Any thread."""
    return tuple(r for r in regions if r.weight > 0)


def params(regions) -> list[tuple[str, str]]:
    """What the A1111 parameters say of the regions: ``Region 1: a red ball``, with the weight when not 1
    and the share of the image the mask covers. Any thread."""
    out = []
    for i, r in enumerate(regions, 1):
        covered = float(np.asarray(r.mask, np.float32).mean() / 255.0)
        weight = f", weight {r.weight:g}" if r.weight != 1 else ""
        out.append((f"Region {i}", f"{' '.join(r.prompt.split())} ({covered:.0%} of the image{weight})"))
    return out


def for_tile(regions, size: tuple[int, int], box: tuple[int, int, int, int]) -> tuple:
    """The regions of a tile (x, y, w, h) of the init image enlarged to ``size``: each
    mask stretched to ``size`` and cut to the tile; the regions that do not reach the tile left out. Engine
    thread (the detail upscale's tiles)."""
    import dataclasses

    from PIL import Image

    x, y, w, h = box
    out = []
    for region in regions:
        mask = region.mask if region.mask.size == size else region.mask.resize(size, Image.BILINEAR)
        mask = mask.crop((x, y, x + w, y + h))
        if mask.getbbox() is not None:
            out.append(dataclasses.replace(region, mask=mask))
    return tuple(out)


# ------------------------------------------------------------------------------------ the shares


def _fit_mask(mask, request, plan, size: tuple[int, int]):
    """``mask`` (L) as the pipeline sees the input image at ``size``: stretched to the input image
    (img2img / inpaint) or the output, then cropped, padded or resized as ``plan`` fitted the image."""
    from PIL import Image

    from engine import imageprep

    source = request.init_image.size if request.init_image is not None and plan is not None else (
        request.width, request.height)
    if mask.size != source:
        mask = mask.resize(source, Image.BILINEAR)
    if isinstance(plan, imageprep.InpaintPlan):
        mask = mask.crop(plan.box)
        work = plan.work_image.size
        if mask.size != work:
            mask = imageprep.pad_edges(mask, work) if plan.padded else mask.resize(work, Image.BILINEAR)
    elif isinstance(plan, imageprep.Img2ImgPlan):
        work = plan.work_image.size
        if mask.size != work:
            mask = imageprep.pad_edges(mask, work) if plan.crop is not None else mask.resize(work, Image.BILINEAR)
    if mask.size != size:  # the family's grid (edge-padded, as its image_args pads the image)
        if mask.width <= size[0] and mask.height <= size[1]:
            mask = imageprep.pad_edges(mask, size)
        else:
            mask = mask.resize(size, Image.BILINEAR)
    return mask


def shares(regions, request, plan, size: tuple[int, int]):
    """(height, width) float32 arrays at the working ``size``: the main prompt's share first, then each
    region's (bottom first; a later region covers an earlier one). They add up to 1 at every pixel."""
    left = np.ones((size[1], size[0]), np.float32)
    out = []
    for region in reversed(regions):  # the top region takes its coverage first
        coverage = np.asarray(_fit_mask(region.mask, request, plan, size), np.float32) / 255.0 * region.weight
        out.append(left * coverage)
        left = left * (1.0 - coverage)
    return [left] + out[::-1]


def pooled(share_maps, grid: tuple[int, int], like):
    """The shares averaged onto a ``grid`` (rows, columns) of latent pixels or tokens: a (n_prompts,
    rows*columns) tensor in ``like``'s dtype and device, row-major (how the latents are flattened)."""
    import torch
    import torch.nn.functional as F

    stack = torch.from_numpy(np.stack(share_maps))[:, None]  # (n, 1, H, W)
    out = F.adaptive_avg_pool2d(stack, grid)[:, 0].flatten(1)
    return out.to(device=like.device, dtype=like.dtype)


# ------------------------------------------------------------------ UNet cross-attention (SD, SDXL)


class _UNetState:
    """What the wrapped processors of one job share: the region embeddings, the shares at the latent
    size and pooled per attention resolution, which batch rows carry the positive prompt."""

    def __init__(self, embeds, share_maps, latent: tuple[int, int], cfg: bool):
        self.embeds = embeds
        self.share_maps = share_maps
        self.latent = latent  # (rows, columns) of the latents the UNet starts from
        self.cfg = cfg
        self._pooled: dict = {}

    def shares_for(self, tokens: int, like):
        """The (n_prompts, tokens, 1) shares for a layer of ``tokens`` latent pixels (None: a layer of no
        resolution the UNet's halvings reach)."""
        key = (tokens, like.dtype, like.device)
        if key not in self._pooled:
            h, w = self.latent
            grid = None
            for _ in range(8):  # each down block halves the latents (rounding up, as a stride-2 conv)
                if h * w == tokens:
                    grid = (h, w)
                    break
                h, w = -(-h // 2), -(-w // 2)
            self._pooled[key] = None if grid is None else pooled(self.share_maps, grid, like)[..., None]
        return self._pooled[key]


class RegionalAttnProcessor:
    """A UNet cross-attention processor that also attends each region's latent pixels to the region's
    prompt (see the module docstring). Wraps the processor that was there; engine thread."""

    def __init__(self, inner, state: _UNetState):
        self.inner = inner
        self.state = state

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 **kwargs):
        import torch

        out = self.inner(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                         attention_mask=attention_mask, temb=temb, **kwargs)
        if encoder_hidden_states is None or hidden_states.ndim != 3:
            return out
        state = self.state
        n = hidden_states.shape[0]
        start = n // 2 if state.cfg and n % 2 == 0 else 0  # under CFG the negative rows come first
        share = state.shares_for(hidden_states.shape[1], out)
        if share is None:
            return out
        rows = hidden_states[start:]
        images = None
        if isinstance(encoder_hidden_states, tuple):  # an IP-Adapter's image tokens ride along
            images = [t[start:] for t in encoder_hidden_states[1]]
        blended = out[start:] * share[0]
        for embed, part in zip(state.embeds, share[1:]):
            text = embed.to(device=rows.device, dtype=encoder_hidden_states[0].dtype if images is not None
                            else encoder_hidden_states.dtype).expand(rows.shape[0], -1, -1)
            region = self.inner(attn, rows, encoder_hidden_states=(text, images) if images is not None else text,
                                attention_mask=None, temb=None if temb is None else temb[start:], **kwargs)
            blended = blended + region * part
        return torch.cat([out[:start], blended]) if start else blended


@contextlib.contextmanager
def unet_regions(unet, embeds, share_maps, latent: tuple[int, int], cfg: bool):
    """For the ``with`` body: ``unet``'s cross-attention processors wrapped to attend each region to its
    prompt. ``embeds``: each region's prompt embedding (1, tokens, width), bottom first; ``share_maps``:
    ``shares`` at the working image size; ``latent``: the latents' (rows, columns); ``cfg``: the batch
    holds the negative first. The UNet's own processors (an IP-Adapter's included) are back afterwards."""
    saved = dict(unet.attn_processors)
    state = _UNetState(embeds, share_maps, latent, cfg)
    unet.set_attn_processor({name: p if name.endswith("attn1.processor") else RegionalAttnProcessor(p, state)
                             for name, p in saved.items()})
    try:
        yield state
    finally:
        unet.set_attn_processor(dict(saved))


# --------------------------------------------------------------------- MM-DiT joint attention (FLUX.1)


def joint_attention_bias(text_lengths, share_maps, grid: tuple[int, int], like, shared: int = 0):
    """The additive mask (1, 1, L, L) of a joint attention over [the prompts' text tokens, in the order of
    ``text_lengths`` (the main prompt first, then each region's) | ``shared`` tokens that act on the whole
    image (FLUX.1 Redux's picture tokens, appended to the prompt) | the image tokens on ``grid`` (rows,
    columns), row-major]. ``share_maps``: ``shares`` at the working image size, one per prompt. In
    ``like``'s dtype and device."""
    import torch

    share = pooled(share_maps, grid, like).float()  # (prompts, image tokens)
    prompts = sum(text_lengths)
    text = prompts + shared
    total = text + share.shape[1]
    bias = torch.zeros(total, total, dtype=torch.float32, device=share.device)
    log_share = torch.where(share > 0, share.clamp_min(1e-30).log(), torch.full_like(share, -math.inf))
    start = 0
    for i, length in enumerate(text_lengths):
        end = start + length
        bias[start:end, :text] = -math.inf  # a prompt's tokens see none of the other prompts' tokens ...
        bias[start:end, start:end] = 0.0  # ... but their own
        bias[text:, start:end] = log_share[i][:, None]  # an image token sees a prompt by its share of it
        bias[start:end, text:] = log_share[i][None, :]  # and the prompt sees the image tokens that see it
        start = end
    bias[prompts:text, :prompts] = -math.inf  # the shared tokens see each other and every image token
    return bias.to(like.dtype)[None, None]
