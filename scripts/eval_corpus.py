"""The labelled search evaluation corpus (scripts/eval_search.py): real photographs shipped inside
installed packages, text rendered into images in English and Spanish, spoken news in a video and in audio
files (espeak-ng voices: no recording of real speech ships in the locked packages), and the queries with
the files that answer them.

    python scripts/eval_corpus.py DEST     # writes the corpus and prints the query set
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.make_samples import font
from scripts.speech import VOICES, silence, synthesize, write_wav
from scripts.talk_video import TalkManifest, make_talk_video


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{package} is not installed")
    return Path(spec.origin).parent.joinpath(*parts)


# Real photographs inside packages of the lock: name in the corpus -> (package, path inside it).
PHOTOS: dict[str, tuple[str, tuple[str, ...]]] = {
    "photos/astronaut.png": ("skimage", ("data", "astronaut.png")),
    "photos/cat_on_sofa.png": ("skimage", ("data", "chelsea.png")),
    "photos/coffee.png": ("skimage", ("data", "coffee.png")),
    "photos/motorcycle.png": ("skimage", ("data", "motorcycle_left.png")),
    "photos/launch.jpg": ("skimage", ("data", "rocket.jpg")),
    "photos/cameraman.png": ("skimage", ("data", "camera.png")),
    "photos/deep_field.jpg": ("skimage", ("data", "hubble_deep_field.jpg")),
    "photos/coins.png": ("skimage", ("data", "coins.png")),
    "photos/moon.png": ("skimage", ("data", "moon.png")),
    "photos/temple.jpg": ("sklearn", ("datasets", "images", "china.jpg")),
    "photos/flower.jpg": ("sklearn", ("datasets", "images", "flower.jpg")),
    "photos/grace_hopper.jpg": ("matplotlib", ("mpl-data", "sample_data", "grace_hopper.jpg")),
    "photos/group.jpg": ("insightface", ("data", "images", "t1.jpg")),
}

# Text rendered into images (signs, documents, headlines), English and Spanish.
PRINTED: dict[str, str] = {
    "news/flood.png": "BREAKING NEWS: FLOOD IN VALENCIA",
    "docs/invoice.png": "INVOICE 2024-0173 TOTAL DUE 418 EUR",
    "docs/meeting.png": "Quarterly meeting moved to Thursday",
    "signs/platform.png": "PLATFORM 9 DEPARTURES LONDON",
    "signs/museum.png": "Museum closed for renovation until March",
    "signs/market.png": "Farmers market every Saturday morning",
    "signs/wildfire.png": "WILDFIRE EVACUATION ROUTE",
    "es/piso.png": "SE VENDE PISO CON TERRAZA",
    "es/elecciones.png": "ELECCIONES MUNICIPALES: RESULTADOS DEL DOMINGO",
    "es/aparcar.png": "PROHIBIDO APARCAR",
    "es/prensa.png": "Conferencia de prensa del ministro de sanidad",
    "es/concierto.png": "Concierto de la orquesta sinfónica",
    "es/canciones.png": "Las canciones de los niños",
}

# What an archive has many of: near-identical headlines, invoices, signs. Only words tell them apart.
CITIES = (
    "Murcia Sevilla Bilbao Zaragoza Malaga Granada Toledo Cadiz Leon Burgos Oviedo Vigo Lisbon Porto Lyon"
).split()


def distractors() -> dict[str, str]:
    out = {}
    for n, city in enumerate(CITIES):
        out[f"news/flood_{n:02d}.png"] = f"BREAKING NEWS: FLOOD IN {city.upper()}"
        out[f"docs/invoice_{n:02d}.png"] = f"INVOICE 2024-{181 + n:04d} TOTAL DUE {300 + 7 * n} EUR"
        out[f"signs/platform_{n:02d}.png"] = (
            f"PLATFORM {n + 1 if n + 1 != 9 else 19} DEPARTURES {city.upper()}"
        )
        out[f"es/elecciones_{n:02d}.png"] = f"ELECCIONES EN {city.upper()}: RESULTADOS DEL LUNES"
    return out


# Spoken reports, one audio file each (espeak-ng voices).
SPOKEN: dict[str, str] = {
    "radio/storm.wav": "Storm warning for the northern coast. Fishing boats must stay in port tonight.",
    "radio/bridge.wav": "The new suspension bridge opened to traffic after six years of construction.",
    "radio/vaccine.wav": "Health officials announced a free vaccination campaign for children this winter.",
}

TALK = "tv/evening_news.mp4"
TALK_PHRASES = 16


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    kind: str  # exact / paraphrase / spanish / misspelling / person / spoken / none
    expected: tuple[str, ...] = ()  # corpus paths any of which answers it (none: nothing does)
    at_s: float | None = None  # spoken: where the phrase starts (a hit must start within 2 s of it)


@dataclass(slots=True)
class Corpus:
    root: str
    files: list[str] = field(default_factory=list)
    talk: TalkManifest | None = None
    queries: list[Query] = field(default_factory=list)


def _render(path: Path, text: str) -> None:
    img = Image.new("RGB", (1100, 260), (250, 250, 245))
    draw = ImageDraw.Draw(img)
    size = 56 if len(text) < 30 else 40
    draw.text((40, 100), text, fill=(15, 15, 15), font=font(size))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def build(dest: Path) -> Corpus:
    corpus = Corpus(root=str(dest))
    for name, (package, parts) in PHOTOS.items():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        source = _package_file(package, *parts)
        if source.suffix == target.suffix:
            shutil.copyfile(source, target)
        else:
            Image.open(source).convert("RGB").save(target)
        corpus.files.append(name)
    for name, text in {**PRINTED, **distractors()}.items():
        _render(dest / name, text)
        corpus.files.append(name)
    for n, (name, text) in enumerate(SPOKEN.items()):
        voice = VOICES["low" if n % 2 == 0 else "high"]
        audio = np.concatenate([silence(0.5), synthesize(text, voice), silence(0.5)])
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        write_wav(dest / name, audio)
        corpus.files.append(name)
    corpus.talk = make_talk_video(dest / TALK, n_phrases=TALK_PHRASES)
    corpus.files.append(TALK)
    corpus.queries = queries(corpus.talk)
    return corpus


def _all(prefix: str) -> tuple[str, ...]:
    return tuple(name for name in {**PRINTED, **distractors()} if name.startswith(prefix))


def queries(talk: TalkManifest) -> list[Query]:
    q: list[Query] = [
        # Exact words read on screen (among near-identical signs and documents).
        Query("flood in Valencia", "exact", ("news/flood.png",)),
        Query("invoice 2024-0173", "exact", ("docs/invoice.png",)),
        Query("invoice total due 418 EUR", "exact", ("docs/invoice.png",)),
        Query("platform 9 departures London", "exact", ("signs/platform.png",)),
        Query("flood Bilbao", "exact", ("news/flood_02.png",)),
        Query("platform 4 Zaragoza", "exact", ("signs/platform_03.png",)),
        Query("flood in Oviedo", "exact", ("news/flood_10.png",)),
        Query("invoice 2024-0190", "exact", ("docs/invoice_09.png",)),
        Query("departures Lisbon", "exact", ("signs/platform_12.png",)),
        Query("museum closed for renovation", "exact", ("signs/museum.png",)),
        Query("farmers market saturday", "exact", ("signs/market.png",)),
        Query("wildfire evacuation route", "exact", ("signs/wildfire.png",)),
        Query("quarterly meeting thursday", "exact", ("docs/meeting.png",)),
        # Exact words spoken in the audio files.
        Query("fishing boats stay in port", "exact", ("radio/storm.wav",)),
        Query("suspension bridge opened to traffic", "exact", ("radio/bridge.wav",)),
        Query("free vaccination campaign for children", "exact", ("radio/vaccine.wav",)),
        # Other words for the same thing.
        # (any flood headline, invoice or departures sign answers these)
        Query("water flooding the streets", "paraphrase", _all("news/flood")),
        Query("bill amount owed", "paraphrase", _all("docs/invoice")),
        Query("train station timetable", "paraphrase", _all("signs/platform")),
        Query("forest fire escape", "paraphrase", ("signs/wildfire.png",)),
        Query("a kitty", "paraphrase", ("photos/cat_on_sofa.png",)),
        Query("a cup of espresso", "paraphrase", ("photos/coffee.png",)),
        Query("motorbike", "paraphrase", ("photos/motorcycle.png",)),
        Query("spacecraft taking off", "paraphrase", ("photos/launch.jpg",)),
        Query("photographer with a tripod", "paraphrase", ("photos/cameraman.png",)),
        Query("pieces of money", "paraphrase", ("photos/coins.png",)),
        Query("a pagoda", "paraphrase", ("photos/temple.jpg",)),
        Query("a blossom", "paraphrase", ("photos/flower.jpg",)),
        Query("hurricane alert for sailors", "paraphrase", ("radio/storm.wav",)),
        Query("immunisation for kids", "paraphrase", ("radio/vaccine.wav",)),
        # Spanish: words on Spanish signs, folded and stemmed.
        Query("elecciones municipales", "spanish", ("es/elecciones.png",)),
        Query("resultados del domingo", "spanish", ("es/elecciones.png",)),
        Query("elecciones en Granada", "spanish", ("es/elecciones_05.png",)),
        Query("piso con terraza", "spanish", ("es/piso.png",)),
        Query("prohibido aparcar", "spanish", ("es/aparcar.png",)),
        Query("orquesta sinfonica", "spanish", ("es/concierto.png",)),
        Query("ministro de sanidad", "spanish", ("es/prensa.png",)),
        Query("canción de niño", "spanish", ("es/canciones.png",)),
        # Misspelled.
        Query("invoise 2024-0173", "misspelling", ("docs/invoice.png",)),
        Query("valencia flod", "misspelling", ("news/flood.png",)),
        Query("museum renovaton", "misspelling", ("signs/museum.png",)),
        Query("motorcyle", "misspelling", ("photos/motorcycle.png",)),
        Query("vacination campaign", "misspelling", ("radio/vaccine.wav",)),
        # People.
        Query("woman astronaut", "person", ("photos/astronaut.png",)),
        Query("portrait of an officer in uniform", "person", ("photos/grace_hopper.jpg",)),
        Query("a group of people", "person", ("photos/group.jpg",)),
        # Nothing in the corpus answers these.
        Query("basketball championship final score", "none"),
        Query("recipe for chocolate cake", "none"),
        Query("quantum computing lecture", "none"),
        Query("snowboarding in the alps", "none"),
        Query("stock market crash in tokyo", "none"),
        Query("wedding dress shopping", "none"),
        Query("ice hockey goalkeeper", "none"),
        Query("submarine volcano tax audit", "none"),
    ]
    # Sentences spoken in the news video: found at the moment they are said.
    for phrase in talk.phrases[::2]:
        q.append(Query(phrase.text.rstrip("."), "spoken", (TALK,), phrase.start_s))
    return q


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dest", type=Path)
    corpus = build(parser.parse_args().dest)
    print(json.dumps([asdict(q) for q in corpus.queries], indent=1))


if __name__ == "__main__":
    main()
