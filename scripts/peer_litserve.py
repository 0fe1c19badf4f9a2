"""A LitServe server for scripts/bench_peer.py: the project's sentence-transformers MiniLM behind LitServe's
batching glue (at most 64 requests merged, 5 ms wait), encoded in sub-batches of 32 as its examples do.

    .venv-peers/litserve/bin/python scripts/peer_litserve.py MODEL_DIR PORT THREADS

Runs in its own environment (scripts/peer_servers.py), never in the project's: it imports no project code.
POST /predict ``{"texts": [...]}`` answers ``{"vectors": [[...], ...]}`` (6 decimals, as the service).
"""

from __future__ import annotations

import sys
from typing import Any

import litserve as ls  # type: ignore[import-not-found, unused-ignore]
import numpy as np

MAX_REQUESTS = 64
BATCH_WAIT_S = 0.005
ENCODE_BATCH = 32


class Embeddings(ls.LitAPI):  # type: ignore[misc, unused-ignore]
    def __init__(self, model_dir: str, threads: int) -> None:
        super().__init__(max_batch_size=MAX_REQUESTS, batch_timeout=BATCH_WAIT_S)
        self.model_dir = model_dir
        self.threads = threads

    def setup(self, device: str) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self.threads)
        self.model = SentenceTransformer(self.model_dir, device="cpu", local_files_only=True)

    # Unannotated on purpose: LitServe turns decode_request's parameter annotation into the route's request
    # type and encode_response's return annotation into its response model (validated per answer); without
    # them it parses the JSON body and sends the dict as it is, as its examples do.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return request["texts"]

    def batch(self, inputs: list[list[str]]) -> list[list[str]]:
        return inputs

    def predict(self, requests: list[list[str]]) -> list[np.ndarray[Any, Any]]:
        flat = [text for texts in requests for text in texts]
        matrix = self.model.encode(
            flat,
            batch_size=ENCODE_BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        out: list[np.ndarray[Any, Any]] = []
        start = 0
        for texts in requests:
            out.append(matrix[start : start + len(texts)])
            start += len(texts)
        return out

    def unbatch(self, output: list[np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
        return output

    def encode_response(self, output):  # type: ignore[no-untyped-def]
        return {"vectors": np.round(output, 6).tolist()}


def main() -> None:
    model_dir, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    server = ls.LitServer(Embeddings(model_dir, threads), accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
