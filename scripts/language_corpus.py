"""The Spanish/English evaluation set of scripts/bench_languages.py and tests/test_languages_e2e.py: news
sentences spoken in Spanish and in English (espeak-ng voices: no recording of real Spanish speech ships in
any package of the lock), Spanish signs rendered into images, and queries in both languages with the file
and moment that answer them.

    python scripts/language_corpus.py DEST     # writes the corpus and prints what it holds

Every Spanish sentence has its English translation and every English sentence its Spanish one: a query
in one language about content in the other is the cross-language case.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.make_samples import font
from scripts.speech import SAMPLE_RATE, Voice, silence, synthesize, trim_silence, write_wav

# espeak-ng's Spanish (Spain) voice at two pitches, and its US English voices.
SPANISH_VOICES = (Voice("es-low", "es", 40), Voice("es-high", "es+f2", 70))
ENGLISH_VOICES = (Voice("en-low", "en-us+m3", 25), Voice("en-high", "en+f3", 75))


@dataclass(frozen=True, slots=True)
class Said:
    """One sentence, its translation, and a query for it in each language."""

    text: str
    translation: str
    query: str  # in the sentence's language
    cross_query: str  # in the other language


SPANISH: tuple[Said, ...] = (
    Said(
        "El ayuntamiento de Sevilla aprobó ayer un nuevo plan para reducir el tráfico en el centro.",
        "Seville city council approved a new plan yesterday to reduce traffic in the centre.",
        "plan de tráfico en Sevilla",
        "Seville traffic plan",
    ),
    Said(
        "Una fuerte tormenta dejó sin electricidad a miles de hogares en la costa de Galicia.",
        "A strong storm left thousands of homes without electricity on the coast of Galicia.",
        "tormenta deja sin luz a miles de casas",
        "storm power cut for thousands of homes",
    ),
    Said(
        "Los agricultores protestan por la sequía que afecta a las cosechas de trigo este verano.",
        "Farmers protest about the drought that affects the wheat harvest this summer.",
        "sequía y cosecha de trigo",
        "drought hurts the wheat harvest",
    ),
    Said(
        "El museo abrirá una exposición dedicada a los pintores flamencos en primavera.",
        "The museum will open an exhibition devoted to Flemish painters in spring.",
        "exposición de pintura flamenca",
        "exhibition of Flemish painters",
    ),
    Said(
        "La selección nacional de baloncesto ganó la final del campeonato europeo.",
        "The national basketball team won the final of the European championship.",
        "final del campeonato de baloncesto",
        "basketball team wins the European final",
    ),
    Said(
        "Los científicos descubrieron una nueva especie de rana en la selva amazónica.",
        "Scientists discovered a new species of frog in the Amazon rainforest.",
        "nueva especie de rana",
        "new frog species discovered",
    ),
    Said(
        "El precio del aceite de oliva subió mucho en los supermercados este mes.",
        "The price of olive oil rose a lot in supermarkets this month.",
        "sube el precio del aceite de oliva",
        "olive oil prices go up",
    ),
    Said(
        "Miles de turistas visitaron las playas de Málaga durante las vacaciones de diciembre.",
        "Thousands of tourists visited the beaches of Malaga during the December holidays.",
        "turistas en las playas de Málaga",
        "tourists on the beaches of Malaga",
    ),
    Said(
        "El gobierno anunció ayudas para las familias que alquilan una vivienda.",
        "The government announced help for families who rent a home.",
        "ayudas al alquiler para familias",
        "rent aid for families",
    ),
    Said(
        "Un incendio forestal obligó a evacuar a los vecinos de tres pueblos.",
        "A forest fire forced the evacuation of the people of three villages.",
        "incendio forestal y evacuación de pueblos",
        "wildfire forces villages to evacuate",
    ),
)

ENGLISH: tuple[Said, ...] = (
    Said(
        "The city library will stay open until midnight during the exam season.",
        "La biblioteca de la ciudad abrirá hasta medianoche durante los exámenes.",
        "library open until midnight",
        "biblioteca abierta hasta medianoche",
    ),
    Said(
        "A cargo ship ran aground near the harbour entrance early this morning.",
        "Un barco de carga encalló cerca de la entrada del puerto esta mañana.",
        "cargo ship aground at the harbour",
        "barco de carga encallado en el puerto",
    ),
    Said(
        "The orchestra cancelled its winter tour after the conductor fell ill.",
        "La orquesta canceló su gira de invierno porque el director enfermó.",
        "orchestra cancels winter tour",
        "la orquesta cancela su gira",
    ),
    Said(
        "Engineers are testing a new electric bus on the mountain roads.",
        "Los ingenieros prueban un nuevo autobús eléctrico en las carreteras de montaña.",
        "electric bus tested in the mountains",
        "autobús eléctrico en la montaña",
    ),
    Said(
        "The zoo celebrated the birth of two panda cubs on Sunday.",
        "El zoológico celebró el nacimiento de dos crías de panda el domingo.",
        "panda cubs born at the zoo",
        "nacen dos pandas en el zoológico",
    ),
    Said(
        "Heavy snow closed the airport and hundreds of flights were cancelled.",
        "Una gran nevada cerró el aeropuerto y se cancelaron cientos de vuelos.",
        "snow closes the airport",
        "la nieve cierra el aeropuerto",
    ),
)

# Spanish signs and headlines (read by OCR): text, translation, Spanish query, English query.
SIGNS: dict[str, Said] = {
    "es/obras.png": Said(
        "CERRADO POR OBRAS", "CLOSED FOR BUILDING WORK", "cerrado por obras", "closed for construction work"
    ),
    "es/salida.png": Said("SALIDA DE EMERGENCIA", "EMERGENCY EXIT", "salida de emergencia", "emergency exit"),
    "es/farmacia.png": Said(
        "FARMACIA DE GUARDIA", "PHARMACY ON DUTY", "farmacia de guardia", "pharmacy open at night"
    ),
    "es/rebajas.png": Said(
        "REBAJAS DE INVIERNO EN TODA LA TIENDA",
        "WINTER SALE IN THE WHOLE SHOP",
        "rebajas de invierno",
        "winter sale",
    ),
    "es/peligro.png": Said(
        "PELIGRO: CAÍDA DE ROCAS", "DANGER: FALLING ROCKS", "peligro caída de rocas", "danger falling rocks"
    ),
}

SPANISH_VIDEO = "tv/noticias.mp4"
ENGLISH_AUDIO = "radio/news_en.wav"
# One file that switches language half-way (a Spanish report, then an English one).
MIXED_AUDIO = "radio/bilingue.wav"
MIXED_SPLIT = 3  # Spanish sentences before the English ones in the mixed file
PAUSE_S = 1.2
TOLERANCE_S = 2.0
LEAD_S = 1.0


@dataclass(frozen=True, slots=True)
class Spoken:
    file: str
    language: str  # "es" | "en"
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True, slots=True)
class LanguageQuery:
    """A query and where it is answered: a sign, or a spoken sentence (found when a hit of its file starts
    no more than 2 s from the sentence: before its start, inside it, or after its end)."""

    text: str
    language: str  # of the query
    kind: str  # "es" (Spanish query, Spanish content) | "en" | "cross"
    file: str
    at_s: float | None  # spoken: where the sentence starts
    end_s: float | None = None  # and ends (a hit must start within 2 s of the sentence)


@dataclass(slots=True)
class LanguageCorpus:
    root: str
    spoken: list[Spoken] = field(default_factory=list)
    queries: list[LanguageQuery] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # file -> its language


def found_at(query: LanguageQuery, start_s: float | None, strict: bool = False) -> bool:
    """Whether a hit of the query's file starting at ``start_s`` is its moment (``strict``: within 2 s of the
    sentence's start, as scripts/eval_search.py asks of whole spoken sentences)."""
    if query.at_s is None:
        return True
    if start_s is None:
        return False
    end = query.at_s if strict or query.end_s is None else query.end_s
    return query.at_s - TOLERANCE_S <= start_s <= end + TOLERANCE_S


def _speak(parts: list[tuple[Said, str, Voice]], file: str, corpus: LanguageCorpus) -> np.ndarray[Any, Any]:
    """Sentences one after another with pauses; records when each starts."""
    audio = [silence(LEAD_S)]
    t = LEAD_S
    for said, language, voice in parts:
        speech = trim_silence(synthesize(said.text, voice, speed_wpm=140))
        seconds = len(speech) / SAMPLE_RATE
        corpus.spoken.append(Spoken(file, language, said.text, round(t, 2), round(t + seconds, 2)))
        audio += [speech, silence(PAUSE_S)]
        t += seconds + PAUSE_S
    return np.concatenate(audio)


def _render(path: Path, text: str) -> None:
    img = Image.new("RGB", (1100, 240), (250, 250, 245))
    ImageDraw.Draw(img).text((40, 90), text, fill=(15, 15, 15), font=font(48 if len(text) < 28 else 36))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _spanish_video(dest: Path, audio: np.ndarray[Any, Any]) -> None:
    from scripts.av_write import write_video

    seconds = len(audio) / SAMPLE_RATE
    img = Image.new("RGB", (640, 360), (20, 40, 90))
    ImageDraw.Draw(img).text((30, 150), "NOTICIAS", fill="white", font=font(40))
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_video(dest, [(np.asarray(img), seconds)], fps=5, audio=audio, sample_rate=SAMPLE_RATE)


def build(dest: Path) -> LanguageCorpus:
    corpus = LanguageCorpus(root=str(dest))
    (dest / "radio").mkdir(parents=True, exist_ok=True)
    spanish = [(s, "es", SPANISH_VOICES[n % 2]) for n, s in enumerate(SPANISH[MIXED_SPLIT:])]
    _spanish_video(dest / SPANISH_VIDEO, _speak(spanish, SPANISH_VIDEO, corpus))
    english = [(s, "en", ENGLISH_VOICES[n % 2]) for n, s in enumerate(ENGLISH[2:])]
    write_wav(dest / ENGLISH_AUDIO, _speak(english, ENGLISH_AUDIO, corpus))
    mixed = [(s, "es", SPANISH_VOICES[0]) for s in SPANISH[:MIXED_SPLIT]]
    mixed += [(s, "en", ENGLISH_VOICES[0]) for s in ENGLISH[:2]]
    write_wav(dest / MIXED_AUDIO, _speak(mixed, MIXED_AUDIO, corpus))
    corpus.files = {SPANISH_VIDEO: "es", ENGLISH_AUDIO: "en", MIXED_AUDIO: "es+en"}
    for name, sign in SIGNS.items():
        _render(dest / name, sign.text)
        corpus.files[name] = "es"
    by_text = {s.text: s for s in (*SPANISH, *ENGLISH)}
    for spoken in corpus.spoken:
        said = by_text[spoken.text]
        other = "en" if spoken.language == "es" else "es"
        where = (spoken.file, spoken.start_s, spoken.end_s)
        corpus.queries.append(LanguageQuery(said.query, spoken.language, spoken.language, *where))
        corpus.queries.append(LanguageQuery(said.cross_query, other, "cross", *where))
    for name, sign in SIGNS.items():
        corpus.queries.append(LanguageQuery(sign.query, "es", "es", name, None))
        corpus.queries.append(LanguageQuery(sign.cross_query, "en", "cross", name, None))
    return corpus


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dest", type=Path)
    print(json.dumps(asdict(build(parser.parse_args().dest)), indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
