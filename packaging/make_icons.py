"""Render the app icon (the SVG named in pyproject.toml) to the formats installers need.

Writes into OUT_DIR (default build/icons): easel-<size>.png (16..1024), easel.png (256),
easel.ico (Windows: exe, installer, Start menu) and easel.icns (macOS .app). Qt renders the SVG
(QtSvg, offscreen), Pillow writes the container formats, so no tool outside the Python deps is needed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import appmeta  # noqa: E402

SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)


def render_pngs(svg: Path, out_dir: Path, stem: str) -> dict[int, Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([sys.argv[0]])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: {svg} is not a valid SVG")
    written: dict[int, Path] = {}
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        path = out_dir / f"{stem}-{size}.png"
        if not image.save(str(path)):
            raise SystemExit(f"make_icons: could not write {path}")
        written[size] = path
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    meta = appmeta.load()
    out_dir = Path(argv[0]) if argv else appmeta.ROOT / "build" / "icons"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = meta.executable
    pngs = render_pngs(meta.icon, out_dir, stem)

    from PIL import Image

    big = Image.open(pngs[1024]).convert("RGBA")
    (out_dir / f"{stem}.png").write_bytes(pngs[256].read_bytes())
    big.save(out_dir / f"{stem}.ico", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    big.save(out_dir / f"{stem}.icns")
    print(f"icons written to {out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
