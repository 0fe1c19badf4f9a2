"""Build a sample media folder: real photos (scikit-image's bundled data), images with printed text,
a photo with EXIF, duplicates, and the bad input a real archive has (empty, truncated, mislabelled,
non-media, oddly named).

    python scripts/make_samples.py DEST
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)

# Real photographs shipped inside scikit-image (public domain / permissive), no download.
PHOTOS = {
    "astronaut": "people/astronaut.jpg",
    "chelsea": "pets/chelsea_the_cat.jpg",
    "coffee": "kitchen/coffee.jpg",
    "stereo_motorcycle": "vehicles/motorcycle.jpg",
    "rocket": "space/rocket_launch.jpg",
    "horse": "animals/horse.png",
}

TEXT_IMAGES = {
    "news/breaking_flood.png": "BREAKING NEWS: FLOOD IN VALENCIA",
    "documents/invoice_0173.png": "INVOICE 2024-0173 TOTAL DUE 418 EUR",
    "documents/meeting_notes.png": "Quarterly meeting moved to Thursday",
    "signs/platform.png": "PLATFORM 9 DEPARTURES LONDON",
}


@dataclass(slots=True)
class SampleManifest:
    root: str
    photos: dict[str, str] = field(default_factory=dict)  # name -> relative path
    text_images: dict[str, str] = field(default_factory=dict)  # relative path -> printed text
    duplicates: dict[str, str] = field(default_factory=dict)  # copy -> original
    bad: dict[str, str] = field(default_factory=dict)  # relative path -> what is wrong with it
    not_media: list[str] = field(default_factory=list)
    exif_photo: str = ""

    @property
    def good_files(self) -> int:
        return len(self.photos) + len(self.text_images) + len(self.duplicates) + (1 if self.exif_photo else 0)


def font(size: int) -> ImageFont.FreeTypeFont:
    for candidate in FONT_PATHS:
        if Path(candidate).exists():
            return ImageFont.truetype(candidate, size)
    raise FileNotFoundError("DejaVu fonts are missing: apt-get install -y fonts-dejavu-core")


def text_image(text: str, width: int = 1000, height: int = 140, size: int = 44) -> Image.Image:
    img = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(img).text((30, (height - size) // 2), text, font=font(size), fill="black")
    return img


def scene_image(
    rng: random.Random, words: Sequence[str], index: int, size: tuple[int, int] = (320, 240)
) -> Image.Image:
    """A small photo-like scene: six shapes on a colour field and a printed caption (a word and `index`)."""
    width, height = size
    img = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        x, y = rng.randrange(width - 20), rng.randrange(height - 20)
        fill = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x, y, x + rng.randrange(20, width // 3), y + rng.randrange(20, height // 3)), fill=fill)
    draw.rectangle((0, height * 4 // 5, width, height), fill="white")
    label = f"{rng.choice(words).upper()} {index}"
    draw.text((8, height * 4 // 5 + 4), label, font=font(max(10, height // 9)), fill="black")
    return img


def skimage_photo(name: str) -> Image.Image:
    from skimage import data

    loaded = getattr(data, name)()
    array = np.asarray(loaded[0] if isinstance(loaded, tuple) else loaded)  # stereo pairs: left view
    return Image.fromarray(array).convert("RGB")


def _save(img: Image.Image, path: Path, **kwargs: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)  # type: ignore[arg-type]


def make_sample_tree(dest: Path) -> SampleManifest:
    """Write the sample folder (replacing DEST) and return what it contains."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    manifest = SampleManifest(root=str(dest))
    for name, rel in PHOTOS.items():
        _save(skimage_photo(name), dest / rel, quality=90)
        manifest.photos[name] = rel
    for rel, text in TEXT_IMAGES.items():
        _save(text_image(text), dest / rel)
        manifest.text_images[rel] = text

    # A photo with EXIF: taken 2021-06-15 14:30, camera make/model.
    exif = Image.Exif()
    exif[0x010F] = "Archivist"
    exif[0x0110] = "SampleCam 1"
    exif.get_ifd(0x8769)[0x9003] = "2021:06:15 14:30:00"
    _save(skimage_photo("rocket").rotate(90, expand=True), dest / "space/launch_2021.jpg", exif=exif)
    manifest.exif_photo = "space/launch_2021.jpg"

    # Byte-identical copies under other names and folders.
    for copy, original in {
        "backup/chelsea_copy.jpg": PHOTOS["chelsea"],
        "backup/2019/breaking_flood (1).png": "news/breaking_flood.png",
    }.items():
        (dest / copy).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dest / original, dest / copy)
        manifest.duplicates[copy] = original

    # Oddly named but fine.
    unicode_rel = "people/café_東京 ñ.jpg"
    _save(text_image("TOKYO STATION EAST EXIT", width=900), dest / unicode_rel, quality=92)
    manifest.text_images[unicode_rel] = "TOKYO STATION EAST EXIT"

    # Bad input: each must be recorded as failed with a reason while the rest is searchable.
    broken = dest / "broken"
    broken.mkdir()
    (broken / "empty.jpg").write_bytes(b"")
    manifest.bad["broken/empty.jpg"] = "empty file"
    buf = io.BytesIO()
    skimage_photo("astronaut").save(buf, format="JPEG", quality=90)
    (broken / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    manifest.bad["broken/truncated.jpg"] = "truncated JPEG"
    (broken / "notes.jpg").write_text("these are not the pixels you are looking for\n")
    manifest.bad["broken/notes.jpg"] = "text file named .jpg"
    # A sidecar: not media, not a document (a README.txt would be read as a document).
    (dest / "album.xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">Sample media for Archivist.</x:xmpmeta>\n'
    )
    manifest.not_media.append("album.xmp")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    manifest = make_sample_tree(args.dest.resolve())
    print(json.dumps(asdict(manifest), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
