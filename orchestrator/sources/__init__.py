"""Every way media arrives over HTTP: uploads (POST /uploads, tus), URL jobs and raw text. Each lands as a
file in a managed directory under UPLOAD_DIR and is ingested by an ordinary job over that directory: nothing
downstream of the scanner knows where a file came from. Object storage (a job's root `s3://bucket/prefix`:
`roots.py`, `s3.py`, `spool.py`) is listed and downloaded by its own scanner (pipeline/stages/scan_s3.py)."""
